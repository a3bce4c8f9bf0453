"""``intilery archive``: the NATS stream written out as the file store's partitioned NDJSON.

A durable pull consumer fetches a batch, writes every line under the partition its
collector chose (header ``Intilery-Partition``, the one the file store would have used)
through the file store's own group commit, and acknowledges the batch only after that
fsync. Processes started with the same consumer name share the work; each writes its own
segments (``part-<instance>-<seq>``), so they can share one output directory.

Exactly once in the output, at any kill point:

- killed mid-write: the next start cuts the torn last line of the dead instance's segment
  (it was never acknowledged, so JetStream delivers it again) and compresses the segment;
- killed after the fsync but before the ack: the messages come back with
  ``num_delivered > 1``; for those, the partition's segments on disk (every instance's) are
  read first and lines already there are acknowledged without being written again;
- a client retry that JetStream's duplicate window missed is dropped by messageId like the
  collector's file store does (a ``Dedup`` seeded from the output at start).

Keys: an event is known by its ``Nats-Msg-Id`` (``message_id_header(source, messageId)``), a dead
letter (no messageId) by a digest of its bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import re
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from collector.config import Config, ConfigError, load_config
from collector.dedup import Dedup
from collector.errors import Unavailable
from collector.metrics import Metrics
from collector.log import layout, rotation
from collector.log.files import FileStore
from collector.log.layout import EVENTS, REJECTED, day_partition, hour_partition
from collector.log.reader import Reader
from collector.log.jetstream import (
    ERR_STREAM_NOT_FOUND,
    HEADER_ID,
    HEADER_PARTITION,
    StreamSettings,
    connect,
    describe,
    message_id_header,
)

log = logging.getLogger("intilery.archive")

DEFAULT_BATCH = 1000
DEFAULT_ACK_WAIT = 60.0  # seconds before JetStream gives an unacknowledged message to another process
MAX_ACK_PENDING = 50_000  # across every process of the consumer
FETCH_WAIT = 1.0  # a fetch returns after this long when the stream is idle (and SIGTERM is noticed)
RETRY_DELAY = 5.0  # after a failed write, the batch is handed back with this delay
REPORT_EVERY = 10.0  # seconds between progress lines in the log


class ArchiveStore(FileStore):
    """The file store, except that a torn last line found at start is cut, not dead-lettered.

    The archive acknowledges a message only after its fsync, so a line cut short by a crash
    was never acknowledged: JetStream delivers it again and it is written whole.
    """

    torn_lines_rejected = False


def line_key(log_name: str, line: bytes) -> str:
    """How the output knows a line: an event by its Nats-Msg-Id, a dead letter by its bytes."""
    if log_name == EVENTS:
        try:
            event = orjson.loads(line)
            source, message_id = event.get("source"), event.get("messageId")
        except (orjson.JSONDecodeError, AttributeError):
            source = message_id = None
        if isinstance(message_id, str) and message_id and isinstance(source, str):
            return message_id_header(source, message_id)
    return "b:" + hashlib.blake2b(line.rstrip(b"\n"), digest_size=16).hexdigest()


def partition_of(log_name: str, line: bytes) -> str:
    """The partition from the line's receivedAt, for a message without the header."""
    try:
        received = orjson.loads(line).get("receivedAt")
    except (orjson.JSONDecodeError, AttributeError):
        received = None
    return layout.partition_of_received(log_name, received) or layout.partition(log_name, time.time())


