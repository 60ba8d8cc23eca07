"""An aiohttp site over TLS whose handshake is bounded: aiohttp's ``TCPSite`` does not pass
``ssl_handshake_timeout`` on, so a client that connects and never finishes the handshake would hold the
connection for asyncio's default 60 s. The agent's API and the operator's signer both serve through it."""

import asyncio
import ssl

from aiohttp import web


class TlsSite(web.TCPSite):
    def __init__(self, runner: web.BaseRunner, host: str, port: int, ssl_context: ssl.SSLContext,
                 handshake_timeout: float) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server, self._host, self._port, ssl=self._ssl_context, ssl_handshake_timeout=self._handshake_timeout)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
