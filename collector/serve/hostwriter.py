"""The host's one writer for ``--workers N``: one duplicate filter and one group commit for all workers.

With several workers, none of them writes the file store itself: the supervisor binds a Unix
socket before it forks anything and runs ``run_writer`` in a process of its own, which owns
the store, the duplicate filter (rebuilt from the store at every start) and the ``Committer``.
Each worker's app commits through a ``WriterClient``: the serialised lines of a request go to
the writer, which drops the duplicates of every worker's requests, makes a retry of an id that
another worker is writing right now wait for that write, appends, fsyncs, and answers::

    worker 0 ─ WriterClient ─┐  Unix socket (abstract address,   ┌─ Committer ─ Dedup
    worker 1 ─ WriterClient ─┼─ peers of this user only) ───────▶ │  host writer
    worker N ─ WriterClient ─┘                                    └─ FileStore instance host_0

Frames, both ways, are a 4-byte big-endian length and then the frame. A worker sends a JSON
header line (``n`` its request number, ``op``: ``write`` with ``source``, ``at``, ``ids`` and
``sizes`` of the event lines, or ``ready``), then the event lines, then the dead letters; the
writer answers ``{"n", "duplicates"}``, ``{"n", "error": [code, message, retry_after]}`` or
``{"n", "ready", "reason"}``.

What a death costs: a worker killed mid-request closes its connection; the writer still
finishes every write it received whole (never acknowledged, so the client resends, and the
resend is a duplicate), and drops a frame cut short. The writer killed: every waiting request
is answered 503 (the client resends), the supervisor starts a new writer on the same socket
(the workers' new connections wait in its backlog), and that one recovers the store's torn
tail and rebuilds the filter from the store before it answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

import orjson

from collector.ingest.commit import Committer
from collector.config import Config
from collector.dedup import Dedup
from collector.errors import Unavailable
from collector.log import rotation
from collector.log.layout import EVENTS
from collector.log.stores import make_store
from collector.metrics import Metrics
from collector.serve.runtime import new_loop, until_signalled

log = logging.getLogger("intilery.writer")

_LENGTH = struct.Struct("!I")
CONNECT_TIMEOUT = 5.0  # connecting to a listening Unix socket is immediate; this bounds a full backlog


def listen(address: str) -> socket.socket:
    """The host writer's socket, bound and listening (the supervisor holds it across writer restarts)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(128)
    return sock


def _frames(buffer: bytearray) -> list[bytes]:
    """Take the whole frames off the front of ``buffer``."""
    frames, at = [], 0
    while len(buffer) - at >= 4:
        (size,) = _LENGTH.unpack_from(buffer, at)
        if len(buffer) - at - 4 < size:
            break
        frames.append(bytes(buffer[at + 4 : at + 4 + size]))
        at += 4 + size
    del buffer[:at]
    return frames


def _send(transport: asyncio.Transport, *parts: bytes) -> None:
    transport.writelines([_LENGTH.pack(sum(map(len, parts))), *parts])


# --- the writer process -----------------------------------------------------------------


def run_writer(config: Config, listener: socket.socket) -> None:
    """The body of the host writer process: serve the workers on ``listener`` until SIGTERM."""
    loop = new_loop()
    try:
        loop.run_until_complete(_serve(config, listener))
    finally:
        loop.close()


async def _serve(config: Config, listener: socket.socket) -> None:
    metrics = Metrics()
    store = make_store(config, metrics)
    dedup = Dedup(config.dedup_window_hours * 3600, config.dedup_max_entries)
    committer = Committer(store, dedup)
    await store.start()
    seeded = await store.recent_ids(dedup.window, dedup.max_entries)
    if seeded:
        dedup.add(seeded)
        log.info("duplicate filter rebuilt", extra={"ids": len(seeded)})
    tasks: set[asyncio.Task] = set()
    listener.setblocking(False)
    server = await asyncio.get_running_loop().create_unix_server(lambda: _Worker(committer, store, tasks), sock=listener)
    metrics.start()
    log.info("host writer ready", extra={"instance": store.instance})
    stop = asyncio.Event()  # an erasure asks every process writing segments to close its open ones
    rotations = asyncio.create_task(rotation.follow(store, Path(config.data_dir), store.instance, stop))
    try:
        await until_signalled()  # the supervisor stops it after every worker has stopped
    finally:
        stop.set()
        await rotations
        metrics.stop()
        server.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()