class OutputIndex:
    """The keys of the lines already in the output directory, read incrementally.

    Every instance's segments are read (open ones up to their last newline) through the
    log's reader, whose cursor remembers where each stopped, so rescanning a partition after
    a redelivery costs what was written since.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._readers = {name: Reader(self.data_dir / name, log_name=name) for name in (EVENTS, REJECTED)}

    def scan(self, log_name: str, partition: str) -> list[str]:
        """Keys of lines in ``log_name/partition`` not returned by an earlier scan."""
        return [line_key(log_name, line) for line, _segment in self._readers[log_name].lines([partition])]

    def partitions(self, log_name: str, since: str) -> list[str]:
        """The partitions of ``log_name`` from ``since`` on, oldest first."""
        return layout.partitions(self.data_dir / log_name, log_name, since)

    def seed(self, dedup: Dedup, window: float) -> int:
        """Fill ``dedup`` with the newest keys in the output (at most its max_entries), oldest first."""
        now = time.time()
        found: list[list[str]] = []
        total = 0
        for log_name, since in ((EVENTS, hour_partition(now - window)), (REJECTED, day_partition(now - window))):
            for partition in reversed(self.partitions(log_name, since)):
                if total >= dedup.max_entries:
                    break
                keys = self.scan(log_name, partition)
                found.append(keys)
                total += len(keys)
        for keys in reversed(found):
            dedup.add(keys, now)
        return total


class Archiver:
    """Copies the stream into ``config.data_dir``; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        consumer: str | None = None,
        batch: int = DEFAULT_BATCH,
        ack_wait: float = DEFAULT_ACK_WAIT,
        metrics: Metrics | None = None,
        requests: Callable[[Config, Any, str], Any] | None = None,
    ) -> None:
        self.config = config
        # privacy requests of the output directory: made with (config, connection, consumer) once
        # connected (``collector.privacy.archives.ArchiveEraser``, given by the command), or None
        self.requests = requests
        self.settings = StreamSettings.from_config(config)
        self.consumer = consumer or config.archive_consumer
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.consumer):
            raise ConfigError(f"the archive consumer name must be letters, digits, '-' or '_', not {self.consumer!r}")
        if batch < 1:
            raise ConfigError("--batch must be at least 1")
        self.batch, self.ack_wait = batch, ack_wait
        self.metrics = metrics or Metrics()
        self.dedup = Dedup(config.dedup_window_hours * 3600, config.dedup_max_entries)
        self.index = OutputIndex(config.data_dir)
        self.written = self.skipped = 0
        self.nc: Any = None
        self.eraser: Any = None
        self._prefixes = {f"{self.settings.prefix}.{name}.": name for name in (EVENTS, REJECTED)}

    async def run(self, stop: asyncio.Event, on_ready=None) -> None:
        loop = asyncio.get_running_loop()
        # A batch is written in one group commit, so the store must take a whole batch at once.
        store = ArchiveStore(
            self.config.data_dir,
            fsync="always",
            segment_max_bytes=self.config.segment_max_bytes,
            max_pending_bytes=max(self.config.max_pending_bytes, self.batch * 64 * 1024),
            metrics=self.metrics,
        )
        await store.start()
        try:
            seeded = await loop.run_in_executor(None, self.index.seed, self.dedup, self.dedup.window)
            log.info("duplicate filter seeded from the output", extra={"keys": seeded})
            self.nc = await connect(self.config, f"intilery-archive-{store.instance}", error_cb=self._on_error)
            if self.requests is not None:  # privacy requests (erasures) reach the output directory through it
                self.eraser = self.requests(self.config, self.nc, self.consumer)
            subscription = await self._subscribe(stop)
            if subscription is None or (self.eraser is not None and not await self.eraser.register(stop)):
                return  # (registered before anything is archived: an erasure filed from now on waits for it)
            if on_ready is not None:
                on_ready(store)
            rotations = asyncio.create_task(rotation.follow(store, Path(self.config.data_dir), store.instance, stop))
            requests = asyncio.create_task(self.eraser.follow(stop)) if self.eraser is not None else None
            try:
                await self._loop(subscription, store, stop)
            finally:
                stop.set()
                if self.eraser is not None:
                    await self.eraser.close()
                await rotations
                if requests is not None:
                    await requests
        finally:
            if self.nc is not None:
                try:
                    await self.nc.flush(timeout=2)  # the last acknowledgements reach the server
                except Exception as exc:
                    log.warning("could not flush the last acknowledgements (%s); they are delivered again", describe(exc))
                await self.nc.close()
            await store.close()
            log.info("archive stopped", extra={"written": self.written, "duplicates": self.skipped})

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", describe(exc))

    async def _subscribe(self, stop: asyncio.Event) -> Any:
        """Bind to the durable consumer (created when missing) once the stream exists."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        js = self.nc.jetstream(timeout=5)
        while not stop.is_set():
            try:
                try:
                    info = await js.consumer_info(self.settings.name, self.consumer)
                except NotFoundError as exc:
                    if exc.err_code == ERR_STREAM_NOT_FOUND:
                        raise
                    info = await js.add_consumer(self.settings.name, ConsumerConfig(
                        durable_name=self.consumer,
                        description="intilery archive: the stream as partitioned NDJSON",
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=self.ack_wait,
                        max_ack_pending=MAX_ACK_PENDING,
                        max_deliver=-1,
                    ))  # fmt: skip
                if info.config.deliver_subject:
                    raise ConfigError(f"NATS consumer {self.consumer!r} is a push consumer; the archive needs a pull consumer")
                return await js.pull_subscribe_bind(durable=self.consumer, stream=self.settings.name)
            except ConfigError:
                raise
            except Exception as exc:  # stream not created yet (no collector started), no leader yet
                log.warning("waiting for stream %r: %s", self.settings.name, describe(exc))
                try:
                    await asyncio.wait_for(stop.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
        return None

    async def _loop(self, subscription: Any, store: ArchiveStore, stop: asyncio.Event) -> None:
        import nats.errors

        reported = time.monotonic()
        while not stop.is_set():
            if self.eraser is not None:
                self.eraser.start_due(store)  # privacy requests, in a task beside this loop
            try:
                messages = await subscription.fetch(self.batch, timeout=FETCH_WAIT)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                messages = []
            except Exception as exc:  # disconnected: the client reconnects by itself
                log.warning("fetch failed: %s", describe(exc))
                await asyncio.sleep(1.0)
                continue
            if messages:
                await self._write(messages, store)
            if time.monotonic() - reported >= REPORT_EVERY:
                reported = time.monotonic()
                log.info("archive progress", extra={"written": self.written, "duplicates": self.skipped})

    async def _write(self, messages: list[Any], store: ArchiveStore) -> None:
        """Write what is new in one group commit, then acknowledge the whole batch."""
        entries, redelivered = [], set()
        for msg in messages:
            log_name = self._log_of(msg.subject)
            if log_name is None:
                log.warning("skipping a message on an unexpected subject", extra={"subject": msg.subject})
                entries.append((msg, None, "", "", b""))
                continue
            data = msg.data if msg.data.endswith(b"\n") else msg.data + b"\n"
            headers = msg.headers or {}
            partition = headers.get(HEADER_PARTITION, "")
            if not layout.PARTITION[log_name].fullmatch(partition):
                partition = partition_of(log_name, data)
            key = headers.get(HEADER_ID) if log_name == EVENTS else None
            key = key or line_key(log_name, data)
            if self.eraser is not None and self.eraser.late(log_name, msg.metadata.sequence.stream, data):
                entries.append((msg, None, "", "", b""))  # erased from the stream meanwhile: acknowledged, not written
                continue
            if msg.metadata.num_delivered > 1:
                redelivered.add((log_name, partition))
            entries.append((msg, log_name, partition, key, data))
        if redelivered:
            await asyncio.get_running_loop().run_in_executor(None, self._rescan, redelivered)

        groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        fresh: set[str] = set()
        for _msg, log_name, partition, key, data in entries:
            if log_name is None:
                continue
            if key in fresh or self.dedup.seen(key):
                self.skipped += 1
                continue
            fresh.add(key)
            groups[(log_name, partition)].append(data)
        try:
            commits = [store.append(lines, partition=partition, log=log_name) for (log_name, partition), lines in groups.items()]
            results = await asyncio.gather(*commits, return_exceptions=True)
        except Unavailable as exc:
            results = [exc]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # Lines of the groups that did succeed are on disk: their redelivery is found there.
            log.error("writing the output failed; the batch is delivered again", extra={"reason": str(failed[0])})
            for msg, *_ in entries:
                await msg.nak(delay=RETRY_DELAY)
            await asyncio.sleep(RETRY_DELAY)
            return
        self.dedup.add(fresh)
        self.written += len(fresh)
        self.metrics.inc("intilery_archive_lines_total", len(fresh))
        for msg, *_ in entries:
            await msg.ack()

    def _log_of(self, subject: str) -> str | None:
        for prefix, log_name in self._prefixes.items():
            if subject.startswith(prefix):
                return log_name
        return None

    def _rescan(self, partitions: Iterable[tuple[str, str]]) -> None:
        for log_name, partition in partitions:
            keys = self.index.scan(log_name, partition)
            if keys:
                self.dedup.add(keys)


# --- the command -------------------------------------------------------------------------
def add_parser(commands: Any) -> None:
    """Register ``intilery archive`` on the CLI's subcommands."""
    parser = commands.add_parser(
        "archive", help="write the NATS stream into the partitioned NDJSON layout (run one or more)"
    )
    parser.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    parser.add_argument("--data-dir", help="where the NDJSON layout is written (default ./data)")
    parser.add_argument("--nats-url", help="NATS server(s), comma-separated")
    parser.add_argument("--nats-stream", help="the stream the collectors publish to (default INTILERY)")
    parser.add_argument("--consumer", help="durable consumer name; processes with the same name share the work")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"messages per fetch and fsync (default {DEFAULT_BATCH})")
    parser.add_argument("--ack-wait", type=float, default=DEFAULT_ACK_WAIT,
                        help=f"seconds before an unacknowledged message goes to another process (default {DEFAULT_ACK_WAIT:g})")  # fmt: skip
    parser.add_argument("--log-format", choices=("text", "json"), help="text (default) or json")
    parser.set_defaults(run=run_command)
    return parser


def config_of(args: argparse.Namespace) -> Config:
    """The command's configuration (logging set up)."""
    from collector.logs import setup_logging

    overrides = {
        "data_dir": args.data_dir,
        "nats_url": args.nats_url,
        "nats_stream": args.nats_stream,
        "archive_consumer": args.consumer,
        "log_format": args.log_format,
    }
    config = load_config(args.config, overrides, with_dev_source=False)
    setup_logging(config.log_format)
    return config


def run_command(args: argparse.Namespace, requests: Callable[[Config, Any, str], Any] | None = None) -> int:
    from collector.serve.runtime import new_loop

    config = config_of(args)
    archiver = Archiver(config, batch=args.batch, ack_wait=args.ack_wait, requests=requests)
    loop = new_loop()

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(store: ArchiveStore) -> None:
            print(
                f"intilery archive: stream {archiver.settings.name} (consumer {archiver.consumer})"
                f" into {config.data_dir} as instance {store.instance}",
                flush=True,
            )

        await archiver.run(stop, on_ready=ready)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return 0
