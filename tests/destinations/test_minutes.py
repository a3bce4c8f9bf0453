"""The outbox's deliveries per minute (``Outbox.minutes``: the console's chart), on SQLite and PostgreSQL:
each delivery that ended counted once, in the minute it ended, by the state it ended in."""

from __future__ import annotations

import pytest

from collector.engage.outbox.store import open_outbox

SINCE = 1_800_000_000.0  # a minute's start


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_deliveries_per_minute_by_state(database, tmp_path, request):
    target = request.getfixturevalue("postgres").database() if database == "postgres" else tmp_path / "profiles.db"
    outbox = open_outbox(target)
    rows = [("a1", "crm", "delivered", SINCE + 0.5), ("a2", "crm", "delivered", SINCE + 59.9), ("a3", "crm", "delivered", SINCE + 60),
            ("a4", "crm", "dead", SINCE + 3599), ("a5", "crm", "failed", SINCE + 125), ("a6", "crm", "pending", SINCE + 10),
            ("a7", "crm", "delivered", SINCE - 1), ("a8", "crm", "delivered", SINCE + 3600), ("b1", "ads", "dead", SINCE + 61)]  # fmt: skip
    for i, name, state, at in rows:
        outbox._run("INSERT INTO outbox (id, destination, state, created, next_at, payload, updated) VALUES (?, ?, ?, ?, 0, '{}', ?)",
                    (i, name, state, at, at))  # fmt: skip
    outbox.commit()
    found = outbox.minutes(SINCE, 60)
    outbox.close()
    zeros = [0] * 60
    assert set(found) == {"crm", "ads"}
    assert found["crm"]["delivered"] == [2, 1] + zeros[2:]  # before SINCE and at the hour's end: outside
    assert found["crm"]["failed"] == zeros[:2] + [1] + zeros[3:]
    assert found["crm"]["dead"] == zeros[:59] + [1]
    assert found["ads"] == {"delivered": zeros, "failed": zeros, "dead": [0, 1] + zeros[2:]}
