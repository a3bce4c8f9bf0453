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
import hashlib
import itertools
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from collector.config import Config, ConfigError
from collector.errors import Unavailable
from collector.metrics import Metrics
from collector.store.files import EVENTS, REJECTED

log = logging.getLogger("intilery.store.nats")

HEADER_ID = "Nats-Msg-Id"
HEADER_PARTITION = "Intilery-Partition"
STARTUP_WAIT = 5.0  # start() waits this long for NATS, then carries on in the background
PROBE_TIMEOUT = 2.0  # how long /readyz waits for the stream to answer
API_TIMEOUT = 5.0  # JetStream API calls at start-up (create or check the stream)
PROBLEM_HOLD = 10.0  # a failed publish keeps /readyz at 503 this long unless a publish succeeds
PROBE_CACHE = 1.0  # a probe answer is reused for this long (load balancers poll often)
RETRY_AFTER_DOWN = 5
RETRY_AFTER_BUSY = 1
CONNECT_OPTIONS: dict[str, Any] = {
    "allow_reconnect": True,
    "max_reconnect_attempts": -1,  # never give up: the collector heals when the cluster returns
    "reconnect_time_wait": 1,
    "connect_timeout": 2,
    "ping_interval": 5,  # a silent (half-open) connection is noticed within ~15 s
    "max_outstanding_pings": 3,
}
# JetStream error codes this module reacts to
ERR_REPLICAS_NOT_SUPPORTED = 10074  # replicas > 1 on a server that is not clustered
ERR_STREAM_NAME_IN_USE = 10058
ERR_STREAM_NOT_FOUND = 10059

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_SAFE_ID = re.compile(r"[\x21-\x7e]+")


def subject_token(name: str) -> str:
    """A source name as one subject token (dots, wildcards and spaces become ``_``)."""
    return _TOKEN.sub("_", name) or "_"


def message_id_header(message_id: str) -> str:
    """The ``Nats-Msg-Id`` for a messageId: itself, or a digest when it is not header-safe."""
    if _SAFE_ID.fullmatch(message_id):
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()


