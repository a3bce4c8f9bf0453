"""A definition added or changed: its new tallies counted over the history already folded, in the
background, and the new definitions in force only once that is complete.

The profile database keeps the definitions in force (their files' text, ``engage_state``
``in_force``), so a restart, or a bad file on reload, keeps them; builders sharing the database take
up what another put there. When the folder holds other valid definitions::

    no new tally (a renamed audience, a changed threshold) → in force at once, everyone re-evaluated
    new tallies → ``pending``: the live path counts them on new events from now on, while each
                   builder's ``Backfill.step`` reads its own log from the start a chunk at a time
                   (between its batches; its position in ``engage_state`` ``backfill:<checkpoint>``,
                   shared by builders that share a log) and counts them on every event the builder
                   has folded (the events index says which copy of an event counted, under which
                   node); when every log of the database is counted the pending definitions are in
                   force and everyone is re-evaluated (``engage_due``)

Re-evaluation goes through ``Live.tick``, a chunk of people per transaction: the members of an
audience whose definition changed move from the old answer to the new one person by person, with
an ``Audience Entered/Exited`` for each change; an audience removed from the folder is dropped with
its rows and no events.
"""

from __future__ import annotations

import logging

import orjson

from collector.engage.audiences.evaluate import epoch
from collector.engage.conditions import Tally
from collector.engage.definitions import DefinitionError, Definitions, parse_files
from collector.profiles.rules import event_key, key_time
from collector.profiles.sql import dumps

log = logging.getLogger("intilery.audiences")

CHUNK = 20_000  # log lines read per backfill step


def saved(store, name: str):
    rows = store._all("SELECT value FROM engage_state WHERE name = ?", (name,))
    return orjson.loads(rows[0][0]) if rows else None


def save(store, name: str, value) -> None:
    if value is None:
        store._run("DELETE FROM engage_state WHERE name = ?", (name,))
    else:
        store._run("INSERT INTO engage_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                   "SET value = excluded.value", (name, dumps(value)))  # fmt: skip


def digest(texts: dict) -> str:
    """Which definitions a backfill is for."""
    import hashlib

    return hashlib.blake2b(orjson.dumps(texts, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()


def parse_saved(texts: dict | None) -> Definitions:
    if not texts:
        return Definitions()
    try:
        return parse_files(texts)
    except DefinitionError as exc:  # e.g. a ${NAME} no longer set: say so, keep none
        log.error("the definitions in force no longer read", extra={"problems": exc.problems})
        return Definitions()


class Backfill:
    """Counts ``tallies`` (by id) over the log's events already folded; ``reader`` reads the log as
    the builder does (``Builder.read``: ``(record, position)`` batches, its ``reader.cursor``)."""

    def __init__(self, store, reader, tallies: dict[str, Tally], digest: str = "") -> None:
        self.store, self.reader, self.tallies, self.read, self.digest = store, reader, tallies, 0, digest
        self.done = False
        by_name: dict[str, list[Tally]] = {}
        for tally in tallies.values():
            by_name.setdefault(tally.event, []).append(tally)
        self.by_name = by_name

    def step(self) -> tuple[bool, int]:
        """Read one chunk and write its hits, in the caller's transaction: (done, lines read)."""
        records = self.reader.read()
        matching = [r.event for r, _ in records if r.event.get("event") in self.by_name]
        folded: dict[tuple[str, str], tuple[str, str]] = {}
        ids = sorted({e["messageId"] for e in matching if isinstance(e.get("messageId"), str)})
        for rows in self.store._chunked("SELECT source, message_id, node_id, key FROM events WHERE message_id IN ({})", ids):
            folded.update(((source, message_id), (node, key)) for source, message_id, node, key in rows)
        hits = []
        for event in matching:
            source = event.get("source")
            counted = folded.get((source if isinstance(source, str) else "", event.get("messageId")))
            if counted is None or counted[1] != event_key(event):
                continue  # not folded yet (the live path counts it), or not the copy that counted
            node, key = counted
            for tally in self.by_name[event["event"]]:
                if tally.matches(event):
                    value = tally.value(event)
                    hits.append((node, tally.id, key, epoch(key_time(key)), None if value is None else dumps(value)))
        self.store._many("INSERT INTO engage_hits (node_id, tally, key, time, value) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (node_id, tally, key) DO NOTHING", hits)  # fmt: skip
        return not records, len(records)
