"""The dashboard's numbers: the last hour minute by minute, old minutes forgotten as time passes."""

from __future__ import annotations

import time

import orjson

from collector.console.dashboard import WINDOW_MINUTES, Dashboard
from collector.console.follower import Item
from collector.log.layout import iso_ms


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def item(n: int, at: float, **fields) -> object:
    record = {"type": "track", "event": "Bought", "userId": f"u{n % 3}", "source": "web", "receivedAt": iso_ms(at), **fields}
    status = "rejected" if "code" in record else "accepted"
    return Item(f"events/x@{n}", status, record, orjson.dumps(record))


def test_counts_by_minute_type_and_rank_over_the_last_hour_only():
    clock = Clock(time.time() // 60 * 60 + 30)
    dashboard = Dashboard(clock)
    now = clock.now
    for n in range(6):
        dashboard.add(item(n, now - 60 * n))
    dashboard.add(item(10, now, type="page", event=None, context={"page": {"path": "/home"}}))
    dashboard.add(item(11, now, anonymousId="a1", userId=None, code="missing_id", message="no id", payload="{}"))
    dashboard.add(item(12, now - 3 * 3600))  # older than the hour: not counted
    snap = dashboard.snapshot()
    assert len(snap["minutes"]) == WINDOW_MINUTES
    assert snap["minutes"][-1]["types"] == {"track": 1, "page": 1} and snap["minutes"][-1]["rejected"] == 1
    assert [m["types"].get("track", 0) for m in snap["minutes"][-6:]] == [1] * 6
    assert snap["accepted"] == 7 and snap["rejected"] == 1
    assert dict(snap["top_events"]) == {"Bought": 6}
    assert dict(snap["top_pages"]) == {"/home": 1} and dict(snap["top_codes"]) == {"missing_id": 1}
    assert dict(snap["top_sources"]) == {"web": 8}
    assert snap["visitors"] == 3  # u0, u1, u2 (the rejected message's visitor is not one)

    clock.now += (WINDOW_MINUTES - 4) * 60  # the two oldest minutes are now out of the window
    snap = dashboard.snapshot()
    assert snap["accepted"] == 5 and snap["rejected"] == 1
    clock.now += WINDOW_MINUTES * 60
    snap = dashboard.snapshot()
    assert snap["accepted"] == snap["rejected"] == snap["visitors"] == 0 and dashboard.minutes == {}
