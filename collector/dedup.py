"""Duplicate detection by ``messageId`` within a time window, in bounded and compact memory.

The window is cut into buckets (a new bucket each 1/24 of the window, or sooner when the
newest holds 1/24 of ``max_entries``); the oldest bucket is dropped when it falls out of the
window or when the total passes ``max_entries``, so under heavy traffic the window shrinks
rather than memory growing. An id being written by another request at the same moment is
"in flight": its duplicate waits for that write.

Storage holds no Python object per id: an id's 64-bit hash picks one of ``slots`` byte
strings by its low bits, and that string holds 8-byte records (the bucket's number in 2
bytes, 6 bytes of the hash's other bits), appended in time order. ``seen`` is one C-level
search of a short string (about 8 records at the cap) and a look at the bucket of a match;
a dropped bucket costs nothing at once: the records of buckets no longer live are a prefix
of each string, cut when an id is added to a string that has grown to twice the records it
holds at the cap. About 20 bytes an id (the
500,000-id cap: about 20 MB of RSS, against about 65 MB for a dict of hashes). Bucket
numbers count modulo 2**16: a record is never left that long (its string is added to
every ``slots`` ids on average).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Iterable

BUCKETS = 24
PER_SLOT = 8  # ids per byte string at the cap
CUT_AT = 8 * 2 * PER_SLOT  # a string this long has its records of dropped buckets cut before it grows
_GENS = 0xFFFF  # bucket numbers, modulo 2**16
_HASH = (1 << 64) - 1
_REST = (1 << 48) - 1


class Dedup:
    def __init__(self, window_seconds: float = 24 * 3600, max_entries: int = 500_000) -> None:
        self.window = window_seconds
        self.bucket_seconds = window_seconds / BUCKETS
        self.max_entries = max_entries
        self._bucket_cap = max(1, max_entries // BUCKETS)
        self._bits = max(4, (max(1, max_entries // PER_SLOT) - 1).bit_length())
        self._mask = (1 << self._bits) - 1
        self._slots: list[bytearray | None] = [None] * (1 << self._bits)
        self._buckets: deque[list] = deque()  # [start, ids], oldest first; numbered _oldest.._oldest+len-1
        self._oldest = 0
        self._span = -1  # len(_buckets) - 1: a bucket number n is live when (n - _oldest) mod 2**16 <= _span
        self._size = 0
        self.in_flight: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return self._size

    def seen(self, message_id: str) -> bool:
        key = hash(message_id) & _HASH
        records = self._slots[key & self._mask]
        if records is None:
            return False
        rest = ((key >> self._bits) & _REST).to_bytes(6, "little")
        return rest in records and self._find(records, rest, live_only=True)

    def _find(self, records: bytearray, rest: bytes, live_only: bool) -> bool:
        """Whether ``records`` hold ``rest`` in a live bucket (or, ``live_only`` false, in the newest)."""
        at = records.find(rest)
        while at >= 0:
            if at & 7 == 2:  # a record's hash bits, not bytes straddling two records
                age = (records[at - 2] | records[at - 1] << 8) - self._oldest & _GENS
                if age <= self._span if live_only else age == self._span:
                    return True
            at = records.find(rest, at + 1)
        return False

    def add(self, message_ids: Iterable[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        start = now - now % self.bucket_seconds
        buckets = self._buckets
        if not buckets or buckets[-1][0] < start or buckets[-1][1] >= self._bucket_cap:
            buckets.append([start, 0])
            self._span += 1
        bucket = buckets[-1]
        number = ((self._oldest + self._span) & _GENS).to_bytes(2, "little")
        slots, bits, mask, added = self._slots, self._bits, self._mask, 0
        for key in map(hash, message_ids):
            key &= _HASH
            records = slots[key & mask]
            rest = ((key >> bits) & _REST).to_bytes(6, "little")
            if records is None:
                slots[key & mask] = bytearray(number + rest)
                added += 1
                continue
            if rest in records and self._find(records, rest, live_only=False):
                continue  # each bucket holds an id once
            if len(records) >= CUT_AT:
                self._cut(records)
            records += number + rest
            added += 1
        bucket[1] += added
        self._size += added
        self._expire(now)

    def _cut(self, records: bytearray) -> None:
        """Forget the records of buckets no longer live: a prefix, since records are added in time order."""
        end = 0
        while end < len(records) and (records[end] | records[end + 1] << 8) - self._oldest & _GENS > self._span:
            end += 8
        del records[:end]

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        while len(buckets) > 1 and (buckets[0][0] + self.bucket_seconds <= now - self.window or self._size > self.max_entries):
            _, ids = buckets.popleft()
            self._size -= ids
            self._oldest = (self._oldest + 1) & _GENS
            self._span -= 1
