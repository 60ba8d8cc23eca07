"""Structured logging: one JSON object per line, with the component and any ``extra`` fields."""

import json
import logging
import sys
import time
from typing import Protocol

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_PLAIN = (str, int, float, bool, list, dict, type(None))


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Only plain data: libraries (kopf) attach whole objects as extras, which would flood every line.
        entry.update({key: value for key, value in vars(record).items()
                      if key not in _STANDARD and isinstance(value, _PLAIN)})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(component: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger of the process to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {component} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kazoo").setLevel(max(logging.WARNING, root.level))


class NamedRequest(Protocol):
    """A DeploymentRequest as the protocol names it (``RequestRef``)."""

    @property
    def uid(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...


def request_fields(request: NamedRequest) -> dict[str, str]:
    """What every log line about a request carries: its uid (``request``), which follows it across the operator's
    and every agent's log and tells apart requests of the same name, and the ``namespace/name`` a user knows it by
    (``deploymentRequest``)."""
    return {"request": request.uid, "deploymentRequest": f"{request.namespace}/{request.name}"}


def flow_step(logger: logging.Logger, step: int, message: str, request: NamedRequest, **fields: object) -> None:
    """Log one of the request flow's nine steps (BRIEF §1), with the request's ``request_fields``."""
    logger.info(message, extra={"step": step, **request_fields(request), **fields})
