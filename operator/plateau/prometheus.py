"""A small Prometheus HTTP API client for instant queries, strict about what it accepts.

Every failure (unreachable, slow, 5xx, a body that is not the documented JSON) becomes a
`PrometheusError` with a short machine-readable reason, which the operator reports in the
MetricsAvailable condition. Missing data is never guessed.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional, TypeVar

import aiohttp

from plateau.promql import PrometheusError, Sample, parse_vector

__all__ = ["PrometheusClient", "PrometheusError", "Sample"]

T = TypeVar("T")


class PrometheusClient:
    def __init__(self, url: str, timeout: float = 10.0, session: Optional[aiohttp.ClientSession] = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = session

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, promql: str, at: Optional[float] = None,
                    decode: Callable[[bytes], T] = parse_vector) -> T:  # type: ignore[assignment]
        """An instant query (POST, so large batched selectors fit), its answer decoded by `decode`."""
        form = {"query": promql}
        if at is not None:
            form["time"] = f"{at:.3f}"
        session = await self._client()
        try:
            async with session.post(f"{self.url}/api/v1/query", data=form) as response:
                raw = await response.read()
                if response.status >= 500:
                    raise PrometheusError("ServerError", f"HTTP {response.status} from Prometheus")
                if response.status not in (200, 400, 422):
                    raise PrometheusError("UnexpectedStatus", f"HTTP {response.status} from Prometheus")
        except asyncio.TimeoutError:
            raise PrometheusError("Timeout", f"no answer from Prometheus within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise PrometheusError("Unreachable", f"cannot reach Prometheus: {type(exc).__name__}") from None
        return decode(raw)
