"""Who no email goes to, in the profile database beside the outbox (``email_*`` tables, never
emptied by a profiles rebuild, like the outbox's)::

    email_undeliverable  address (lower-cased) a relay refused for good (5xx at RCPT), when, the answer
    email_unsubscribed   profile id and list, when: one click on a List-Unsubscribe link (the consent
                         trait goes to the log too; this row stops mail at once, before the profile sees it)
    email_sent           profile id, kind, when: marketing messages sent, for the frequency cap

A send is checked against them when it is attempted (not only when it was queued): someone who left
meanwhile gets nothing more.
"""

from __future__ import annotations

import time

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS email_undeliverable (address TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, answer TEXT)",
    """CREATE TABLE IF NOT EXISTS email_unsubscribed (profile_id TEXT NOT NULL, list TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL, PRIMARY KEY (profile_id, list))""",
    "CREATE TABLE IF NOT EXISTS email_sent (profile_id TEXT NOT NULL, kind TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS email_sent_person ON email_sent (profile_id, at)",
)
TABLES = ("email_undeliverable", "email_unsubscribed", "email_sent")


def create(db) -> None:
    """The tables, on the outbox's connection (``db``: an ``Outbox``)."""
    db.begin()
    for statement in SCHEMA:
        db._run(statement)
    db.commit()


def undeliverable(db, address: str) -> bool:
    found = bool(db._all("SELECT 1 FROM email_undeliverable WHERE address = ?", (address.lower(),)))
    db.commit()
    return found


def mark_undeliverable(db, address: str, answer: str, now: float | None = None) -> None:
    db.begin()
    db._run("INSERT INTO email_undeliverable (address, at, answer) VALUES (?, ?, ?) ON CONFLICT (address) DO UPDATE "
            "SET at = excluded.at, answer = excluded.answer", (address.lower(), time.time() if now is None else now, answer))  # fmt: skip
    db.commit()


def unsubscribed(db, pid: str, topic: str) -> bool:
    found = bool(db._all("SELECT 1 FROM email_unsubscribed WHERE profile_id = ? AND list = ?", (pid, topic)))
    db.commit()
    return found


def unsubscribe(db, pid: str, topic: str, now: float | None = None) -> bool:
    """Recorded; True when the person was subscribed until now."""
    db.begin()
    was = not db._all("SELECT 1 FROM email_unsubscribed WHERE profile_id = ? AND list = ?", (pid, topic))
    db._run("INSERT INTO email_unsubscribed (profile_id, list, at) VALUES (?, ?, ?) ON CONFLICT (profile_id, list) "
            "DO NOTHING", (pid, topic, time.time() if now is None else now))  # fmt: skip
    db.commit()
    return was


def sent_since(db, pid: str, since: float) -> int:
    n = db._all("SELECT COUNT(*) FROM email_sent WHERE profile_id = ? AND kind = 'marketing' AND at >= ?", (pid, since))[0][0]
    db.commit()
    return int(n)


def note_sent(db, pid: str, kind: str, now: float) -> None:
    db.begin()
    db._run("INSERT INTO email_sent (profile_id, kind, at) VALUES (?, ?, ?)", (pid, kind, now))
    db.commit()
