"""The producer of webhook deliveries: one more consumer of the log, through its one ``Reader``
(as the profile builder: ``profiles/builder.py``), committing the deliveries a batch of events
created together with the cursor after them::

    filler = Filler(outbox, data_dir, destinations)
    filler.step()     # one batch of events: deliveries added, cursor saved, one transaction; 0 when nothing is new

For each event and destination: the ``filter`` (a condition on the event), then the consent rule
(Segment's: every one of ``consent_categories`` is ``true`` in ``context.consent.categoryPreferences``;
an event without consent information goes to no destination that lists categories), then the
``mapping``. What passes is a delivery whose id is stable (``delivery_id``: the destination and the
event's source and messageId), inserted only when new: a kill at any point, before or after the
commit, loses none and creates none twice. What does not pass is counted, in the same transaction
(``outbox_stats``: ``outcome:filtered``, ``outcome:no_consent``; /metrics, the API and the CLI show them).

With the NATS store it follows the JetStream stream (``StreamReader``), its cursor kept the same way.
A destination disabled (by a 410, or ``enabled: false``) is still filled: it keeps what it would have
received, for replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from contextlib import aclosing
from collections import Counter
from pathlib import Path

import orjson

from collector.engage.conditions import Subject, holds
from collector.engage.destinations import mapping as mappings
from collector.engage.destinations.definitions import Destination
from collector.log.layout import EVENTS
from collector.log.reader import Reader
from collector.profiles.person import home
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.destinations")

BATCH = 1000  # events per transaction
CURSOR = "destinations"  # the cursor's name in outbox_cursor (one per log when the database is shared)


def delivery_id(destination: str, event: dict, where: str = "") -> str:
    """The delivery's id, its ``webhook-id``: the same for the same event and destination, always."""
    message_id = event.get("messageId")
    key = f"{event.get('source') or ''}\0{message_id}" if isinstance(message_id, str) else f"\1{where}"
    return "msg_" + hashlib.blake2b(f"{destination}\0{key}".encode(), digest_size=16).hexdigest()


def verdict(dest: Destination, event: dict) -> str | None:
    """Why ``event`` does not go to ``dest`` (``filtered``, ``no_consent``), or None: it goes."""
    if dest.filter is not None and not holds(dest.filter, Subject(event=event)):
        return "filtered"
    if dest.consent_categories:
        context = event.get("context")
        consent = context.get("consent") if isinstance(context, dict) else None
        prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
        if not isinstance(prefs, dict) or not all(prefs.get(c) is True for c in dest.consent_categories):
            return "no_consent"
    return None


def body(dest: Destination, event: dict) -> dict:
    """The webhook's body for one event (Standard Webhooks: type, timestamp, data)."""
    data = event if dest.mapping is None else mappings.apply(dest.mapping, event)
    return {"type": str(event.get("type") or "event"), "timestamp": event.get("timestamp") or event.get("receivedAt"),
            "data": data}  # fmt: skip


def who(event: dict, rules: Rules) -> str:
    """Whose event it is (``profiles.person.home``: its first identifier by priority, as JSON
    ``[type, value]``; "" for none), so that an erasure finds the person's deliveries."""
    ident = home(event, rules)
    return orjson.dumps(list(ident)).decode() if ident else ""


class Filler:
    def __init__(self, outbox, data_dir: Path, destinations: dict[str, Destination], *, batch: int = BATCH,
                 name: str = CURSOR, rules: Rules = Rules(), stream=None) -> None:  # fmt: skip
        """``stream``: a Config of the NATS store: the JetStream stream through its ``StreamReader``
        (as the profile builder reads it), on an event loop of the filler's own."""
        self.outbox, self.destinations, self.batch, self.name, self.rules = outbox, destinations, batch, name, rules
        cursor, self.count = outbox.cursor(name)
        if stream is None:
            self.reader, self.loop = Reader(Path(data_dir) / EVENTS, cursor=cursor), None
        else:
            from collector.log.stream_reader import StreamReader

            self.reader, self.loop = StreamReader(stream, cursor=cursor), asyncio.new_event_loop()
        self.stats: Counter[tuple[str, str]] = Counter()  # (destination, outcome): queued, filtered, no_consent

    def read(self) -> list[tuple]:
        """The next batch: ``(record, where)``, where names its place in the log (for an event without a messageId)."""
        if self.loop is not None:
            return self.loop.run_until_complete(self._read_stream())
        records = []
        for record in self.reader.read():
            records.append((record, f"{record.segment}@{self.reader.offsets.get(record.segment)}"))
            if len(records) >= self.batch:
                break
        return records

    async def _read_stream(self) -> list[tuple]:
        records = []
        async with aclosing(self.reader.read()) as stream:
            async for record in stream:
                records.append((record, record.segment))
                if len(records) >= self.batch:
                    break
        return records

    def step(self, now: float | None = None) -> int:
        """Read one batch and commit its deliveries with the cursor after it; the number of events read.

        Nothing new costs no write transaction (a poll takes no lock on the database): the saved
        cursor is read, the log read, and only a batch begins one. A filler sharing the cursor (the
        NATS stream, read from several hosts) that finds it moved by another takes it up; two reading
        the same events at once add the same ids, which are inserted once."""
        stored = self.outbox._all("SELECT cursor, events FROM outbox_cursor WHERE name = ?", (self.name,))
        self.outbox.commit()  # a read holds no transaction open (PostgreSQL)
        if stored and orjson.loads(stored[0][0]) != self.reader.cursor:
            self.reader.cursor, self.count = orjson.loads(stored[0][0]), stored[0][1]
        cursor, count = self.reader.cursor, self.count
        try:
            records = self.read()
            if not records and self.reader.cursor == cursor:
                return 0
            rows, outcomes = [], Counter()
            for record, where in records:
                event = record.event
                for dest in self.destinations.values():
                    reason = verdict(dest, event)
                    if reason is not None:
                        outcomes[(dest.name, reason)] += 1
                        continue
                    rows.append((delivery_id(dest.name, event, where), dest.name,
                                 orjson.dumps(body(dest, event)).decode(), who(event, self.rules)))  # fmt: skip
                    outcomes[(dest.name, "queued")] += 1
            self.count += len(records)
            self.outbox.begin()
            self.outbox.add(rows, self.name, self.reader.cursor, self.count, now)
            self.outbox.bump({(d, f"outcome:{o}"): n for (d, o), n in outcomes.items() if o != "queued"})
            self.outbox.commit()
        except BaseException:
            self.outbox.rollback()
            self.reader.cursor, self.count = cursor, count
            raise
        self.stats.update(outcomes)
        return len(records)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.reader.close())
            self.loop.close()
        else:
            self.reader.close()


def sample(dest: Destination, event: dict) -> tuple[str | None, dict | None]:
    """What ``intilery destinations try`` shows: the reason the event would not be sent, or its body."""
    reason = verdict(dest, event)
    return (reason, None) if reason else (None, body(dest, event))


