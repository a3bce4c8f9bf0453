"""Duplicate detection by ``messageId`` within a time window, in bounded memory.

The window is cut into buckets of hashed ids (a new bucket each 1/24 of the window, or
sooner when the newest holds 1/24 of ``max_entries``); the oldest bucket is dropped when it
falls out of the window or when the total passes ``max_entries``, so under heavy traffic
the window shrinks rather than memory growing. An id being written by
another request at the same moment is "in flight": its duplicate waits for that write.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Iterable

BUCKETS = 24


class Dedup:
    def __init__(self, window_seconds: float = 24 * 3600, max_entries: int = 500_000) -> None:
        self.window = window_seconds
        self.bucket_seconds = window_seconds / BUCKETS
        self.max_entries = max_entries
        self._bucket_cap = max(1, max_entries // BUCKETS)
        self._buckets: deque[tuple[float, set[int]]] = deque()
        self._size = 0
        self.in_flight: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return self._size

    def seen(self, message_id: str) -> bool:
        key = hash(message_id)
        return any(key in ids for _, ids in self._buckets)

    def add(self, message_ids: Iterable[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        start = now - now % self.bucket_seconds
        if not self._buckets or self._buckets[-1][0] < start or len(self._buckets[-1][1]) >= self._bucket_cap:
            self._buckets.append((start, set()))
        ids = self._buckets[-1][1]
        before = len(ids)
        ids.update(map(hash, message_ids))
        self._size += len(ids) - before
        self._expire(now)

    def _expire(self, now: float) -> None:
        while len(self._buckets) > 1 and (
            self._buckets[0][0] + self.bucket_seconds <= now - self.window or self._size > self.max_entries
        ):
            self._size -= len(self._buckets.popleft()[1])
