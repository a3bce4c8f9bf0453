"""Audience memberships and the definitions in force written straight into a profile database, as
the live evaluation writes them (``collector/engage/audiences/tables.py``, ``backfill.save``): for the
API, CLI and console tests."""

from __future__ import annotations

from collector.engage.audiences.backfill import save


def in_force(store, files: dict[str, str], backfilling: dict[str, str] | None = None) -> None:
    """``files`` (``audiences/high_value.yaml`` -> its text) the definitions in force; ``backfilling``
    other definitions being counted over the log (not in force yet)."""
    save(store, "in_force", files)
    save(store, "backfill", None if backfilling is None else {"files": backfilling, "cursor": {}})
    store.commit()


def write_rows(store, members=(), history=(), computed=()) -> None:
    """``members`` (audience, profile id, entered_at), ``history`` (audience, profile id, entered_at,
    exited_at), ``computed`` (profile id, traits JSON text)."""
    store._many("INSERT INTO engage_members (audience, profile_id, entered_at) VALUES (?, ?, ?)", list(members))
    store._many("INSERT INTO engage_history (audience, profile_id, entered_at, exited_at) VALUES (?, ?, ?, ?)", list(history))
    store._many("INSERT INTO engage_computed (profile_id, traits) VALUES (?, ?)", list(computed))
    store.commit()


DAY, HOUR = 86400.0, 3600.0
# Three people's stays, relative to ``now``: high_value holds u-1 (for 10 days) and u-2 (3 hours); u-3
# was in it from 20 days to 2 days ago; lamp_viewers holds u-3 (an hour). u-1 has a computed trait.
DEFINITIONS = {
    "audiences/high_value.yaml": "name: High-value buyers\ncondition:\n  event: Order Completed\n  count: {op: gte, value: 2}\n",
    "audiences/lamp_viewers.yaml": "name: Viewed a lamp\ncondition:\n  event: Product Viewed\n  where: {field: properties.category, value: lamps}\n",
    "traits/orders_90d.yaml": "kind: count\nevent: Order Completed\nwithin: 90d\n",
}


def three_people(store, pids: dict[str, str], now: float) -> None:
    write_rows(
        store,
        members=[("high_value", pids["u-1"], now - 10 * DAY), ("high_value", pids["u-2"], now - 3 * HOUR),
                 ("lamp_viewers", pids["u-3"], now - HOUR)],
        history=[("high_value", pids["u-1"], now - 10 * DAY, None), ("high_value", pids["u-2"], now - 3 * HOUR, None),
                 ("high_value", pids["u-3"], now - 20 * DAY, now - 2 * DAY), ("lamp_viewers", pids["u-3"], now - HOUR, None)],
        computed=[(pids["u-1"], '{"orders_90d": 4}')],
    )  # fmt: skip


def expected_days(k: int) -> int:
    """high_value's size ``k`` days before now (in three_people)."""
    return 2 if k == 0 else 1 if k in (1, 2) else 2 if k <= 10 else 1 if k <= 20 else 0
