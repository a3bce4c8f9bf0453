"""Duplicate detection by ``messageId`` within a time window, in bounded memory.

The window is cut into buckets of hashed ids (a new bucket each 1/24 of the window, or
sooner when the newest holds 1/24 of ``max_entries``); the oldest bucket is dropped when it
falls out of the window or when the total passes ``max_entries``, so under heavy traffic
the window shrinks rather than memory growing. An id being written by
another request at the same moment is "in flight": its duplicate waits for that write.

An index maps each hash to the newest bucket holding it, so ``seen`` is one lookup however
many buckets there are (checking 24 sets one by one cost 2-3 µs an event at full load); a
bucket keeps its hashes in a compact array, to forget them when it is dropped. The index is
split into ``SHARDS`` dicts by hash: ids come and go all the time, so a dict is rebuilt now
and then, and a rebuild then copies 1/64 of the index, not all of it at once (a 40 MB
transient at 500,000 ids).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import deque
from typing import Iterable

BUCKETS = 24
SHARDS = 64  # a power of two


class Dedup:
    def __init__(self, window_seconds: float = 24 * 3600, max_entries: int = 500_000) -> None:
        self.window = window_seconds
        self.bucket_seconds = window_seconds / BUCKETS
        self.max_entries = max_entries
        self._bucket_cap = max(1, max_entries // BUCKETS)
        self._buckets: deque[tuple[float, array]] = deque()  # (start, hashes), oldest first
        # hash -> the newest bucket's array holding it, in the shard ``hash & (SHARDS - 1)``
        self._newest: list[dict[int, array]] = [{} for _ in range(SHARDS)]
        self._size = 0
        self.in_flight: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return self._size

    def seen(self, message_id: str) -> bool:
        key = hash(message_id)
        return key in self._newest[key & (SHARDS - 1)]

    def add(self, message_ids: Iterable[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        start = now - now % self.bucket_seconds
        if not self._buckets or self._buckets[-1][0] < start or len(self._buckets[-1][1]) >= self._bucket_cap:
            self._buckets.append((start, array("q")))
        ids = self._buckets[-1][1]
        newest = self._newest
        before = len(ids)
        for key in map(hash, message_ids):
            shard = newest[key & (SHARDS - 1)]
            if shard.get(key) is not ids:  # each bucket holds a hash once
                shard[key] = ids
                ids.append(key)
        self._size += len(ids) - before
        self._expire(now)

    def _expire(self, now: float) -> None:
        while len(self._buckets) > 1 and (
            self._buckets[0][0] + self.bucket_seconds <= now - self.window or self._size > self.max_entries
        ):
            _, ids = self._buckets.popleft()
            self._size -= len(ids)
            newest = self._newest
            for key in ids:
                shard = newest[key & (SHARDS - 1)]
                if shard.get(key) is ids:  # not added again to a newer bucket since
                    del shard[key]
