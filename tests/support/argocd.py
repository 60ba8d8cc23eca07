"""Run the shipped Argo CD health check (manifests/argocd/health.lua) the way Argo CD does.

Argo CD evaluates argocd-cm health scripts with gopher-lua (Lua 5.1), opening only the base, table,
package and a reduced os library (unless useOpenLibs is set), with the resource as the global `obj`.
This uses lupa's Lua 5.1 and removes what Argo CD does not provide, so a script that calls
`string.format` or `("x"):upper()` fails here as it would in Argo CD.
"""

from pathlib import Path
from typing import Any

from lupa.lua51 import LuaRuntime, lua_type

HEALTH_LUA = Path(__file__).resolve().parents[2] / "manifests" / "argocd" / "health.lua"
# Argo CD maps any other status to Unknown with this message (util/lua/lua.go).
VALID_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
INVALID_STATUS_MESSAGE = "Lua returned an invalid health status"

# Only base, table, package and os.{clock,date,difftime,time} exist in Argo CD's sandbox.
_SANDBOX = """
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
getmetatable("").__index = nil
os = {clock = os.clock, date = os.date, difftime = os.difftime, time = os.time}
"""


def _to_lua(lua: LuaRuntime, value: Any) -> Any:
    """Python JSON-like data as Lua values: dicts and lists become tables (lists 1-based), None nil."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[str(key)] = _to_lua(lua, item)
        return table
    if isinstance(value, list | tuple):
        # gopher-lua's Append drops nils, so [a, None, b] is the two-element array {a, b} in Argo CD.
        table = lua.table()
        for index, item in enumerate((item for item in value if item is not None), start=1):
            table[index] = _to_lua(lua, item)
        return table
    return value


def argocd_health(obj: dict) -> tuple[str, str]:
    """(status, message) that Argo CD would show for this DeploymentRequest object."""
    lua = LuaRuntime(register_eval=False, register_builtins=False)
    lua.execute(_SANDBOX)
    lua.globals().obj = _to_lua(lua, obj)
    hs = lua.execute(HEALTH_LUA.read_bytes())
    if hs is None:
        return "", ""  # Argo CD: a nil result is an empty health status
    if lua_type(hs) != "table":
        raise TypeError(f"health.lua returned {hs!r}, not a table")
    status, message = hs["status"], hs["message"]
    # Argo CD decodes the table as JSON into strings: anything else is an error there.
    if not isinstance(status, str | None) or not isinstance(message, str | None):
        raise TypeError(f"health.lua returned status={status!r} message={message!r}: both must be strings")
    if status not in VALID_STATUSES:
        return "Unknown", INVALID_STATUS_MESSAGE
    return status, message or ""
