"""The sender: each destination a ``Lane`` of its own (its own HTTP client, connections, workers
and circuit breaker), so one that hangs or fails never delays another::

    outbox ── claim (due, up to batch_size) ──▶ lane worker ── attempt ──▶ receiver
           ◀── record (delivered | failed, next_at | dead) ──┘

Retries are explained: each attempt's outcome is written to the delivery (status, the answer's
first bytes, the error), and a retried one is due after the destination's ``retry_schedule``
wait for that attempt (±10% jitter; an answer's ``Retry-After`` instead when it has one); when the
schedule is used up it is dead. A sender killed mid-request leaves its deliveries in flight until
their lease ends, then sends them again, with the same webhook-id: at least once.

The circuit breaker: after ``BREAK_AFTER`` failed attempts in a row a lane stops sending for a
cool-down (the schedule's first wait, at least ``MIN_COOLDOWN``), then sends one request (the
probe): an answer closes it, a failure opens it again for twice as long (up to ``MAX_COOLDOWN``).

The database is reached through one thread (``Database``): a query never holds the event loop,
and a lane waiting on a receiver holds no connection to it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import orjson

from collector.engage.destinations import webhooks
from collector.engage.destinations.definitions import Destination
from collector.engage.outbox.store import excerpt

log = logging.getLogger("intilery.destinations")

POLL = 0.2  # seconds between looks at an idle destination's queue
LEASE_SLACK = 5.0  # seconds a claim outlives its request's timeout before another sender may take it (after a kill: the wait to resend)
BREAK_AFTER = 5
MIN_COOLDOWN, MAX_COOLDOWN = 1.0, 600.0
JITTER = 0.1
STOP_GRACE = 5.0  # seconds a stopping lane waits for the requests in hand (then they are sent again after their lease)


class Database:
    """The outbox behind one thread: ``await db(method, *args)``."""

    def __init__(self, outbox) -> None:
        self.outbox = outbox
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="outbox")

    async def __call__(self, fn: Callable, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def batch_body(payloads: list[dict]) -> dict:
    """The body of a request of several events: Standard Webhooks' envelope, ``data.batch``."""
    stamps = [p.get("timestamp") for p in payloads if isinstance(p.get("timestamp"), str)]
    return {"type": "batch", "timestamp": max(stamps) if stamps else None, "data": {"batch": [p["data"] for p in payloads]}}


def request_of(rows: list[tuple]) -> tuple[str, bytes]:
    """The webhook-id and body of claimed rows ``(id, batch, payload, attempts)``: the same on every retry."""
    if len(rows) == 1 and rows[0][1] is None:
        return rows[0][0], rows[0][2].encode()
    rows = sorted(rows)
    return rows[0][1], orjson.dumps(batch_body([orjson.loads(r[2]) for r in rows]))


