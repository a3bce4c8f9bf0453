"""The NATS JetStream store: stateless collectors publish into one replicated stream.

Each stored line becomes one JetStream message on ``<prefix>.events.<source>`` (dead
letters on ``<prefix>.rejected.<source>``) with ``Nats-Msg-Id = messageId``, so JetStream's
duplicate window drops a retry that arrives through another collector, and
``Intilery-Partition`` carrying the ``dt=/hr=`` partition the file store would have used,
so ``intilery archive`` writes the very same layout.

Publishing is pipelined: ``append`` sends every line of a request at once, each with its
own reply subject under one inbox, and the request's future resolves when the last PubAck
is in. Nothing is reported stored before JetStream acknowledged it::

    append ─▶ HPUB x N (reply _INBOX.<id>.<token>) ─▶ PubAcks ─▶ future resolves ─▶ 200
                                │                        └─ error / no answer in
                                │                           nats_publish_timeout ─▶ 503
                                └─ not connected, or too many bytes in flight ─▶ 503 at once

Faults: while disconnected the client reconnects by itself (forever) and appends fail at
once; in-flight batches fail when the connection drops (their retry is deduplicated by
JetStream); a cluster without quorum does not answer, which the publish timeout turns into
a 503. ``ready()`` asks the stream for its info, so ``/readyz`` says which of these it is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from collector.config import Config, ConfigError
from collector.errors import Unavailable
from collector.metrics import Metrics
from collector.log.layout import EVENTS, REJECTED
from collector.log.jetstream import (
    API_TIMEOUT,
    HEADER_ID,
    HEADER_PARTITION,
    StreamSettings,
    connect,
    describe,
    ensure_stream,
    message_id_header,
    redact,
)

log = logging.getLogger("intilery.store.nats")

STARTUP_WAIT = 5.0  # start() waits this long for NATS, then carries on in the background
PROBE_TIMEOUT = 2.0  # how long /readyz waits for the stream to answer
PROBLEM_HOLD = 10.0  # a failed publish keeps /readyz at 503 this long unless a publish succeeds
PROBE_CACHE = 1.0  # a probe answer is reused for this long (load balancers poll often)
RETRY_AFTER_DOWN = 5
RETRY_AFTER_BUSY = 1

@dataclass(eq=False)
class _Batch:
    """The lines of one append: resolved by its last PubAck, failed by the first error."""

    future: asyncio.Future
    size: int
    waiting: int
    tokens: list[str]
    started: float = field(default_factory=time.perf_counter)
    timer: asyncio.TimerHandle | None = None
    published: bool = False  # every line handed to the client (or given up)
    released: bool = False  # its bytes no longer count as in flight


class NatsStore:
    """Publishes to a JetStream stream; the interface is FileStore's (start, append, ready, close)."""

    def __init__(self, config: Config, *, metrics: Metrics | None = None) -> None:
        self.config = config
        self.settings = StreamSettings.from_config(config)
        self.metrics = metrics or Metrics()
        self.publish_timeout = config.nats_publish_timeout
        self.max_inflight_bytes = config.max_pending_bytes
        self.nc: Any = None
        self.inflight_bytes = 0
        self._fatal: str | None = None  # a wrong configuration: stays until restart
        self._setup_problem: str | None = None  # why the stream is not created or checked yet
        self._publish_problem: str | None = None  # the last failed publish: cleared by a PubAck
        self._publish_problem_at = 0.0
        self._probe_problem: str | None = None  # what the last probe of the stream found
        self._stream_ok = False
        self._closing = False
        self._acks: dict[str, _Batch] = {}
        self._batches: set[_Batch] = set()
        self._publishing: set[asyncio.Task] = set()  # held so that no publishing task is collected
        self._tokens = itertools.count(1)
        self._inbox = ""
        self._setup: asyncio.Task | None = None
        self._probe: asyncio.Task | None = None
        self._probed_at = 0.0
        self._last_error = ""

    @property
    def where(self) -> str:
        """Where the events go, for people (the start-up banner): no password or token."""
        return f"{self.settings.name} on {redact(self.config.nats_url)}"

    @property
    def error(self) -> str | None:
        """Why the store cannot take writes now, or None: in full, for the log (servers, stream, exception text)."""
        if self._fatal:
            return self._fatal
        if self.nc is None or not self.nc.is_connected:
            detail = f": {self._last_error}" if self._last_error else ""
            return f"not connected to NATS at {redact(self.config.nats_url)} (reconnecting{detail})"
        if not self._stream_ok:
            return self._setup_problem or f"creating or checking stream {self.settings.name!r}"
        if self._publish_problem and time.monotonic() - self._publish_problem_at < PROBLEM_HOLD:
            return self._publish_problem
        return self._probe_problem

    @property
    def public_error(self) -> str | None:
        """``error`` as an answer may say it: what kind of problem, never a host, a name or an exception."""
        if self._fatal:
            return "the NATS store could not start"
        if self.nc is None or not self.nc.is_connected:
            return "not connected to NATS (reconnecting)"
        if not self._stream_ok:
            return "the stream is being created or checked"
        return "JetStream is not taking writes" if self.error else None

    # --- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and create or check the stream; a wrong stream is a ConfigError.

        When NATS is not reachable within STARTUP_WAIT the collector starts anyway (not
        ready, every append a 503) and finishes this in the background.
        """
        if not self.config.nats_publish_timeout > 0:
            raise ConfigError("nats_publish_timeout must be positive")
        self._loop = asyncio.get_running_loop()
        self.metrics.gauge("intilery_store_queue_bytes", lambda: self.inflight_bytes)
        self.metrics.gauge("intilery_store_ready", lambda: 0 if self.error else 1)
        self.metrics.gauge("intilery_nats_inflight_messages", lambda: len(self._acks))
        self._setup = asyncio.create_task(self._connect_and_check(), name="nats-setup")
        await asyncio.wait({self._setup}, timeout=STARTUP_WAIT)
        if self._setup.done():
            if self._setup.exception() is not None:  # a ConfigError stops the start
                if self.nc is not None:
                    await self.nc.close()
                self._setup.result()
        else:
            log.warning("NATS not ready yet; serving 503 until it is", extra={"reason": self.error})
        self._setup.add_done_callback(self._setup_done)

    async def _connect_and_check(self) -> None:
        self.nc = None
        nc = await connect(
            self.config,
            "intilery-collector",
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self.nc = nc
        self._inbox = nc.new_inbox() + "."
        # Unlimited here because the in-flight bytes are bounded in append(); a dropped ack
        # would turn a stored event into a 503.
        await nc.subscribe(self._inbox + "*", cb=self._on_ack, pending_msgs_limit=0, pending_bytes_limit=0)
        js = nc.jetstream(timeout=API_TIMEOUT)
        delay = 0.2
        while True:
            try:
                info = await ensure_stream(js, self.settings)
                break
            except ConfigError:
                raise
            except Exception as exc:  # no leader yet, timeouts, JetStream not enabled: retried
                self._setup_problem = f"cannot create or check stream {self.settings.name!r} ({describe(exc)})"
                log.warning("waiting for JetStream", extra={"reason": self._setup_problem})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._stream_ok = True
        self._setup_problem = None
        log.info(
            "NATS store ready",
            extra={"stream": self.settings.name, "replicas": info.config.num_replicas, "url": redact(self.config.nats_url)},
        )

    def _setup_done(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._fatal = str(exc) if isinstance(exc, ConfigError) else f"NATS setup failed ({describe(exc)})"
            log.error("NATS store cannot start", extra={"reason": self._fatal})

    async def close(self) -> None:
        """Stop taking appends, wait for the PubAcks of those in flight, close the connection."""
        if self._closing:
            return
        self._closing = True
        if self._setup is not None and not self._setup.done():
            self._setup.cancel()
            await asyncio.gather(self._setup, return_exceptions=True)
        pending = [b.future for b in self._batches]
        if pending:
            await asyncio.wait(pending, timeout=self.publish_timeout + 1)
        for batch in list(self._batches):
            self._fail(batch, Unavailable("store_unavailable", "the store is shutting down", retry_after=RETRY_AFTER_DOWN))
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.close()
            except Exception as exc:  # closing a broken connection must not stop the shutdown
                log.warning("closing the NATS connection: %s", describe(exc))
        log.info("NATS store closed")

    # --- connection events ----------------------------------------------------------------
    async def _on_error(self, exc: Exception) -> None:
        self._last_error = describe(exc)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        log.warning("disconnected from NATS; reconnecting", extra={"in_flight": len(self._batches)})
        # Whether the server stored what was in flight is unknown: answer 503 now, the
        # client's retry (same messageId) is deduplicated by JetStream.
        for batch in list(self._batches):
            self._fail(batch, Unavailable(
                "store_unavailable", "the connection to NATS was lost; retry", retry_after=RETRY_AFTER_BUSY
            ))  # fmt: skip

    async def _on_reconnected(self) -> None:
        url = self.nc.connected_url if self.nc else None
        log.info("reconnected to NATS", extra={"server": f"{url.hostname}:{url.port}" if url else "?"})
        self._last_error = ""

    # --- appending ----------------------------------------------------------------------
    def append(
        self, lines: list[bytes], *, partition: str, log: str = EVENTS, ids: list[str] | None = None, source: str = ""
    ) -> asyncio.Future:
        """Publish the lines; the future resolves when JetStream acknowledged every one."""
        if self._closing:
            raise Unavailable("store_unavailable", "the store is shutting down", retry_after=RETRY_AFTER_DOWN)
        nc = self.nc
        if self._fatal or not self._stream_ok or nc is None or not nc.is_connected:
            raise Unavailable(
                "store_unavailable", f"the event store cannot take writes ({self.public_error})", retry_after=RETRY_AFTER_DOWN
            )
        size = sum(map(len, lines))
        if self.inflight_bytes and self.inflight_bytes + size > self.max_inflight_bytes:
            raise Unavailable("store_overloaded", "the event store is behind; retry shortly", retry_after=RETRY_AFTER_BUSY)
        if not source and log == REJECTED and lines:
            source = _source_of(lines[0])
        subject = self.settings.subject(log, source)
        tokens = [str(next(self._tokens)) for _ in lines]
        batch = _Batch(self._loop.create_future(), size, len(lines), tokens)
        if not lines:
            batch.future.set_result(None)
            return batch.future
        self.inflight_bytes += size
        self._batches.add(batch)
        for token in tokens:
            self._acks[token] = batch
        batch.timer = self._loop.call_later(self.publish_timeout, self._expire, batch)
        task = self._loop.create_task(self._publish(batch, subject, lines, ids, source, partition))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return batch.future

    async def _publish(
        self, batch: _Batch, subject: str, lines: list[bytes], ids: list[str] | None, source: str, partition: str
    ) -> None:
        publish, inbox = self.nc.publish, self._inbox
        try:
            for i, (token, line) in enumerate(zip(batch.tokens, lines)):
                if batch.future.done():
                    return
                headers = {HEADER_PARTITION: partition}
                if ids is not None:
                    headers[HEADER_ID] = message_id_header(source, ids[i])
                await publish(subject, line, reply=inbox + token, headers=headers)
        except Exception as exc:  # disconnected meanwhile, buffer full, payload too large
            self._fail(batch, Unavailable(
                "store_unavailable", "cannot publish to NATS; retry", retry_after=RETRY_AFTER_BUSY
            ))  # fmt: skip
            log.warning("publish failed", extra={"reason": describe(exc)})
        finally:
            batch.published = True
            self._release(batch)

    async def _on_ack(self, msg: Any) -> None:
        batch = self._acks.pop(msg.subject[len(self._inbox):], None)
        if batch is None or batch.future.done():
            return
        ack = _parse_ack(msg.data)
        if ack is None or "error" in ack or "seq" not in ack:
            self._fail(batch, self._refused(msg, ack))
            return
        if ack.get("duplicate") is True:  # stored before (a retry): still a success
            self.metrics.inc("intilery_nats_duplicates_total")
        batch.waiting -= 1
        if batch.waiting == 0:
            self._publish_problem = self._probe_problem = None
            batch.future.set_result(None)
            self._settle(batch)
            self.metrics.observe_flush(time.perf_counter() - batch.started)

    def _refused(self, msg: Any, ack: dict | None) -> Unavailable:
        status = (msg.headers or {}).get("Status") if not msg.data else None
        error = ack.get("error") if ack is not None else None
        if status == "503":
            reason = (
                f"no leader for stream {self.settings.name!r}"
                " (election under way, cluster without quorum, or the stream was deleted)"
            )
        elif isinstance(error, dict):
            reason = f"JetStream refused the event: {error.get('description', 'no description')}"
        else:
            reason = f"unexpected answer from JetStream: {msg.data[:200]!r}"
        self._publish_failed(reason)
        log.warning("publish refused", extra={"reason": reason})
        return Unavailable("store_unavailable", "the event store cannot take writes (JetStream refused the events)",
                           retry_after=RETRY_AFTER_DOWN)  # fmt: skip

    def _expire(self, batch: _Batch) -> None:
        if batch.future.done():
            return
        reason = (
            f"JetStream did not acknowledge within {self.publish_timeout:g} s"
            f" (stream {self.settings.name!r} without a leader: cluster without quorum?)"
        )
        self._publish_failed(reason)
        log.warning("publish timed out", extra={"reason": reason, "events": len(batch.tokens)})
        self._fail(batch, Unavailable(
            "store_unavailable", "the event store cannot take writes (JetStream did not acknowledge in time)",
            retry_after=RETRY_AFTER_DOWN,
        ))  # fmt: skip

    def _publish_failed(self, reason: str) -> None:
        self._publish_problem, self._publish_problem_at = reason, time.monotonic()

    def _fail(self, batch: _Batch, error: Unavailable) -> None:
        if batch.future.done():
            return
        for token in batch.tokens:
            self._acks.pop(token, None)
        batch.future.set_exception(error)
        self._settle(batch)

    def _settle(self, batch: _Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        self._batches.discard(batch)
        self._release(batch)

    def _release(self, batch: _Batch) -> None:
        """Stop counting a batch's bytes once it is answered *and* its publishing task let go of
        them: a stalled connection can hold a publish after the 503 went out, and memory must
        stay bounded by max_pending_bytes even then."""
        if batch.published and batch.future.done() and not batch.released:
            batch.released = True
            self.inflight_bytes -= batch.size

    async def recent_ids(self, window: float, limit: int) -> list[tuple[str, str]]:
        """None to seed the collector's filter with: JetStream's duplicate window drops retries."""
        return []

    # --- readiness ----------------------------------------------------------------------
    async def ready(self) -> tuple[bool, str | None]:
        """Whether appends can succeed: connected, stream checked, and its leader answering."""
        if self._closing:
            return False, "shutting down"
        if self._fatal or not self._stream_ok or self.nc is None or not self.nc.is_connected:
            return False, self.public_error
        if time.monotonic() - self._probed_at > PROBE_CACHE:
            if self._probe is None or self._probe.done():
                self._probe = asyncio.create_task(self._probe_stream())
            await asyncio.shield(self._probe)
        return self.error is None, self.public_error

    async def _probe_stream(self) -> None:
        """Ask the stream for its info: answered only by its leader, so it also tests quorum."""
        try:
            answer = await self.nc.request(
                f"$JS.API.STREAM.INFO.{self.settings.name}", b"", timeout=PROBE_TIMEOUT
            )
            body = orjson.loads(answer.data) if answer.data else {}
        except Exception as exc:
            self._probe_problem = (
                f"stream {self.settings.name!r} did not answer within {PROBE_TIMEOUT:g} s"
                f" (no leader: cluster without quorum?) ({describe(exc)})"
            )
        else:
            error = body.get("error")
            if error:
                self._probe_problem = f"stream {self.settings.name!r}: {error.get('description', 'error')}"
            else:
                self._probe_problem = None
        self._probed_at = time.monotonic()


def _parse_ack(data: bytes) -> dict | None:
    """A PubAck's fields (``{"stream", "seq", "duplicate"?}`` or ``{"error": {...}}``); None when it is not one."""
    try:
        ack = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None
    return ack if isinstance(ack, dict) else None


def _source_of(line: bytes) -> str:
    """The ``source`` field of a dead letter (the app does not pass it for rejected lines)."""
    try:
        value = orjson.loads(line).get("source")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""
