"""The audiences read back: sizes, members a page at a time, sizes over time, one person's audiences
and computed traits. For ``GET /v1/audiences``, the Profile API's traits, ``intilery audiences`` and
the console; on either store (SQLite or PostgreSQL), through the store's own queries (``_all``), as
``profiles/search.py`` reads.

What is read (``tables.py``)::

    size          engage_members: the people in the audience now
    updated_at    the latest entered_at or exited_at of its stays (engage_history); None: never changed
    members       engage_members in profile id order, a page at a time; each with its user id and
                  anonymous id (the ones seen last) from the profile's identifiers
    sizes at T    the stays with entered_at <= T and exited_at NULL or after T: the stays open now,
                  plus those that ended after T, less those that began after T (so a series reads
                  only the changes within it, never every stay)

Times are epoch seconds in the tables, ISO-8601 (``iso_ms``) in every answer.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple

import orjson

from collector.log.layout import iso_ms

PERIODS = {"day": 86400, "hour": 3600}  # a series' step: the console's "last 30 days" and "last 30 hours"
POINTS = 30


class Summary(NamedTuple):
    size: int
    updated_at: float | None


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else iso_ms(epoch)


def summaries(store, keys: list[str]) -> dict[str, Summary]:
    """Each audience's size now and its last change (an audience with no row: 0, None)."""
    sizes = dict(store._all("SELECT audience, COUNT(*) FROM engage_members GROUP BY audience"))
    changed = {a: max(x for x in (entered, exited) if x is not None)
               for a, entered, exited in store._all("SELECT audience, MAX(entered_at), MAX(exited_at) FROM engage_history "
                                                    "GROUP BY audience")}  # fmt: skip
    store.commit()  # a read opens a transaction on PostgreSQL: end it
    return {key: Summary(int(sizes.get(key, 0)), changed.get(key)) for key in keys}


def members(store, audience: str, limit: int, after: str = "") -> tuple[list[dict], bool]:
    """A page of the audience's members after profile id ``after``, in profile id order; and whether more follow."""
    rows = store._all("SELECT profile_id, entered_at FROM engage_members WHERE audience = ? AND profile_id > ? "
                      "ORDER BY profile_id LIMIT ?", (audience, after, limit + 1))  # fmt: skip
    more, rows = len(rows) > limit, rows[:limit]
    ids = latest_ids(store, [pid for pid, _ in rows])
    store.commit()
    page = [{"profile_id": pid, "user_id": ids.get((pid, "user_id")), "anonymous_id": ids.get((pid, "anonymous_id")),
             "entered_at": iso(entered)} for pid, entered in rows]  # fmt: skip
    return page, more


def latest_ids(store, pids: list[str]) -> dict[tuple[str, str], str]:
    """``(profile id, type) -> value`` of each profile's user id and anonymous id seen last."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    sql = "SELECT profile_id, type, value, last_seen FROM identifiers WHERE type IN ('user_id', 'anonymous_id') AND profile_id IN ({})"
    for rows in store._chunked(sql, pids):
        for pid, kind, value, last_seen in rows:
            if (pid, kind) not in found or (last_seen, value) > found[(pid, kind)]:
                found[(pid, kind)] = (last_seen, value)
    return {key: value for key, (_, value) in found.items()}


def of_person(store, pid: str) -> dict[str, float]:
    """The audiences the person is in now: key -> entered_at."""
    rows = store._all("SELECT audience, entered_at FROM engage_members WHERE profile_id = ? ORDER BY audience", (pid,))
    store.commit()
    return dict(rows)


def computed_traits(store, pid: str) -> dict:
    """The person's computed traits (``engage/traits/``) as the live evaluation last wrote them; {} when none."""
    rows = store._all("SELECT traits FROM engage_computed WHERE profile_id = ?", (pid,))
    store.commit()
    return orjson.loads(rows[0][0]) if rows else {}


def sizes_over_time(store, keys: list[str], now: float, period: str = "day", points: int = POINTS) -> dict:
    """Each audience's size at ``points`` moments a ``period`` apart, the last one ``now``:
    ``{"at": [iso, ...], "sizes": {key: [n, ...]}}``."""
    step = PERIODS[period]
    moments = [now - step * (points - 1 - i) for i in range(points)]
    start = moments[0]
    open_now = dict(store._all("SELECT audience, COUNT(*) FROM engage_history WHERE exited_at IS NULL GROUP BY audience"))
    entered: dict[str, list[float]] = {key: [] for key in keys}
    exited: dict[str, list[float]] = {key: [] for key in keys}
    for audience, at in store._all("SELECT audience, entered_at FROM engage_history WHERE entered_at > ?", (start,)):
        entered.setdefault(audience, []).append(at)
    for audience, at in store._all("SELECT audience, exited_at FROM engage_history WHERE exited_at > ?", (start,)):
        exited.setdefault(audience, []).append(at)
    store.commit()
    sizes = {}
    for key in keys:
        ins, outs = sorted(entered[key]), sorted(exited[key])
        base = int(open_now.get(key, 0))
        # stays open at T: open now, or ended after T; less those begun after T
        sizes[key] = [base + (len(outs) - bisect_right(outs, t)) - (len(ins) - bisect_right(ins, t)) for t in moments]
    return {"period": period, "at": [iso_ms(t) for t in moments], "sizes": sizes}