def server_list(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def redact(url: str) -> str:
    """The server list without passwords or tokens, for logs and /readyz."""
    return re.sub(r"//[^/@,]*@", "//***@", url)


@dataclass(frozen=True)
class StreamSettings:
    """What the stream must look like; built from the ``nats_*`` settings.

    Example::

        settings = StreamSettings.from_config(load_config(overrides={"nats_replicas": 3}))
        settings.subjects  # ('intilery.events.>', 'intilery.rejected.>')
    """

    name: str
    prefix: str
    replicas: int  # 0: 3 on a cluster, 1 on a single server
    max_age: float  # seconds, 0 = none
    max_bytes: int  # 0 = none
    duplicate_window: float  # seconds

    @classmethod
    def from_config(cls, config: Config) -> StreamSettings:
        settings = cls(
            name=config.nats_stream,
            prefix=config.nats_subject_prefix,
            replicas=config.nats_replicas,
            max_age=config.nats_retention_hours * 3600,
            max_bytes=config.nats_max_bytes,
            duplicate_window=config.nats_duplicate_window_seconds,
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ConfigError(f"nats_stream must be letters, digits, '-' or '_', not {self.name!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", self.prefix):
            raise ConfigError(f"nats_subject_prefix must be dot-separated tokens, not {self.prefix!r}")
        if not 0 <= self.replicas <= 5:
            raise ConfigError(f"nats_replicas must be 1 to 5 (or 0 for automatic), not {self.replicas}")
        if self.max_age < 0 or self.max_bytes < 0:
            raise ConfigError("nats_retention_hours and nats_max_bytes cannot be negative")
        if self.duplicate_window <= 0:
            raise ConfigError("nats_duplicate_window_seconds must be positive")
        if self.max_age and self.duplicate_window > self.max_age:
            raise ConfigError("nats_duplicate_window_seconds cannot be longer than nats_retention_hours")

    @property
    def subjects(self) -> tuple[str, str]:
        return (f"{self.prefix}.{EVENTS}.>", f"{self.prefix}.{REJECTED}.>")

    def subject(self, log_name: str, source: str) -> str:
        return f"{self.prefix}.{log_name}.{subject_token(source)}"

    def stream_config(self, replicas: int):
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        return StreamConfig(
            name=self.name,
            description="Intilery collected events (intilery serve --store nats)",
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            max_age=self.max_age,
            max_bytes=self.max_bytes or -1,
            duplicate_window=self.duplicate_window,
        )

    def mismatches(self, existing: Any) -> list[str]:
        """How an existing stream's configuration differs from these settings."""
        found = []
        if sorted(existing.subjects or []) != sorted(self.subjects):
            found.append(f"subjects {existing.subjects} (expected {list(self.subjects)})")
        if self.replicas and existing.num_replicas != self.replicas:
            found.append(f"{existing.num_replicas} replicas (nats_replicas is {self.replicas})")
        if abs((existing.max_age or 0) - self.max_age) > 0.001:
            found.append(f"max age {(existing.max_age or 0) / 3600:g} h (nats_retention_hours is {self.max_age / 3600:g})")
        existing_bytes = existing.max_bytes if existing.max_bytes and existing.max_bytes > 0 else 0
        if existing_bytes != self.max_bytes:
            found.append(f"max bytes {existing_bytes} (nats_max_bytes is {self.max_bytes})")
        if abs((existing.duplicate_window or 0) - self.duplicate_window) > 0.001:
            found.append(
                f"duplicate window {existing.duplicate_window:g} s"
                f" (nats_duplicate_window_seconds is {self.duplicate_window:g})"
            )
        storage = getattr(existing.storage, "value", existing.storage)
        if storage != "file":
            found.append(f"{storage} storage (expected file)")
        return found


async def ensure_stream(js: Any, settings: StreamSettings) -> Any:
    """Create the stream, or check the existing one; ConfigError when it differs.

    Transient failures (no JetStream leader yet, timeouts) are raised as they are, for the
    caller to retry.
    """
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        info = await _create_stream(js, settings)
        if info is not None:
            return info
        info = await js.stream_info(settings.name)  # another collector created it meanwhile
    differences = settings.mismatches(info.config)
    if differences:
        raise ConfigError(
            f"NATS stream {settings.name!r} exists with a different configuration: {'; '.join(differences)}."
            " Change the settings to match, or update the stream (nats stream edit) yourself;"
            " the collector never changes an existing stream"
        )
    return info


async def _create_stream(js: Any, settings: StreamSettings) -> Any:
    """The new stream's info, or None when it exists already (created by someone else)."""
    from nats.js.errors import APIError

    replicas = settings.replicas or 3
    while True:
        try:
            info = await js.add_stream(config=settings.stream_config(replicas))
        except APIError as exc:
            if exc.err_code == ERR_STREAM_NAME_IN_USE:
                return None
            if exc.err_code == ERR_REPLICAS_NOT_SUPPORTED and not settings.replicas and replicas > 1:
                replicas = 1  # automatic: a single server holds one replica
                continue
            if exc.err_code == ERR_REPLICAS_NOT_SUPPORTED:
                raise ConfigError(
                    f"cannot create NATS stream {settings.name!r} with {replicas} replicas: {exc.description}"
                    " (set nats_replicas to 1 on a single server)"
                ) from None
            raise
        log.info("created NATS stream", extra={"stream": settings.name, "replicas": replicas})
        return info


async def connect(config: Config, client_name: str, **callbacks: Any) -> Any:
    """A NATS connection that reconnects forever; returns once the first connection is up."""
    import nats

    return await nats.connect(servers=server_list(config.nats_url), name=client_name, **CONNECT_OPTIONS, **callbacks)


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


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
    def error(self) -> str | None:
        """Why the store cannot take writes now, or None."""
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
                "store_unavailable", f"the event store cannot take writes ({self.error})", retry_after=RETRY_AFTER_DOWN
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
        task = self._loop.create_task(self._publish(batch, subject, lines, ids, partition))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return batch.future

    async def _publish(
        self, batch: _Batch, subject: str, lines: list[bytes], ids: list[str] | None, partition: str
    ) -> None:
        publish, inbox = self.nc.publish, self._inbox
        try:
            for i, (token, line) in enumerate(zip(batch.tokens, lines)):
                if batch.future.done():
                    return
                headers = {HEADER_PARTITION: partition}
                if ids is not None:
                    headers[HEADER_ID] = message_id_header(ids[i])
                await publish(subject, line, reply=inbox + token, headers=headers)
        except Exception as exc:  # disconnected meanwhile, buffer full, payload too large
            self._fail(batch, Unavailable(
                "store_unavailable", f"cannot publish to NATS ({describe(exc)})", retry_after=RETRY_AFTER_BUSY
            ))  # fmt: skip
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
        return Unavailable("store_unavailable", f"the event store cannot take writes ({reason})", retry_after=RETRY_AFTER_DOWN)

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
            "store_unavailable", f"the event store cannot take writes ({reason})", retry_after=RETRY_AFTER_DOWN
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

    # --- readiness ----------------------------------------------------------------------
    async def ready(self) -> tuple[bool, str | None]:
        """Whether appends can succeed: connected, stream checked, and its leader answering."""
        if self._closing:
            return False, "shutting down"
        if self._fatal or not self._stream_ok or self.nc is None or not self.nc.is_connected:
            return False, self.error
        if time.monotonic() - self._probed_at > PROBE_CACHE:
            if self._probe is None or self._probe.done():
                self._probe = asyncio.create_task(self._probe_stream())
            await asyncio.shield(self._probe)
        return self.error is None, self.error

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
