"""A small Prometheus HTTP API client for instant queries, strict about what it accepts.

Every failure (unreachable, slow, 5xx, a body that is not the documented JSON) becomes a
`PrometheusError` with a short machine-readable reason, which the operator reports in the
MetricsAvailable condition. Missing data is never guessed.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional, TypeVar

import aiohttp

from plateau.prometheus.promql import PrometheusError, Sample, parse_vector

__all__ = ["PrometheusClient", "PrometheusError", "Sample"]

T = TypeVar("T")


class PrometheusClient:
    """`timeout` bounds each query as a whole (connect, send, every byte of the answer);
    `max_bytes` bounds the answer's size (None: MAX_ANSWER_BYTES); `trust_env`: go through the
    environment's HTTP_PROXY/HTTPS_PROXY, except for NO_PROXY hosts."""

    def __init__(self, url: str, timeout: float = 10.0, session: Optional[aiohttp.ClientSession] = None,
                 max_bytes: Optional[int] = None, trust_env: bool = False) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.trust_env = trust_env
        self._session = session

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  trust_env=self.trust_env)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, promql: str, at: Optional[float] = None,
                    decode: Callable[[bytes], T] = parse_vector,  # type: ignore[assignment]
                    max_bytes: Optional[int] = None) -> T:
        """An instant query (POST, so large batched selectors fit), its answer decoded by `decode`,
        at most `max_bytes` of it (None: the client's bound)."""
        form = {"query": promql}
        if at is not None:
            form["time"] = f"{at:.3f}"
        session = await self._client()
        try:
            async with session.post(f"{self.url}/api/v1/query", data=form) as response:
                raw = await _read_capped(response, self.max_bytes if max_bytes is None else max_bytes)
                if response.status >= 500:
                    raise PrometheusError("ServerError", f"HTTP {response.status} from Prometheus")
                if response.status not in (200, 400, 422):
                    raise PrometheusError("UnexpectedStatus", f"HTTP {response.status} from Prometheus")
        except asyncio.TimeoutError:
            raise PrometheusError("Timeout", f"no answer from Prometheus within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise PrometheusError("Unreachable", f"cannot reach Prometheus: {type(exc).__name__}") from None
        return decode(raw)


# An answer's size bounds the series a cycle decodes and loops over: a part of the batched
# answer for 10,000 forecasting jobs holds about 42,500 samples (benchmarks.operator_bench:
# 170,000 in 4 parts), some 10 MB at about 250 bytes each, and decoding costs a few times the
# answer's size, which must fit the operator's 512Mi beside everything else.
MAX_ANSWER_BYTES = 64 * 2**20


async def _read_capped(response: aiohttp.ClientResponse, limit: Optional[int] = None) -> bytes:
    limit = MAX_ANSWER_BYTES if limit is None else limit
    if response.content_length is not None and response.content_length > limit:
        raise PrometheusError("AnswerTooLarge", f"Prometheus answered {response.content_length} bytes, more than {limit}")
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise PrometheusError("AnswerTooLarge", f"Prometheus answered more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
