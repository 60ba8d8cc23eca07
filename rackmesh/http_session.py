"""The base of rackmesh's HTTP clients: one persistent aiohttp session, closed with ``close()`` or ``async with``."""

from types import TracebackType
from typing import Self

import aiohttp


class SessionClient:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()
