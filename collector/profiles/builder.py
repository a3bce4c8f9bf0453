"""The builder: one more consumer of the log, keeping the profile database current.

It reads through the log's one ``Reader`` from the cursor saved in the database, a batch at
a time, and commits what a batch changed together with the cursor after it::

    builder = Builder(store, data_dir, rules)
    builder.step()          # one batch (at most ``batch`` events); 0 when nothing is new
    builder.run(keep_going)   # follow the log until keep_going() is false

A kill at any point leaves the database at the end of the last committed batch, cursor
included: the next start reads on from there, so no event is missed or counted twice. A
``messageId`` already in the database is dropped (a duplicate in the log, or a replay).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from contextlib import aclosing
from pathlib import Path
from typing import Callable

import orjson

from collector.log.layout import EVENTS
from collector.log.reader import Reader
from collector.profiles.graph import Graph
from collector.profiles.rules import Rules, absorb, event_key, key_time, link_key, node_id

log = logging.getLogger("intilery.profiles")

BATCH = 5_000  # events per transaction (at most: a batch is what the log holds, up to this); 20,000 was no
# faster (within 5%) and took the builder from 156 to 245 MB (bench/README, profiles)
POLL = 0.2  # seconds between reads of an idle log (a profile shows an event within 2 s of its 200)
CHECKPOINT = "events"  # the checkpoint's name; a shared database names one per log (database.checkpoint_name)


class Builder:
    """Follows ``<data_dir>/events`` through the log's ``Reader``; with ``stream`` (a Config of the
    NATS store) the JetStream stream through its ``StreamReader`` instead, the cursor (the last
    stream sequence read) kept in the profile database in the same way."""

    def __init__(self, store, data_dir: Path, rules: Rules = Rules(), *, batch: int = BATCH,
                 checkpoint: str = CHECKPOINT, stream=None, engage=None) -> None:  # fmt: skip
        self.store, self.rules, self.batch, self.name = store, rules, batch, checkpoint
        self.engage = engage  # engage/audiences/live.Live: audiences and computed traits, in each batch
        cursor, self.count = store.checkpoint(checkpoint)
        if stream is None:
            self.reader = Reader(Path(data_dir) / EVENTS, cursor=cursor)
            self.loop = None
        else:
            from collector.log.stream_reader import StreamReader

            self.reader = StreamReader(stream, cursor=cursor)
            self.loop = asyncio.new_event_loop()
        self.stats = {"events": self.count, "duplicates": 0, "unattributed": 0, "replays": 0}

    def step(self) -> int:
        """Read and apply one batch, commit it with its cursor; the number of records read.

        When the batch fails it is rolled back and the reader put back where it was: the next
        step reads the same events again. A builder sharing the database (PostgreSQL) that
        finds the checkpoint moved by another takes it up first.

        The garbage collector is off during a batch: a batch's objects hold no cycles (refcounts
        free them), and its scans over tens of thousands of live events took half the time."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._step()
        finally:
            if collecting:
                gc.enable()

    def _step(self) -> int:
        self.store.begin()
        try:
            shared = self.store.checkpoint_row(self.name)
            if shared is not None and shared[0] != self.reader.cursor:
                self.reader.cursor, self.count = shared[0], shared[1]
            cursor, count = self.reader.cursor, self.count
            records = self.read()
            if not records:
                if self.reader.cursor != cursor:  # segments read to their end folded: kept small
                    self.store.save_checkpoint(self.name, self.reader.cursor, self.count)
                    self.store.commit()
                else:
                    self.store.rollback()
                return 0
            self.apply(records)
            self.store.save_checkpoint(self.name, self.reader.cursor, self.count)
            self.store.commit()
        except BaseException:
            self.store.rollback()
            if "cursor" in locals():
                self.reader.cursor, self.count = cursor, count
            raise
        return len(records)

    def read(self) -> list:
        """The next batch: ``(record, position)``, the position a byte offset in its segment, or
        for the stream (``record.segment`` its name) the message's sequence."""
        if self.loop is not None:
            return self.loop.run_until_complete(self._read_stream())
        records = []
        for record in self.reader.read():
            end = self.reader.offsets[record.segment]
            records.append((record, end - len(record.line) - 1))
            if len(records) >= self.batch:
                break
        return records

    async def _read_stream(self) -> list:
        records = []
        async with aclosing(self.reader.read()) as stream:
            async for record in stream:
                name, _, sequence = record.segment.rpartition("#")
                records.append((record._replace(segment=name), int(sequence)))
                if len(records) >= self.batch:
                    break
        return records

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.reader.close())
            self.loop.close()
        else:
            self.reader.close()  # the part-read .gz it keeps open between batches

    def apply(self, records: list) -> None:
        graph = Graph(self.rules, self.store)
        self.pending: dict[str, tuple] = {}  # the sets to store: members -> (idents, key, new)
        stats = self.stats
        fresh, everyone, sets = [], set(), set()
        dedups = [_dedup_key(r.event) for r, _ in records]
        known = self.store.seen(dedups)
        identifiers = self.rules.identifiers
        for (record, position), dedup in zip(records, dedups):
            if dedup is None or dedup in known:
                stats["duplicates"] += 1
                continue
            known.add(dedup)
            event = record.event
            idents = identifiers(event)
            if not idents:
                stats["unattributed"] += 1
                continue
            everyone.update(idents)
            group = None
            if len(idents) > 1:
                group = tuple(idents)
                sets.add(group)
            fresh.append((event, dedup, idents, group, record.segment, position))
        graph.load(everyone)  # every profile the batch touches, in a few queries
        self.members = {s: _members(s) for s in sets}  # each set as the links table keys it
        stored = self.store.link_keys(list(self.members.values()))
        links = {s: stored.get(m) for s, m in self.members.items()}  # each set seen -> the earliest key applied
        rows, folded = [], []
        nodes, dirty, ensure = graph.nodes, graph.dirty_nodes, graph.ensure
        count = self.count
        for event, (source, message_id), idents, group, segment, position in fresh:
            key = event_key(event)
            when = key_time(key)
            for ident in idents:  # a row is written again only when something of it moved
                node = nodes.get(ident) or ensure(ident)
                first = node.first_seen
                if not first or when < first:
                    node.first_seen, node.source = when, str(event.get("source") or "")
                    dirty.add(ident)
                if when > node.last_seen:
                    node.last_seen = when
                    dirty.add(ident)
            if group is not None:
                link, ordered = links[group], link_key(event, key)
                if link is None or ordered < link:  # else: a set already applied at an earlier key
                    self.link(graph, links, group, ordered, message_id)
            home = idents[0]  # person.home: the one definition of whose an event is (collector/profiles/person.py)
            home_node = nodes[home]
            absorb(home_node.state, event, key)
            dirty.add(home)
            home_nid = home_node.nid or node_id(home)
            rows.append((source, message_id, home_nid, key, segment, position))
            folded.append((event, key, home_nid))
            count += 1
        self.count = count
        if self.engage is not None:
            self.engage.fold(graph, folded, defer=len(records) >= self.batch)
        self.flush(graph)
        self.store.add_events(rows)
        stats["events"] = count

    def link(self, graph: Graph, links: dict, idents: list, key: str, message_id: str) -> None:
        """Apply a set of identifiers seen together. Only the earliest message of each distinct set
        counts (a later one changes nothing), so a person's thousands of events are a few links."""
        group = tuple(idents)
        known = links[group]
        if known is not None and known <= key:
            return
        links[group] = key
        idents = list(idents)
        members = self.members[group]
        new = known is None or (members in self.pending and self.pending[members][2])
        self.pending[members] = (idents, key, new)
        if known is None and not graph.is_late(idents, key):
            graph.apply_link(idents, key, message_id)
            return
        self.stats["replays"] += 1  # earlier than what is applied: resolve the component again
        self.store.put_links(self.pending)  # the component is read from the stored links
        self.pending = {}
        graph.replay(*self.store.component(idents))  # (identifiers not in the graph are as stored)

    def flush(self, graph: Graph) -> None:
        self.store.put_links(self.pending)
        self.pending = {}
        self.store.write(graph)

    def run(self, keep_going: Callable[[], bool] = lambda: True, interval: float = POLL) -> None:
        """Follow the log until ``keep_going()`` is false."""
        ticked = 0.0
        while keep_going():
            busy = self.step()
            if self.engage is not None and (not busy or time.monotonic() - ticked >= interval * 5):
                ticked = time.monotonic()  # people whose windows passed: at least once a second while busy
                while self.engage.tick() and keep_going():
                    pass
                self.engage.refresh()
            if not busy:
                time.sleep(interval)

    def catch_up(self, keep_going: Callable[[], bool] = lambda: True) -> int:
        """Read until nothing is new (or ``keep_going()`` is false); the number of records read."""
        total = 0
        while keep_going():
            n = self.step()
            if n == 0:
                return total
            total += n
        return total


def _dedup_key(event: dict) -> tuple[str, str] | None:
    """What makes an event a repeat: its source and messageId (as the collector's filter)."""
    message_id = event.get("messageId")
    if message_id.__class__ is not str:
        return None
    source = event.get("source")
    return (source if source.__class__ is str else "", message_id)


def _members(idents) -> str:
    """A set of identifiers as the links table keys it (JSON)."""
    return orjson.dumps(idents).decode()
