"""The outbox: everything that leaves the platform (webhooks now; email and journeys later) is a
delivery in one durable table of the profile database (DESIGN.md, "Using the data")::

    producer (destinations/consumer.py) ── add(rows, cursor) ─▶ outbox ─▶ claim ─▶ send ─▶ record(outcome)

A delivery has a stable id (the same on every retry: the webhook's ``webhook-id``), a state,
its attempts, the time of its next attempt, and the last request and answer (status, a bounded
excerpt of the body, the error). ``tables.py`` holds the CREATE statements, ``store.py`` the
queries (SQLite or PostgreSQL).
"""
