"""Abuse limits: token-bucket rate limits, and a listening site that caps connections.

Slow clients are cut off by aiohttp's keep-alive timer (which partial headers do not
reset) set to ``client_timeout``, and by the body read deadline in ``body.read_raw``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict

from aiohttp import web

from collector.errors import RateLimited

BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class TokenBuckets:
    """One bucket per key (a source name or a client IP), at most ``max_keys`` remembered."""

    def __init__(self, rate: float, burst: int = 0, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(2 * rate)))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, what: str, now: float | None = None) -> None:
        """Spend one token for ``key`` or raise RateLimited with the wait until the next one."""
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            wait = math.ceil((1 - tokens) / self.rate)
            raise RateLimited("rate_limited", f"too many requests for this {what}; retry in {wait} s", retry_after=wait)
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # the least recently seen key


class _Busy(asyncio.Protocol):
    """Answers a connection over the limit with a 503 and closes it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(BUSY)  # type: ignore[attr-defined]
        transport.close()


class LimitedSite(web.TCPSite):
    """A TCPSite that refuses connections beyond ``max_connections`` with a 503."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, max_connections: int, **kwargs) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.max_connections = max_connections

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None

        def factory() -> asyncio.Protocol:
            if len(server.connections) >= self.max_connections:
                return _Busy()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )  # fmt: skip
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
