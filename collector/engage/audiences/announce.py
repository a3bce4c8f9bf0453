"""``Audience Entered`` / ``Audience Exited`` from the profile database into the log, exactly once.

The profile builder (a process of its own, with no log writer) commits an audience change, its
``engage_announce`` row (``tables.py``: ``id`` the messageId, ``seq``, ``profile_id``,
``message``) and its cursor in one transaction. The collector's serving process, which has the
store, moves the rows into the log with ``Announcer``, a background task of the app::

    builder ──(one transaction: membership, engage_announce row, cursor)──▶ profile database
    collector: every POLL s  rows in seq order ─▶ Pipeline ─▶ Committer ─▶ log ─▶ DELETE the rows

Each row becomes a stored line exactly as a server-side ``track`` does (``ingest.pipeline``:
validation, the suppression list, ``timestamp``/``originalTimestamp``, ``receivedAt``, the
context), from the source ``intilery`` (``SOURCE``: no client address, no user agent), and is
appended by the same ``Committer`` as ingest, so that its duplicate filter decides what is new.
A row that is not a valid message (which the builder never writes) goes to ``rejected/`` as
ingest's would, and is deleted.

Exactly once, across SIGKILL at any point:

- killed before the append, or during it: the rows are still there; a torn line is cut off by the
  store's recovery at the next start, and the rows are appended again;
- killed between the append and the ``DELETE``: the rows are appended again at the next start,
  with the same messageIds, and dropped as duplicates: the file store's filter is seeded from the
  log at start (``log/seeding.py``; ``dedup_window_hours``), the host writer's likewise with
  ``--workers N``; on the NATS store JetStream drops a ``Nats-Msg-Id`` it stored within
  ``nats_duplicate_window_seconds`` (120 s by default): a collector down for longer than that
  between the append and the ``DELETE`` can store such a batch twice.

One announcer per host: with ``--workers N`` the worker holding ``<data_dir>/.locks/announce.lock``
runs it (another takes the lock within ``RETRY_LOCK`` s of its death). On PostgreSQL shared by
several hosts the rows are claimed with ``FOR UPDATE SKIP LOCKED`` in a transaction held across
the append and the ``DELETE``: two hosts never append the same rows at once, and rows whose
host died are claimed by another (on the NATS store, within JetStream's duplicate window, still
once; with a file log per host a batch appended by a host killed before its ``DELETE`` is
appended again to another host's log).

Privacy: a suppressed person's rows are dropped by the pipeline's suppression list (counted,
never stored), as their own events are; an erasure deletes a person's pending rows with their
profile (``profiles/sql_erase.py``). It does so after rewriting the log, so rows already read by
the announcer when the log was rewritten (a window of about ``POLL`` s) can still be appended for a
``DELETE_ONLY`` person, as their events arriving after the erasure's rotation are.

The announcer waits, doing nothing but look, until the profile database has the
``engage_announce`` table (it creates nothing), and then takes its lock. A change is in the log
within ``POLL`` s (plus the append) of its commit in the profile database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator

import orjson

from collector.config import Source
from collector.errors import CollectorError
from collector.ingest.commit import dead_letters
from collector.ingest.pipeline import RequestInfo
from collector.log.layout import LOCK_DIR
from collector.log.segments import try_lock
from collector.profiles.database import db_target

log = logging.getLogger("intilery.engage")

SOURCE = Source(name="intilery", write_key="", ip_mode="drop")  # the platform's own events: no client address
TABLE = "engage_announce"
LOCK = "announce"  # <data_dir>/.locks/announce.lock: one announcer per host
POLL = 0.2  # seconds between looks at the table when it was empty
BATCH = 500  # rows appended at a time (one append, one DELETE)
RETRY_LOCK = 1.0  # seconds between a worker's looks at a lock another worker holds
RETRY_FAILED = 2.0  # seconds before a batch that failed (store unavailable, database locked) is tried again


class Rows:
    """The ``engage_announce`` rows of the profile database a configuration names."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.postgres = target.startswith(("postgresql://", "postgres://"))
        self.conn: Any = None

    def connect(self) -> bool:
        """Connected (again, after an error closed the connection); False while a SQLite file is absent."""
        if self.conn is None:
            if self.postgres:
                import psycopg

                self.conn = psycopg.connect(self.target)
            else:
                if not Path(self.target).exists():
                    return False
                import sqlite3

                self.conn = sqlite3.connect(self.target, timeout=30, check_same_thread=False)
        return True

    def ready(self) -> bool:
        """Whether the table exists (connecting first, once the database does)."""
        if not self.connect():
            return False
        if self.postgres:
            found = self.conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0]
            self.conn.rollback()
            return found is not None
        return bool(self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone())

    def claim(self, limit: int) -> list[tuple[str, str]]:
        """The oldest pending rows, ``(id, message)`` in ``seq`` order. On PostgreSQL they stay
        locked (skipped by every other host) until ``delete`` or ``release``."""
        if not self.connect():
            return []
        if self.postgres:
            sql = f"SELECT id, message FROM {TABLE} ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED"
            return self.conn.execute(sql, (limit,)).fetchall()
        return self.conn.execute(f"SELECT id, message FROM {TABLE} ORDER BY seq LIMIT ?", (limit,)).fetchall()

    def delete(self, ids: list[str]) -> None:
        """The appended rows gone, committed."""
        mark = "%s" if self.postgres else "?"
        if not self.postgres:  # the write lock at once (with the busy timeout), not an upgrade of a read that can fail
            self.conn.execute("BEGIN IMMEDIATE")
        for at in range(0, len(ids), BATCH):
            chunk = ids[at : at + BATCH]
            self.conn.execute(f"DELETE FROM {TABLE} WHERE id IN ({','.join([mark] * len(chunk))})", chunk)
        self.conn.commit()

    def release(self) -> None:
        """A claim given up (the append failed): the rows are pending again."""
        if self.conn is not None:
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001 - a broken connection: closed, connected again at the next look
                self.close()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


