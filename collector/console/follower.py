"""The live stream: one follower of the log per process, fanned out to every open viewer.

``Follower`` reads the store through the log's own readers (``log.reader.Reader`` over
``events/`` and ``rejected/`` for the file store, ``log.stream_reader.StreamReader`` over the
stream for NATS), so a viewer sees what every worker and every collector stored, not only
what this process answered. It starts with the first viewer, reads the last hour for the
dashboard, then follows, every ``POLL`` seconds.

Each record becomes an ``Item`` with its Server-Sent Event encoded once; the follower keeps
the last ``BUFFER`` items (a new viewer's backlog, and what a reconnect with
``Last-Event-ID`` resumes from) and puts each one in every ``Viewer`` whose filter matches,
without waiting: a viewer's queue holds ``QUEUE`` items, and what does not fit is dropped
and counted (the page shows the count). Ingest never waits for a viewer, and while ingest
requests are in flight the follower reads at most ``SHARE`` of the time: under a load that
takes the whole CPU the console falls behind (``behind``), and catches up from the log
when the load eases; a viewer's stream is written at most every ``routes.FLUSH`` seconds.

An erasure reaches it (``forget.py``): the person's lines leave the buffer and every viewer's
queue, their ids the dashboard's visitors, and none of their lines is published while the
erasure runs (nor, after, one received before it ended); the follower closes the files it
holds open whenever an erasure's record changes, so it never reads on from a file the rewrite
replaced.

An event's id is its place in the log (``events/<segment>@<offset>``, or ``events#<seq>``
on NATS), the same in every process, so a reconnect served by another worker resumes too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from pathlib import Path
from typing import Iterator

from collector.console.dashboard import Dashboard
from collector.console.filters import ACCEPTED, REJECTED, Filter, Item
from collector.console.forget import Forgetting, owns
from collector.log.layout import EVENTS, REJECTED as REJECTED_LOG, day_partition, hour_partition
from collector.privacy.subjects import salt_of
from collector.privacy.suppression import REGULATIONS
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.console")

POLL = 0.2  # seconds between reads of the log when nothing new came
BATCH = 100  # records read from one log before the loop gets a turn
SHARE = 0.01  # of the time the follower may read while requests are in flight (it falls behind, never ingest)
BUFFER = 2000  # the last items kept: backlog and resume
BACKLOG = 100  # items a new viewer is shown first
QUEUE = 1000  # items a viewer may have waiting; more are dropped and counted
HISTORY_SECONDS = 3600

STATUS = {EVENTS: ACCEPTED, REJECTED_LOG: REJECTED}


class Viewer:
    """One open stream: its filter, its bounded queue, what was dropped for it."""

    def __init__(self, want: Filter, size: int = QUEUE) -> None:
        self.filter, self.size = want, size
        self.everything = want.everything
        self.items: deque[Item] = deque()
        self.dropped = 0
        self.closed = False
        self.ready = asyncio.Event()
        self.transport = None  # its connection, closed when the collector stops (a stream not read never ends by itself)

    def offer(self, item: Item) -> None:
        """Queue ``item`` when the filter wants it; a full queue drops it and counts it. Never waits."""
        if self.everything or self.filter.matches(item):
            if len(self.items) >= self.size:
                self.dropped += 1
                return
            self.items.append(item)
            self.ready.set()

    async def take(self, timeout: float, most: int = 200) -> list[Item]:
        """What is queued (up to ``most``), waiting up to ``timeout`` s for something; [] when none came."""
        if not self.items and not self.closed:
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return [self.items.popleft() for _ in range(min(most, len(self.items)))]

    def close(self) -> None:
        self.closed = True
        self.ready.set()
        if self.transport is not None:
            self.transport.close()


class Follower:
    """The one reader of the log behind every viewer of this process."""

    def __init__(self, config, clock=time.time, busy=lambda: False, salt=None) -> None:
        self.config = config
        self.clock = clock
        self.busy = busy  # whether ingest requests are in flight (the app's body budget holds bytes)
        self.items: deque[Item] = deque(maxlen=BUFFER)
        self.viewers: set[Viewer] = set()
        self.dashboard = Dashboard(clock)
        self.caught_up = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.read_count = 0  # records read
        self.worked = 0.0  # seconds spent reading and fanning out
        self.behind = False  # more to read than the follower's share allowed: it is catching up
        self.rules = Rules.from_config(config)
        regulations = Path(config.data_dir) / REGULATIONS
        self.forgetting = Forgetting(regulations, self.rules, salt or (lambda: salt_of(regulations)), clock)
        self.forgetting.look(force=True)  # before anything is read: an erasure running now is known
        self._version = self.forgetting.version  # of the erasures when the files held open were opened

    def start(self) -> None:
        """Start following (once; again only when the last follower stopped on an error)."""
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="console-follower")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
            self.task = None

    # --- viewers ------------------------------------------------------------------------------
    def join(self, want: Filter, last_id: str | None) -> tuple[Viewer, list[Item], bool]:
        """A new viewer, the items it is shown first, and whether ``last_id`` was found to resume from."""
        viewer = Viewer(want)
        self.viewers.add(viewer)
        buffered = list(self.items)
        found = False
        if last_id:
            for index, item in enumerate(buffered):
                if item.key == last_id:
                    found, buffered = True, buffered[index + 1 :]
                    break
        first = [item for item in buffered if want.matches(item)]
        if not found:
            first = first[-BACKLOG:]
        return viewer, first, found

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    # --- erasures -----------------------------------------------------------------------------
    def look(self, force: bool = False) -> None:
        """Forget the people of erasures new to this console (one ``stat`` when nothing changed)."""
        for person in self.forgetting.look(force):
            self.forget(person)

    def forget(self, person) -> None:
        """Drop ``person``'s lines from the buffer and every viewer's queue, their ids from the dashboard."""
        kept = [item for item in self.items if not owns(person, item)]
        gone = len(self.items) - len(kept)
        if gone:
            self.items = deque(kept, maxlen=BUFFER)
        for viewer in self.viewers:
            queued = [item for item in viewer.items if not owns(person, item)]
            gone += len(viewer.items) - len(queued)
            viewer.items = deque(queued)
        gone += self.dashboard.forget(person, self.rules)
        log.info("the console forgot an erased person", extra={"removed": gone})

    def publish(self, item: Item, live: bool = True) -> None:
        if self.forgetting.people:
            erasure = self.forgetting.owner(item)
            if erasure is not None and erasure.until is None:  # it may have ended since the last look
                self.look()
                erasure = self.forgetting.owner(item)
            if erasure is not None:
                return
        self.items.append(item)
        self.dashboard.add(item)
        if live:
            for viewer in self.viewers:
                viewer.offer(item)

    # --- reading ------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            if self.config.store == "nats":
                await self._follow_stream()
            else:
                await self._follow_files()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: logged; the console says the stream stopped
            log.exception("the console's follower stopped")
            raise

    async def _follow_files(self) -> None:
        from collector.log.reader import Reader

        data_dir = Path(self.config.data_dir)
        since = self.clock() - HISTORY_SECONDS
        readers = {
            EVENTS: Reader(data_dir / EVENTS, since=hour_partition(since)),
            REJECTED_LOG: Reader(data_dir / REJECTED_LOG, since=day_partition(since), log_name=REJECTED_LOG),
        }
        live = False
        while True:
            for name, reader in readers.items():
                records = self._file_records(reader, name)  # one pass, read in slices: a chunk is split once
                while True:
                    started = time.perf_counter()
                    count = 0
                    # read off the event loop (a slice can decompress a chunk of a closed segment)
                    for record, key in await asyncio.to_thread(list, itertools.islice(records, BATCH)):
                        self.publish(Item(key, STATUS[name], record.event, record.line), live)
                        count += 1
                    self.read_count += count
                    if count >= BATCH:
                        self.behind = True
                    await self._yield(time.perf_counter() - started)
                    self.look()
                    if self._version != self.forgetting.version:  # an erasure moved on: reopen what is held open
                        self._version = self.forgetting.version
                        records.close()
                        for held in readers.values():
                            held.close()
                        break
                    if count < BATCH:
                        break
            self.behind = False
            if not live:
                live = True
                self.caught_up.set()
            await asyncio.sleep(POLL)

    async def _yield(self, worked: float) -> None:
        """Give the loop a turn; while ingest requests are in flight, stay away long enough that the
        follower takes at most ``SHARE`` of the time (ingest first: the log keeps what is not read yet)."""
        self.worked += worked
        await asyncio.sleep(worked * (1 / SHARE - 1) if self.busy() else 0)

    @staticmethod
    def _file_records(reader, name: str) -> Iterator:
        for record in reader.read():
            yield record, f"{name}/{record.segment}@{reader.offsets[record.segment]}"

    async def _follow_stream(self) -> None:
        from collector.log.stream_reader import StreamReader

        readers = {name: StreamReader(self.config, log_name=name) for name in (EVENTS, REJECTED_LOG)}
        try:
            while True:
                try:
                    for reader in readers.values():
                        if "seq" not in reader.offsets:
                            await reader.skip_to_end()
                    break
                except Exception as exc:  # the stream not reachable yet: the collector answers 503 meanwhile
                    log.warning("the console cannot reach the stream yet: %s", exc)
                    await asyncio.sleep(1)
            self.caught_up.set()
            while True:
                self.look()
                got = 0
                for name, reader in readers.items():
                    try:
                        started = time.perf_counter()
                        async for record in reader.read():
                            key = f"{name}#{record.segment.rpartition('#')[2]}"
                            self.publish(Item(key, STATUS[name], record.event, record.line))
                            got += 1
                            if got % BATCH == 0:
                                await self._yield(time.perf_counter() - started)
                                started = time.perf_counter()
                    except Exception as exc:
                        log.warning("the console could not read the stream: %s", exc)
                        await reader.close()
                self.read_count += got
                if not got:
                    await asyncio.sleep(POLL)
        finally:
            for reader in readers.values():
                await reader.close()
