"""What the controller stand-ins (kubelet, Kueue) share: an API session as one user, and a
reconcile loop that runs until the context exits."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp


class ControllerLoop:
    def __init__(self, url: str, token: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.ssl_context = ssl_context  # trusts an emulator that serves HTTPS
        self.headers = {"Authorization": f"Bearer {token}"}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Any:
        connector = aiohttp.TCPConnector(ssl=self.ssl_context or True)
        self._session = aiohttp.ClientSession(base_url=self.url, headers=self.headers, connector=connector)
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.release()
        if self._session:
            await self._session.close()

    async def _loop(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """What the stand-in holds beyond its session (processes), freed at exit."""
