"""The outbox's queries, on the profile database (``open_outbox``: a SQLite path or a PostgreSQL URL).

Every change is one transaction: ``add`` writes a producer's new deliveries and its log cursor
together (a kill at any point loses none and, the ids being stable and inserted only when new,
creates none twice); ``claim`` takes due deliveries for a sender (PostgreSQL: ``FOR UPDATE SKIP
LOCKED``, so senders on several hosts never take the same one; SQLite: its one writer) and marks
them in flight until a lease ends; ``record`` writes an attempt's outcome.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Iterable

import orjson

from collector.engage.outbox.tables import SCHEMA, STATES
from collector.profiles.sql import SqlBase

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # seconds of a request
EXCERPT = 2048  # characters of a request's or an answer's body kept with a delivery


def open_outbox(target: str | Path, *, reads_only: bool = False) -> "Outbox":
    """The outbox in the profile database ``target`` names (``profiles.database.db_target``).
    ``reads_only`` (the collector's /metrics): no table made, and on SQLite a lock held by a writer
    is waited for at most ``READ_TIMEOUT`` s (an error then), never the event loop's 30 s."""
    if str(target).startswith(("postgresql://", "postgres://")):
        return PostgresOutbox(str(target), reads_only=reads_only)
    return SqliteOutbox(Path(target), reads_only=reads_only)


READ_TIMEOUT = 0.2


def excerpt(text: str | bytes | None, limit: int = EXCERPT) -> str | None:
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


class Outbox(SqlBase):
    SKIP_LOCKED = ""
    TEXT = "TEXT"
    MINUTE = "CAST((updated - ?) / 60 AS INTEGER)"  # the minute since ``since`` (never negative: truncation floors)

    def create(self) -> None:
        self.begin()
        for statement in SCHEMA:
            self._run(statement.replace("{text}", self.TEXT))
        self.commit()

    # --- producers ------------------------------------------------------------------------------
    def cursor(self, name: str) -> tuple[dict, int]:
        rows = self._all("SELECT cursor, events FROM outbox_cursor WHERE name = ?", (name,))
        return (orjson.loads(rows[0][0]), rows[0][1]) if rows else ({}, 0)

    def add(self, rows: list[tuple], name: str, cursor: dict, events: int, now: float | None = None) -> None:
        """New deliveries ``(id, destination, payload, who)`` and the producer's cursor after them, in the
        caller's transaction (``begin`` ... ``commit``). A delivery whose id exists is left as it is."""
        now = time.time() if now is None else now
        self._many("INSERT INTO outbox (id, destination, state, created, next_at, payload, who, updated) "
                   "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                   [(i, d, now, now, p, w, now) for i, d, p, w in rows])  # fmt: skip
        self._run("INSERT INTO outbox_cursor (name, cursor, events) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                  "SET cursor = excluded.cursor, events = excluded.events",
                  (name, orjson.dumps(cursor).decode(), events))  # fmt: skip

    def bump(self, counted: dict[tuple[str, str], float]) -> None:
        """Add to stats ``{(destination, name): value}``, in the caller's transaction."""
        self._many("INSERT INTO outbox_stats (destination, name, value) VALUES (?, ?, ?) ON CONFLICT "
                   "(destination, name) DO UPDATE SET value = outbox_stats.value + excluded.value",
                   [(d, n, v) for (d, n), v in sorted(counted.items())])  # fmt: skip

    # --- senders --------------------------------------------------------------------------------
    def claim(self, destination: str, size: int, lease: float, groups: int = 1, now: float | None = None) -> list[list[tuple]]:
        """Up to ``groups`` requests' worth of due deliveries of ``destination``, each a list of rows
        ``(id, batch, payload, attempts)``, in flight until ``now + lease``, in one transaction. A batch
        already sent once is claimed whole (its webhook-id and body stay the same on every retry); other
        due deliveries are grouped ``size`` at a time, a group of more than one given a new batch id."""
        now = time.time() if now is None else now
        self.begin()
        try:
            due = "destination = ? AND state IN ('pending', 'failed', 'in_flight') AND next_at <= ?"
            found: list[list[tuple]] = []
            batches = self._all(f"SELECT DISTINCT batch FROM outbox WHERE {due} AND batch IS NOT NULL LIMIT ?",
                                (destination, now, groups))  # fmt: skip
            for (batch,) in batches:
                rows = self._all(f"SELECT id, batch, payload, attempts FROM outbox WHERE batch = ? AND {due} "
                                 f"ORDER BY id{self.SKIP_LOCKED}", (batch, destination, now))  # fmt: skip
                if rows:
                    found.append(rows)
            if len(found) < groups:
                rows = self._all(f"SELECT id, batch, payload, attempts FROM outbox WHERE {due} AND batch IS NULL "
                                 f"ORDER BY next_at, id LIMIT ?{self.SKIP_LOCKED}",
                                 (destination, now, (groups - len(found)) * size))  # fmt: skip
                for start in range(0, len(rows), size):
                    group = rows[start : start + size]
                    if len(group) > 1:
                        batch = "msg_" + uuid.uuid4().hex
                        group = [(i, batch, p, a) for i, _, p, a in group]
                    found.append(group)
            if found:
                self._many("UPDATE outbox SET state = 'in_flight', next_at = ?, batch = ?, updated = ? WHERE id = ?",
                           [(now + lease, b, now, i) for group in found for i, b, _, _ in group])  # fmt: skip
            self.commit()
            return found
        except BaseException:
            self.rollback()
            raise

    def record(self, outcomes: list[dict], now: float | None = None) -> None:
        """Attempts' outcomes, in one transaction. Each: ``ids`` (the deliveries sent together), ``state``,
        ``next_at``, ``status``, ``error``, ``request``, ``answer``; with ``destination``, counted in its
        stats (``outcome:<state>`` per delivery; with ``seconds``, the request's latency in its bucket)."""
        now = time.time() if now is None else now
        updates, counted = [], {}
        for o in outcomes:
            assert o["state"] in STATES
            updates += [(o["state"], o.get("next_at", 0.0), now, o.get("status"), o.get("error"), o.get("request"),
                         o.get("answer"), i) for i in o["ids"]]  # fmt: skip
            dest = o.get("destination")
            if dest:
                names = [(f"outcome:{o['state']}", len(o["ids"]))]
                if o.get("seconds") is not None:
                    bound = next((b for b in LATENCY_BUCKETS if o["seconds"] <= b), "+Inf")
                    names += [(f"le:{bound}", 1), ("sum", o["seconds"]), ("count", 1)]
                for name, value in names:
                    counted[(dest, name)] = counted.get((dest, name), 0) + value
        self.begin()
        try:
            self._many("UPDATE outbox SET state = ?, next_at = ?, attempts = attempts + 1, updated = ?, last_status = ?, "
                       "last_error = ?, last_request = ?, last_answer = ? WHERE id = ? AND state = 'in_flight'", updates)  # fmt: skip
            self.bump(counted)
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def release(self, ids: list[str]) -> None:
        """Claimed and not sent (a destination disabled meanwhile, a sender stopping): due again at once."""
        self.begin()
        self._many("UPDATE outbox SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END, next_at = 0 "
                   "WHERE id = ? AND state = 'in_flight'", [(i,) for i in ids])  # fmt: skip
        self.commit()

    # --- the destination's state ----------------------------------------------------------------
    def disabled(self) -> dict[str, tuple[float, str]]:
        return {n: (t, r) for n, t, r in self._all("SELECT name, disabled_at, reason FROM outbox_destinations "
                                                     "WHERE disabled_at IS NOT NULL")}  # fmt: skip

    def disable(self, name: str, reason: str, now: float | None = None) -> None:
        self.begin()
        self._run("INSERT INTO outbox_destinations (name, disabled_at, reason) VALUES (?, ?, ?) ON CONFLICT (name) "
                  "DO UPDATE SET disabled_at = excluded.disabled_at, reason = excluded.reason",
                  (name, time.time() if now is None else now, reason))  # fmt: skip
        self.commit()

    def enable(self, name: str) -> bool:
        self.begin()
        was = bool(self._all("SELECT 1 FROM outbox_destinations WHERE name = ? AND disabled_at IS NOT NULL", (name,)))
        self._run("DELETE FROM outbox_destinations WHERE name = ?", (name,))
        self.commit()
        return was

    # --- reading and replay ---------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Per destination, the number of deliveries in each state."""
        found: dict[str, dict[str, int]] = {}
        for destination, state, n in self._all("SELECT destination, state, COUNT(*) FROM outbox GROUP BY destination, state"):
            found.setdefault(destination, dict.fromkeys(STATES, 0))[state] = n
        self.commit()  # a reader holds no transaction open (PostgreSQL)
        return found

    def last_error(self, destination: str) -> dict | None:
        rows = self._all("SELECT id, updated, last_status, last_error, last_answer FROM outbox WHERE destination = ? "
                         "AND state IN ('failed', 'dead') ORDER BY updated DESC LIMIT 1", (destination,))  # fmt: skip
        self.commit()
        if not rows:
            return None
        i, updated, status, error, answer = rows[0]
        return {"id": i, "at": updated, "status": status, "error": error, "answer": answer}

    def minutes(self, since: float, n: int = 60) -> dict[str, dict[str, list[int]]]:
        """Per destination, the deliveries that ended each minute from ``since`` (``n`` minutes), by the
        state they ended in: ``delivered``, ``failed`` (to be retried), ``dead`` (as the row stands now:
        a delivery retried and then delivered counts once, delivered)."""
        found: dict[str, dict[str, list[int]]] = {}
        rows = self._all(f"SELECT destination, state, {self.MINUTE} AS minute, COUNT(*) FROM outbox WHERE updated >= ? "
                         f"AND state IN ('delivered', 'failed', 'dead') GROUP BY destination, state, minute", (since, since))  # fmt: skip
        self.commit()
        for destination, state, minute, count in rows:
            if 0 <= int(minute) < n:
                by = found.setdefault(destination, {s: [0] * n for s in ("delivered", "failed", "dead")})
                by[state][int(minute)] += count
        return found

    def stats(self) -> dict[str, dict[str, float]]:
        """Per destination, its stats (``record``)."""
        found: dict[str, dict[str, float]] = {}
        for destination, name, value in self._all("SELECT destination, name, value FROM outbox_stats"):
            found.setdefault(destination, {})[name] = value
        self.commit()
        return found

    def deliveries(self, destination: str, state: str | None = None, limit: int = 50, after: str = "") -> list[dict]:
        """Deliveries of ``destination`` (of one ``state``), by id, after the id ``after``."""
        where, params = "destination = ? AND id > ?", [destination, after]
        if state:
            where += " AND state = ?"
            params.append(state)
        rows = self._all(f"SELECT id, state, created, next_at, attempts, batch, payload, updated, last_status, last_error, "
                         f"last_request, last_answer FROM outbox WHERE {where} ORDER BY id LIMIT ?", [*params, limit])  # fmt: skip
        self.commit()
        names = ("id", "state", "created", "next_at", "attempts", "batch", "payload", "updated", "last_status",
                 "last_error", "last_request", "last_answer")  # fmt: skip
        found = []
        for row in rows:
            item = dict(zip(names, row))
            item["payload"] = orjson.loads(item["payload"])
            found.append(item)
        return found

    def replay(self, destination: str, *, since: float | None = None, ids: Iterable[str] = (),
               states: tuple[str, ...] = ("dead", "failed")) -> int:  # fmt: skip
        """Send again: the ``dead`` and ``failed`` deliveries of ``destination`` (those created at or after
        ``since``; or the ``ids`` named, in any state but in flight), due now, attempts from 0, each in a
        request of its own making (a new batch). The number made due."""
        ids = list(ids)
        where, params = "destination = ?", [destination]
        if ids:
            where += f" AND state <> 'in_flight' AND id IN ({','.join('?' * len(ids))})"
            params += ids
        else:
            where += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        if since is not None:
            where += " AND created >= ?"
            params.append(since)
        self.begin()
        try:
            n = self._all(f"SELECT COUNT(*) FROM outbox WHERE {where}", params)[0][0]
            self._run(f"UPDATE outbox SET state = 'pending', next_at = 0, attempts = 0, batch = NULL WHERE {where}", params)
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return n


class SqliteOutbox(Outbox):
    def __init__(self, path: Path, *, reads_only: bool = False) -> None:
        if reads_only:
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=READ_TIMEOUT, check_same_thread=False)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a committed transaction survives a process kill
        self.create()

    def begin(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        self.conn.close()


class PostgresOutbox(Outbox):
    P = "%s"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    MINUTE = "FLOOR((updated - ?) / 60)"
    TEXT = 'TEXT COLLATE "C"'

    def __init__(self, url: str, *, reads_only: bool = False) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=reads_only)
        if not reads_only:
            self.create()

    def close(self) -> None:
        self.conn.close()
