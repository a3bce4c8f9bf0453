"""The journeys' runner: one more consumer of the log (through its one ``Reader``, as the
destinations' filler), and the timer loop. Every change is one transaction of the profile database::

    runner.step()   a batch of events: runs entered, moved or ended, their deliveries (outbox) and
                    track events (engage_announce), and the log cursor after the batch
    runner.fire()   the runs whose timer fell due (the index on next_at; SKIP LOCKED on PostgreSQL),
                    moved on, with their deliveries and events

A SIGKILL at any point leaves the database as the last commit left it: a run stands at the step it
stood at, with its timer; the events after the cursor are read again; a step re-executed makes
the same ids (``channels.delivery_id``: run and step; a run's id: the journey and the entering
event), inserted only when new. Nothing is lost, nothing is sent twice.

Order: an event is applied ``HOLD`` s after its receipt (``read`` stops at the first one received
more recently, and reads it again at the next pass), and the events of a batch in the order of their
``timestamp`` (stable: the log's order between equal ones): a person's events received within
``HOLD`` s of each other are applied in the order they happened. A later one is applied as it
comes (docs/journeys.md says so). Times of waits are taken when the runner applies the step
(processing time), a ``wait: {until: ...}`` from the entering event.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson

from collector.engage.conditions import Subject, holds, lookup
from collector.engage.destinations.consumer import Filler
from collector.engage.journeys.channels import CHANNELS, delivery_id, iso
from collector.engage.journeys.definitions import Journey, Match, instance_of, version_of
from collector.engage.journeys.store import COLUMNS
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.journeys")

CURSOR = "journeys"
BATCH = 500  # events per transaction
FIRE = 500  # timers per transaction
MAX_MOVES = 1000  # steps one run may take in one moment (a loop without a wait is refused by the check)
HOLD = 1.0  # seconds an event waits after its receipt before it is applied, so that the late ones of a person come first
GRACE = 60.0  # seconds: events received this long before a journey was first read still enter it


def epoch(value) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def run_id(journey: str, event: dict, where: str) -> str:
    """A run's id: the journey and the entering event (its source and messageId), so that a
    duplicated or replayed event enters no run twice."""
    message_id = event.get("messageId")
    key = f"{event.get('source') or ''}\0{message_id}" if isinstance(message_id, str) else f"\1{where}"
    return "run_" + hashlib.blake2b(f"{journey}\0{key}".encode(), digest_size=12).hexdigest()


def matches(match: Match, event: dict, journey: Journey, instance: str | None = None) -> bool:
    if event.get("event") != match.event or event.get("type", "track") != "track":
        return False
    if match.where is not None and not holds(match.where, Subject(event=event)):
        return False
    return not match.same_instance or instance_of(journey, event) == instance


class Runner:
    def __init__(self, store, data_dir: Path, journeys: dict[str, Journey], *, name: str = CURSOR, rules: Rules = Rules(),
                 stream=None, batch: int = BATCH, hold: float = HOLD) -> None:  # fmt: skip
        self.store, self.journeys, self.rules, self.name, self.hold = store, journeys, rules, name, hold
        self.feed = Filler(store, data_dir, {}, batch=batch, name=name, rules=rules, stream=stream)  # its reader and cursor
        self.programs: dict[tuple[str, str], Journey | None] = {(j.key, j.digest): j for j in journeys.values()}
        store.begin()
        for j in journeys.values():
            store.keep_version(j.key, j.digest, orjson.dumps(j.source).decode(), time.time())
        # a journey takes people in from the moment it was first read (its first version): switching it
        # on never enters everyone in the log's history (a new cursor reads the log from its start)
        self.since = {j: c - GRACE for j, c in store._all("SELECT journey, MIN(created) FROM journey_versions GROUP BY journey")}
        store.commit()
        self.stats: Counter[str] = Counter()
        self._out: list[tuple] = []
        self._told: list[tuple] = []

    def program(self, key: str, version: str) -> Journey | None:
        """The version a run started on (kept in the store), compiled once."""
        if (key, version) not in self.programs:
            kept = self.store._all("SELECT definition FROM journey_versions WHERE journey = ? AND version = ?", (key, version))
            self.programs[(key, version)] = version_of(key, orjson.loads(kept[0][0])) if kept else None
        return self.programs[(key, version)]

    # --- events -------------------------------------------------------------------------------------
    def step(self, now: float | None = None) -> int:
        """Apply one batch of events and commit it with the cursor; the number of events read."""
        feed, store = self.feed, self.store
        stored = store._all("SELECT cursor, events FROM outbox_cursor WHERE name = ?", (self.name,))
        store.commit()
        if stored and orjson.loads(stored[0][0]) != feed.reader.cursor:
            feed.reader.cursor, feed.count = orjson.loads(stored[0][0]), stored[0][1]
        cursor, count = feed.reader.cursor, feed.count
        try:
            records = self.read()
            if not records and feed.reader.cursor == cursor:
                return 0
            now = time.time() if now is None else now
            store.begin()
            ordered = sorted(enumerate(records), key=lambda p: (epoch(p[1][0].event.get("timestamp")) or 0.0, p[0]))
            for _, (record, where) in ordered:
                if isinstance(record.event, dict):
                    self.apply(record.event, where, now)
            feed.count += len(records)
            store.add(self._out, self.name, feed.reader.cursor, feed.count, now)
            store.announce(self._told)
            store.commit()
        except BaseException:
            store.rollback()
            feed.reader.cursor, feed.count = cursor, count
            raise
        finally:
            self._out, self._told = [], []
        return len(records)

    def read(self) -> list[tuple]:
        """The next batch, ``(record, where)``, up to the first event received less than ``HOLD``
        seconds ago (it and those after it are read again at the next pass): events of a person
        received within ``HOLD`` s of each other are applied in the order of their timestamps."""
        feed = self.feed
        if feed.loop is not None or self.hold <= 0:  # the NATS stream: its batches as they come
            return feed.read()
        reader, wall = feed.reader, time.time()
        records, before, held = [], reader.cursor, None
        lines = reader.read()
        try:
            for record in lines:
                received = epoch(record.event.get("receivedAt")) if isinstance(record.event, dict) else None
                if received is not None and wall - self.hold < received <= wall + self.hold:
                    held = before  # not yet: read again from here
                    break
                records.append((record, f"{record.segment}@{reader.offsets.get(record.segment)}"))
                if len(records) >= feed.batch:
                    break
                before = reader.cursor
        finally:
            lines.close()
        if held is not None:
            reader.cursor = held
        return records

    def apply(self, event: dict, where: str, now: float) -> None:
        idents = [orjson.dumps(list(i)).decode() for i in self.rules.identifiers(event)]
        if not idents:
            return
        for row in self.store.runs_of(idents):
            run = self._run(row)
            journey = self.program(run["journey"], run["version"])
            if journey is None:
                continue
            instance = instance_of(journey, event)
            same = journey.instance_key is None or instance is None or instance == run["instance"]
            if journey.exit_when is not None and same and holds(journey.exit_when, Subject(event=event)):
                self._end(run, "converted", now)
                self.store.save_run(run)
                continue
            node = journey.nodes[run["pc"]] if run["pc"] is not None else None
            if node is None or node.kind != "wait_for":
                continue
            if matches(node.match, event, journey, run["instance"]):
                run["pc"], run["next_at"] = node.next, None
                self.stats["moved"] += 1
                self.advance(run, journey, now)
                self.store.save_run(run)
            elif node.reset is not None and any(matches(m, event, journey, run["instance"]) for m in node.reset):
                run["next_at"], run["updated"] = now + node.seconds, now
                self.stats["reset"] += 1
                self.store.save_run(run)
        person = idents[0]
        for journey in self.journeys.values():
            if not matches(journey.entry, event, journey):
                continue
            received = epoch(event.get("receivedAt"))
            if received is not None and received < self.since.get(journey.key, 0.0):
                self.stats["before_the_journey"] += 1
                continue
            instance = instance_of(journey, event)
            if instance is None:
                self.stats["no_instance"] += 1
                continue
            rid = run_id(journey.key, event, where)
            if self.store.exists(rid):
                continue  # this very event entered it already (a duplicate, a replay)
            latest = self.store.latest(journey.key, person, instance)
            if latest is not None:
                entered_at, state = latest
                if state == "active" or journey.reentry == "once":
                    continue
                if journey.reentry == "after" and entered_at + journey.reentry_after > now:
                    continue
            run = {"id": rid, "journey": journey.key, "version": journey.digest, "person": person, "instance": instance,
                   "state": "active", "pc": journey.start, "next_at": None, "entered_at": now, "updated": now,
                   "outcome": None, "entry": event}  # fmt: skip
            if not self.store.insert_run({**run, "entry": orjson.dumps(event).decode()}, idents):
                continue
            self.stats["entered"] += 1
            self.advance(run, journey, now)
            self.store.save_run(run)

    # --- timers -------------------------------------------------------------------------------------
    def fire(self, now: float | None = None, limit: int = FIRE) -> int:
        """Move on the runs whose timer fell due; how many."""
        now = time.time() if now is None else now
        store = self.store
        store.begin()
        try:
            rows = store.due(now, limit)
            for row in rows:
                run = self._run(row)
                journey = self.program(run["journey"], run["version"])
                node = journey.nodes[run["pc"]] if journey is not None and run["pc"] is not None else None
                if node is None:
                    self._end(run, "completed", now)
                else:
                    run["pc"] = node.next if node.kind == "wait" else node.alt
                    run["next_at"] = None
                    self.advance(run, journey, now)
                store.save_run(run)
            self.stats["fired"] += len(rows)
            self._put(now)
            store.announce(self._told)
            store.commit()
        except BaseException:
            store.rollback()
            raise
        finally:
            self._out, self._told = [], []
        return len(rows)

    def _put(self, now: float) -> None:
        self.store._many("INSERT INTO outbox (id, destination, state, created, next_at, payload, who, updated) "
                         "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                         [(i, d, now, now, p, w, now) for i, d, p, w in self._out])  # fmt: skip

    # --- the steps ----------------------------------------------------------------------------------
    def advance(self, run: dict, journey: Journey, now: float) -> None:
        """Execute the run's steps from where it stands until it waits or ends."""
        run["updated"] = now
        for _ in range(MAX_MOVES):
            if run["state"] != "active":
                return
            if run["pc"] is None:
                self._end(run, "completed", now)
                return
            node = journey.nodes[run["pc"]]
            kind = node.kind
            if kind == "wait":
                if node.until is not None:
                    at = epoch(lookup(run["entry"], node.until))
                    due = None if at is None else at + node.offset
                    if due is None:
                        self.stats["no_time"] += 1
                else:
                    due = now + node.seconds
                if due is not None and due > now:
                    run["next_at"] = due
                    return
                run["pc"] = node.next
            elif kind == "wait_for":
                run["next_at"] = now + node.seconds
                return
            elif kind == "if":
                run["pc"] = node.next if holds(node.condition, Subject(event=run["entry"])) else node.alt
            elif kind == "send":
                i, lane, payload = CHANNELS[node.channel].delivery(run, node, now)
                self._out.append((i, lane, payload, run["person"]))
                self.stats["sent"] += 1
                run["pc"] = node.next
            elif kind == "track":
                self._told.append(self._track(run, node, now))
                run["pc"] = node.next
            elif kind == "exit":
                self._end(run, "converted" if node.reason == "converted" else "exited", now)
                return
            elif kind == "goto":
                run["pc"] = node.next
        log.error("a journey's run took too many steps at once: ended", extra={"journey": journey.key, "run": run["id"]})
        self._end(run, "exited", now)

    def _track(self, run: dict, node, now: float) -> tuple:
        entry = run["entry"]
        mid = delivery_id(run["id"], run["pc"], "track").replace("msg_", "itl-jrn-", 1)
        message = {"type": "track", "event": node.event, "messageId": mid, "timestamp": iso(now),
                   "properties": {**node.properties, "journey_key": run["journey"], "journey_run": run["id"]}}  # fmt: skip
        for k in ("userId", "anonymousId"):
            if entry.get(k):
                message[k] = entry[k]
        return (mid, time.time_ns(), run["person"], orjson.dumps(message).decode())

    def _end(self, run: dict, outcome: str, now: float) -> None:
        run.update(state="ended", next_at=None, outcome=outcome, updated=now)
        self.stats[outcome] += 1

    @staticmethod
    def _run(row: tuple) -> dict:
        run = dict(zip(COLUMNS, row))
        run["entry"] = orjson.loads(run["entry"])
        return run

    def close(self) -> None:
        self.feed.close()