class _Worker(asyncio.Protocol):
    """One worker's connection, on the writer's side."""

    def __init__(self, committer: Committer, store: Any, tasks: set[asyncio.Task]) -> None:
        self.committer, self.store, self.tasks = committer, store, tasks
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        uid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():  # an abstract address has no file permissions: only this user's processes
            log.warning("refused a connection to the host writer from another user", extra={"uid": uid})
            transport.close()
            return
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # its writes in progress still finish; the answers have no one to go to
        self.buffer.clear()  # a frame cut short was never acknowledged

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.buffer += data
        for frame in _frames(self.buffer):
            self._handle(frame)

    def _handle(self, frame: bytes) -> None:
        end = frame.index(b"\n")
        head = orjson.loads(frame[:end])
        if head["op"] == "ready":
            task = asyncio.ensure_future(self.store.ready())
        else:
            start = end + 1
            bounds = list(accumulate(head["sizes"], initial=start))
            lines = [frame[a:b] for a, b in pairwise(bounds)]
            dead = frame[bounds[-1] :]
            task = asyncio.ensure_future(
                self.committer.write(head["source"], head["ids"], lines, head["at"], [dead] if dead else [])
            )
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._answer(head["n"], done))

    def _answer(self, number: int, done: asyncio.Future) -> None:
        self.tasks.discard(done)
        exc = done.exception()
        if exc is None:
            result = done.result()
            answer = {"n": number, "ready": result[0], "reason": result[1]} if isinstance(result, tuple) else {
                "n": number, "duplicates": result}  # fmt: skip
        elif isinstance(exc, Unavailable):
            answer = {"n": number, "error": [exc.code, exc.message, exc.retry_after]}
        else:
            log.error("the host writer failed a write; answered 503", exc_info=exc)
            answer = {"n": number, "error": ["store_unavailable", "the event store hit an internal error; retry", 5]}
        if self.transport is not None and not self.transport.is_closing():
            _send(self.transport, orjson.dumps(answer))


# --- the worker's side ------------------------------------------------------------------


class WriterClient(Committer):
    """A worker's committer and store: every commit is written by the host writer.

    ``commit`` and ``reject`` are the ``Committer``'s; ``write`` sends the lines and waits for
    the writer's answer. As the app's store it starts, closes and answers ``ready`` (by
    asking the writer); it holds no duplicate filter, so it seeds none."""

    def __init__(self, config: Config, address: str, max_pending_bytes: int) -> None:
        super().__init__(self, Dedup(1, 1))
        self.config, self.address, self.max_pending_bytes = config, address, max_pending_bytes
        self._connection: _Answers | None = None
        self._number = 0
        self._connecting: asyncio.Lock | None = None

    @property
    def where(self) -> str:
        return f"{self.config.data_dir}/{EVENTS}, written by the host writer for every worker"

    async def start(self) -> None:
        self._connecting = asyncio.Lock()
        await self._connect()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.transport.close()
            self._connection = None

    async def recent_ids(self, window: float, limit: int) -> list:
        return []  # the writer holds the host's filter

    async def ready(self) -> tuple[bool, str | None]:
        try:
            answer = await self._ask({"op": "ready"})
        except Unavailable as exc:
            return False, exc.message
        return answer["ready"], answer["reason"]

    async def write(self, source: str, ids: list[str], lines: list[bytes], received_at: float,
                    rejected_lines: list[bytes]) -> int:  # fmt: skip
        head = {"op": "write", "source": source, "at": received_at, "ids": ids, "sizes": list(map(len, lines))}
        return (await self._ask(head, *lines, *rejected_lines))["duplicates"]

    async def _ask(self, head: dict, *parts: bytes) -> dict:
        connection = self._connection
        if connection is None or connection.lost:
            connection = await self._connect()
        if connection.transport.get_write_buffer_size() > self.max_pending_bytes:
            raise Unavailable("store_overloaded", "the store is behind; retry shortly", retry_after=1)
        self._number += 1
        head["n"] = number = self._number
        waiter = connection.waiting[number] = asyncio.get_running_loop().create_future()
        _send(connection.transport, orjson.dumps(head) + b"\n", *parts)
        try:
            answer = await waiter
        finally:
            connection.waiting.pop(number, None)
        if "error" in answer:
            code, message, retry_after = answer["error"]
            raise Unavailable(code, message, retry_after=retry_after)
        return answer

    async def _connect(self) -> _Answers:
        async with self._connecting:
            if self._connection is None or self._connection.lost:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(CONNECT_TIMEOUT)
                    sock.connect(self.address)
                    sock.setblocking(False)
                    _, self._connection = await asyncio.get_running_loop().create_unix_connection(_Answers, sock=sock)
                except OSError as exc:
                    sock.close()
                    log.warning("cannot reach the host writer", extra={"error": str(exc)})
                    raise Unavailable("store_unavailable", "the event store is restarting; retry", retry_after=1) from None
            return self._connection


class _Answers(asyncio.Protocol):
    """One connection to the writer, on the worker's side: the requests waiting for their answer."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiting: dict[int, asyncio.Future] = {}
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for frame in _frames(self.buffer):
            answer = orjson.loads(frame)
            waiter = self.waiting.get(answer["n"])
            if waiter is not None and not waiter.done():
                waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for waiter in self.waiting.values():
            if not waiter.done():
                waiter.set_exception(Unavailable("store_unavailable", "the event store restarted; retry", retry_after=1))