class Lane:
    """One destination: a claimer (due deliveries, a few requests' worth a transaction), ``concurrency``
    workers sending them, a recorder writing their outcomes (all those ready, a transaction)."""

    def __init__(self, dest: Destination, db: Database, stats: Counter) -> None:
        self.dest, self.db, self.stats = dest, db, stats
        self.wake = asyncio.Event()  # new deliveries (the filler), or room in the queue
        self.disabled: str | None = None  # the reason, while disabled
        self.failures = 0  # attempts failed in a row
        self.open_until = 0.0  # the circuit is open (nothing sent) until then
        self.cooldown = 0.0
        self.probing = False
        self.queue: asyncio.Queue = asyncio.Queue()
        self.busy = 0
        self.outcomes: list[dict] = []
        self.ready = asyncio.Event()  # outcomes to record

    async def run(self, stop: asyncio.Event) -> None:
        async with webhooks.session(self.dest.allow_private_network, self.dest.concurrency) as client:
            workers = [asyncio.create_task(self.worker(client)) for _ in range(self.dest.concurrency)]
            recorder = asyncio.create_task(self.recorder())
            try:
                await self.claimer(stop)
            finally:
                unsent = []
                while not self.queue.empty():
                    unsent += [r[0] for r in self.queue.get_nowait()]
                deadline = time.monotonic() + STOP_GRACE
                while self.busy and time.monotonic() < deadline:  # the requests in hand, for a while
                    await asyncio.sleep(0.05)
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                recorder.cancel()
                await asyncio.gather(recorder, return_exceptions=True)
                await self.flush()
                if unsent:
                    await self.db(self.db.outbox.release, unsent)

    async def idle(self, stop: asyncio.Event, seconds: float = POLL) -> None:
        self.wake.clear()
        waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def claimer(self, stop: asyncio.Event) -> None:
        dest = self.dest
        while not stop.is_set():
            if self.disabled or not dest.enabled:
                await self.idle(stop, 1.0)
                continue
            probe = False
            if self.open_until:
                if time.time() < self.open_until or self.probing:
                    await self.idle(stop, min(1.0, max(0.05, self.open_until - time.time())))
                    continue
                self.probing = probe = True
            room = 1 if probe else 2 * dest.concurrency - self.queue.qsize() - self.busy
            if room <= 0:
                await self.idle(stop)
                continue
            try:
                groups = await self.db(self.db.outbox.claim, dest.name, 1 if probe else dest.batch_size,
                                       dest.timeout + LEASE_SLACK, room)  # fmt: skip
            except Exception:
                log.exception("the outbox could not be read; trying again", extra={"destination": dest.name})
                groups = []
            if not groups:
                self.probing = False
                await self.idle(stop, POLL if not probe else 0.05)
                continue
            for group in groups:
                self.queue.put_nowait(group)

    async def worker(self, client) -> None:
        while True:
            group = await self.queue.get()
            self.busy += 1
            try:
                if self.open_until and time.time() < self.open_until:  # opened since it was claimed: not sent
                    await self.db(self.db.outbox.release, [r[0] for r in group])
                else:
                    await self.send(client, group)
            except Exception:
                log.exception("the destination's sender failed; it goes on", extra={"destination": self.dest.name})
            finally:
                self.busy -= 1
                self.wake.set()

    async def recorder(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            await self.flush()

    async def flush(self) -> None:
        outcomes, self.outcomes = self.outcomes, []
        if outcomes:
            try:
                await self.db(self.db.outbox.record, outcomes)
            except Exception:  # the deliveries stay in flight: sent again when their lease ends
                log.exception("outcomes could not be recorded", extra={"destination": self.dest.name})

    async def send(self, client, rows: list[tuple]) -> None:
        dest = self.dest
        msg_id, body = request_of(rows)
        ids = [r[0] for r in rows]
        outcome = await webhooks.attempt(client, dest.url, dest.secrets, msg_id, body, dest.timeout)
        now = time.time()
        attempts = max(r[3] for r in rows) + 1
        request = excerpt(f"POST {dest.url}\nwebhook-id: {msg_id}\n\n{body.decode('utf-8', 'replace')}")
        state, next_at, error = outcome.result, 0.0, outcome.error
        if outcome.result == "delivered":
            self.failures, self.open_until, self.cooldown = 0, 0.0, 0.0
        elif outcome.result == "retry":
            self.failed(now)
            if attempts > len(dest.retry_schedule):
                state = "dead"
                error = f"{error}; the retry schedule is used up after {attempts} attempt(s)"
            else:
                state = "failed"
                wait = dest.retry_schedule[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)
                if outcome.retry_after is not None:
                    wait = outcome.retry_after
                    error = f"{error}; Retry-After {outcome.retry_after:g} s"
                next_at = now + wait
        elif outcome.result == "gone":
            state = "dead"
            self.disabled = error
            await self.db(self.db.outbox.disable, dest.name, f"{error} (at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))})")
            log.warning("a destination answered 410 Gone: disabled until replayed", extra={"destination": dest.name})
        else:
            self.failures, self.open_until = 0, 0.0  # it answered: the endpoint is alive
        self.probing = False
        self.outcomes.append({"ids": ids, "state": state, "next_at": next_at, "status": outcome.status, "error": error,
                              "request": request, "answer": outcome.answer, "destination": dest.name,
                              "seconds": outcome.seconds if outcome.status is not None else None})  # fmt: skip
        self.ready.set()
        self.stats[(dest.name, state)] += len(ids)

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.failures >= BREAK_AFTER or self.open_until:
            first = self.dest.retry_schedule[0] if self.dest.retry_schedule else MIN_COOLDOWN
            self.cooldown = min(MAX_COOLDOWN, max(MIN_COOLDOWN, first, self.cooldown * 2))
            self.open_until = now + self.cooldown
            log.warning("a destination keeps failing: its circuit is open", extra={"destination": self.dest.name,
                                                                                  "seconds": self.cooldown})  # fmt: skip


class Sender:
    """Every destination's lane, and what they share: the database thread and the counts."""

    def __init__(self, db: Database, destinations: dict[str, Destination]) -> None:
        self.db = db
        self.stats: Counter[tuple[str, str]] = Counter()
        self.lanes = {name: Lane(dest, db, self.stats) for name, dest in destinations.items()}

    def wake(self) -> None:
        for lane in self.lanes.values():
            lane.wake.set()

    async def refresh(self) -> None:
        """Which destinations are disabled (a replay in another process enables one)."""
        disabled = await self.db(self.db.outbox.disabled)
        for name, lane in self.lanes.items():
            lane.disabled = disabled[name][1] if name in disabled else None

    async def run(self, stop: asyncio.Event) -> None:
        await self.refresh()
        lanes = [asyncio.create_task(lane.run(stop)) for lane in self.lanes.values()]
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    await self.refresh()
        finally:
            await asyncio.gather(*lanes, return_exceptions=True)
