"""The outbox's tables, in the profile database (SQLite or PostgreSQL)::

    outbox               one row a delivery: id (stable, the webhook-id), destination, state, attempts,
                         next_at (the next attempt; while in flight, when its lease ends), batch (the
                         webhook-id of the request it went in, kept across retries), payload (the
                         JSON sent as the webhook's data), who (the person's identifiers, for
                         privacy), the last request and answer
    outbox_cursor        each producer's log cursor, committed with the deliveries it created
    outbox_destinations  a destination disabled by an answer (410 Gone), when and why
    outbox_stats         per destination, the attempts' counts by outcome and their latencies (the
                         buckets of a histogram), written with each outcome: what /metrics reads

States: ``pending`` (not tried yet), ``in_flight`` (claimed by a sender until ``next_at``: a sender
killed meanwhile leaves it due again), ``failed`` (tried, to be retried at ``next_at``),
``delivered``, ``dead`` (not retried: a 4xx, a refused address, or the schedule used up; replayable).

Unlike the profiles' tables these are not derived from the log: ``profiles --rebuild`` must not
empty them (it would send everything again), so ``TABLES`` are created with the profile database
and never dropped by its rebuild. Times are epoch seconds. ``{text}`` as in ``profiles/store.py``.
"""

STATES = ("pending", "in_flight", "failed", "delivered", "dead")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, destination TEXT NOT NULL, state TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, next_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        batch TEXT, payload TEXT NOT NULL, who TEXT NOT NULL DEFAULT '', updated DOUBLE PRECISION NOT NULL,
        last_status INTEGER, last_error TEXT, last_request TEXT, last_answer TEXT)""",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, state, next_at)",
    "CREATE INDEX IF NOT EXISTS outbox_batch ON outbox (batch)",
    "CREATE TABLE IF NOT EXISTS outbox_cursor (name TEXT PRIMARY KEY, cursor TEXT NOT NULL, events BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS outbox_destinations (name TEXT PRIMARY KEY, disabled_at DOUBLE PRECISION,
        reason TEXT)""",
    """CREATE TABLE IF NOT EXISTS outbox_stats (destination TEXT NOT NULL, name TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL, PRIMARY KEY (destination, name))""",
)
TABLES = ("outbox", "outbox_cursor", "outbox_destinations", "outbox_stats")
