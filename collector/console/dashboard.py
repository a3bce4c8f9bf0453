"""The dashboard's numbers: the last hour of the log, minute by minute, kept up to date.

``Dashboard.add`` takes every item the follower reads (the last hour first, then live);
``snapshot`` answers ``GET /console/api/dashboard``: events per minute by type (and the
rejected ones), accepted against rejected with the top rejection codes, the top events,
pages and sources, and the distinct visitors (userId, else anonymousId) of the hour.
Minutes older than the hour are dropped as time passes, so memory stays bounded (visitors
are capped at ``MAX_VISITORS``; beyond it the count says "at least"). ``forget`` takes an
erased person's ids out of the visitors (``forget.py``).
"""

from __future__ import annotations

import calendar
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from collector.console.filters import ACCEPTED, Item
from collector.profiles.rules import ANONYMOUS_ID, USER_ID, Rules

WINDOW_MINUTES = 60
TOP = 10
MAX_VISITORS = 200_000


@lru_cache(maxsize=4096)
def minute_of(received_at: str) -> int | None:
    """The minute (epoch seconds // 60) of a stored ``receivedAt`` ("2026-11-28T13:04:05.678Z")."""
    try:
        return calendar.timegm(time.strptime(received_at[:16], "%Y-%m-%dT%H:%M")) // 60
    except ValueError:
        return None


@dataclass
class Minute:
    types: Counter = field(default_factory=Counter)  # accepted, by type
    rejected: int = 0
    codes: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    pages: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)


class Dashboard:
    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self.minutes: dict[int, Minute] = {}
        self.visitors: dict[tuple[str, str], int] = {}  # visitor (user_id or anonymous_id, value) -> last minute seen

    def add(self, item: Item) -> None:
        minute = minute_of(item.received_at[:16]) if item.received_at else None
        now = int(self.clock()) // 60
        if minute is None or not now - WINDOW_MINUTES < minute <= now + 1:
            return
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = Minute()
            self._forget(now)
        if item.source:
            bucket.sources[item.source] += 1
        if item.status == ACCEPTED:
            bucket.types[item.type or "?"] += 1
            if item.type == "track" and item.event:
                bucket.events[item.event] += 1
            if item.type == "page":
                page = (item.record.get("context") or {}).get("page") if isinstance(item.record.get("context"), dict) else None
                path = page.get("path") if isinstance(page, dict) else None
                if isinstance(path, str) and path:
                    bucket.pages[path[:200]] += 1
            visitor = (USER_ID, item.user_id) if item.user_id else (ANONYMOUS_ID, item.anonymous_id) if item.anonymous_id else None
            if visitor and (visitor in self.visitors or len(self.visitors) < MAX_VISITORS):
                self.visitors[visitor] = max(minute, self.visitors.get(visitor, minute))
        else:
            bucket.rejected += 1
            bucket.codes[str(item.record.get("code") or "?")] += 1

    def forget(self, person, rules: Rules) -> int:
        """Take the ids of ``person`` (``profiles.person.HashedPerson``) out of the visitors; how many went."""
        gone = [v for v in self.visitors if (value := rules.clean(v[1])) is not None and person.has((v[0], value))]
        for visitor in gone:
            del self.visitors[visitor]
        return len(gone)

    def _forget(self, now: int) -> None:
        oldest = now - WINDOW_MINUTES
        for minute in [m for m in self.minutes if m <= oldest]:
            del self.minutes[minute]
        if any(seen <= oldest for seen in self.visitors.values()):
            self.visitors = {v: seen for v, seen in self.visitors.items() if seen > oldest}

    def snapshot(self) -> dict:
        now = int(self.clock()) // 60
        self._forget(now)
        totals = Minute()
        series = []
        for minute in range(now - WINDOW_MINUTES + 1, now + 1):
            bucket = self.minutes.get(minute) or Minute()
            series.append({"minute": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(minute * 60)),
                           "types": dict(bucket.types), "rejected": bucket.rejected})  # fmt: skip
            for name in ("types", "codes", "events", "pages", "sources"):
                getattr(totals, name).update(getattr(bucket, name))
            totals.rejected += bucket.rejected
        return {
            "minutes": series,
            "accepted": sum(totals.types.values()),
            "rejected": totals.rejected,
            "types": dict(totals.types),
            "top_codes": totals.codes.most_common(TOP),
            "top_events": totals.events.most_common(TOP),
            "top_pages": totals.pages.most_common(TOP),
            "top_sources": totals.sources.most_common(TOP),
            "visitors": len(self.visitors),
            "visitors_capped": len(self.visitors) >= MAX_VISITORS,
        }