class Announcer:
    """Moves the pending rows into the log through ``pipeline`` and ``committer`` (the app's)."""

    def __init__(self, config, pipeline, committer, metrics=None, rows: Rows | None = None) -> None:
        self.config, self.pipeline, self.committer, self.metrics = config, pipeline, committer, metrics
        self.rows = rows or Rows(db_target(config))
        self.lock: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: wait for the table and the host's lock, then drain, a batch at a time."""
        try:
            while not stop.is_set():
                rest = POLL
                try:
                    if self.lock is None:
                        rest = await self._acquire()
                    else:
                        rest = 0 if await self.drain() == BATCH else POLL
                except CollectorError as exc:  # the store is unavailable: the rows wait
                    log.warning("audience events not appended yet", extra={"code": exc.code, "reason": exc.message})
                    rest = RETRY_FAILED
                except Exception:  # noqa: BLE001 - a database error (locked, connection lost): tried again
                    log.exception("audience events not appended yet")
                    self.rows.close()
                    rest = RETRY_FAILED
                if rest:
                    try:
                        await asyncio.wait_for(stop.wait(), rest)
                    except asyncio.TimeoutError:
                        pass
        finally:
            await asyncio.to_thread(self.rows.close)
            if self.lock is not None:
                os.close(self.lock)
                self.lock = None

    async def _acquire(self) -> float:
        """Take the host's lock once the table exists; the seconds to wait before looking again."""
        if not await asyncio.to_thread(self.rows.ready):
            return POLL
        data_dir = Path(self.config.data_dir)
        (data_dir / LOCK_DIR).mkdir(parents=True, exist_ok=True)
        self.lock = try_lock(data_dir, LOCK)
        if self.lock is None:
            return RETRY_LOCK
        log.info("appending audience events to the log")
        return 0

    async def drain(self) -> int:
        """Append one batch of pending rows and delete them; how many rows it held."""
        rows = await asyncio.to_thread(self.rows.claim, BATCH)
        if not rows:
            await asyncio.to_thread(self.rows.release)  # PostgreSQL: the transaction of the look ends
            return 0
        try:
            received_at = time.time()
            messages = [_message(row_id, text) for row_id, text in rows]
            outcome = self.pipeline.process(messages, SOURCE, RequestInfo(received_at, None, None), None)  # each its own type (an unsubscribe is an identify)
            rejected = dead_letters(SOURCE, received_at, outcome, messages)
            duplicates = await self.committer.commit(SOURCE, outcome, received_at, rejected)
        except BaseException:
            await asyncio.to_thread(self.rows.release)
            raise
        await asyncio.to_thread(self.rows.delete, [row_id for row_id, _ in rows])
        if self.metrics is not None:
            self.metrics.inc("intilery_events_accepted_total", len(outcome.ids) - duplicates, source=SOURCE.name)
            if duplicates:
                self.metrics.inc("intilery_events_duplicate_total", duplicates, source=SOURCE.name)
            if outcome.suppressed:
                self.metrics.inc("intilery_events_suppressed_total", outcome.suppressed, source=SOURCE.name)
            for each in outcome.rejected:
                self.metrics.inc("intilery_events_rejected_total", source=SOURCE.name, code=each["code"])
        if outcome.rejected:
            log.warning("audience events rejected (kept in rejected/)", extra={"rejected": len(outcome.rejected)})
        return len(rows)


def _message(row_id: str, text: str) -> Any:
    """A row's message, its messageId the row's id (the text as it is when it is not a JSON object:
    the pipeline rejects it with a sentence, into rejected/)."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(message, dict):
        message["messageId"] = row_id
    return message


def announce_context(config, state):
    """An ``app.cleanup_ctx`` entry running the announcer for as long as the app runs (after the
    store has started, stopped before it closes: the batch in hand is finished)."""

    async def context(app) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(Announcer(config, state.pipeline, state.committer, state.metrics).run(stop))
        yield
        stop.set()
        await task

    return context
