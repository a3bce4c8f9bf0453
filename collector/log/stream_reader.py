"""The reader's interface over the NATS stream: records, a saved cursor, bad lines quarantined.

``StreamReader`` is to the JetStream stream what ``reader.Reader`` is to the files::

    reader = StreamReader(config, cursor=saved)     # saved: {"seq": last stream sequence read}
    async for record in reader.read():              # what is in the stream now, then returns
        handle(record.event)
    saved = reader.cursor
    await reader.close()

``await reader.lines_at(stream, [sequence, ...])`` gives the messages at those sequences (the
Profile API's events page), as ``Reader.lines_at`` gives lines at offsets of a segment.

A read starts after the cursor's sequence, asks nothing of the stream but its last sequence
when there is nothing new (``stats["fetched"]`` stays 0), and uses an ephemeral consumer
without acknowledgements, so readers neither disturb nor depend on the archive's durable
one. ``record.segment`` is ``<stream>#<sequence>``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, AsyncIterator

from collector.config import Config
from collector.log.layout import EVENTS
from collector.log.reader import Quarantine, Record
from collector.log.jetstream import API_TIMEOUT, StreamSettings, connect

FETCH_BATCH = 1000
FETCH_WAIT = 2.0  # seconds a fetch waits for messages the stream said it has
CONSUMER_IDLE = 30.0  # seconds before the server removes an abandoned reader's consumer


class StreamReader(Quarantine):
    def __init__(self, config: Config, cursor: dict[str, int] | None = None, *, log_name: str = EVENTS) -> None:
        self.config, self.log_name = config, log_name
        self.settings = StreamSettings.from_config(config)
        self.offsets: dict[str, int] = dict(cursor or {})
        self.stats: Counter[str] = Counter()
        self.nc: Any = None
        self._connecting = asyncio.Lock()

    @property
    def cursor(self) -> dict[str, int]:
        return dict(self.offsets)

    @cursor.setter
    def cursor(self, cursor: dict[str, int]) -> None:
        self.offsets = dict(cursor)

    async def read(self) -> AsyncIterator[Record]:
        """Every message after the cursor, as records; returns at the end of the stream."""
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        if self.nc is None:
            self.nc = await connect(self.config, "intilery-reader")
        js = self.nc.jetstream(timeout=API_TIMEOUT)
        start = self.offsets.get("seq", 0) + 1
        self.stats["asked"] += 1
        if (await js.stream_info(self.settings.name)).state.last_seq < start:
            return
        subscription = await js.pull_subscribe(
            self.settings.subjects[0] if self.log_name == EVENTS else self.settings.subjects[1],
            stream=self.settings.name,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=CONSUMER_IDLE,
                mem_storage=True,
            ),
        )
        try:
            while True:
                try:
                    messages = await subscription.fetch(FETCH_BATCH, timeout=FETCH_WAIT)
                except nats.errors.TimeoutError:
                    return  # the stream's last messages are on the other log's subjects
                self.stats["fetched"] += len(messages)
                for msg in messages:
                    sequence = msg.metadata.sequence.stream
                    self.offsets["seq"] = sequence
                    record = self.record(msg.data.rstrip(b"\n"), f"{self.settings.name}#{sequence}")
                    if record is not None:
                        yield record
                if not messages or messages[-1].metadata.num_pending == 0:
                    return
        finally:
            await subscription.unsubscribe()

    async def skip_to_end(self) -> None:
        """Move the cursor past what the stream holds now (a follower of new messages starts here)."""
        if self.nc is None:
            self.nc = await connect(self.config, "intilery-reader")
        js = self.nc.jetstream(timeout=API_TIMEOUT)
        self.offsets["seq"] = (await js.stream_info(self.settings.name)).state.last_seq

    async def lines_at(self, stream: str, sequences: list[int]) -> dict[int, Record]:
        """The messages at ``sequences`` of ``stream`` (the name ``record.segment`` starts with);
        a sequence no longer in the stream (aged out, erased) is left out."""
        import nats.js.errors

        async with self._connecting:  # two first requests at once make one connection
            if self.nc is None:
                self.nc = await connect(self.config, "intilery-reader")
        js = self.nc.jetstream(timeout=API_TIMEOUT)
        found = {}
        for sequence in sequences:
            try:
                msg = await js.get_msg(stream, sequence)
            except nats.js.errors.NotFoundError:
                continue
            record = self.record((msg.data or b"").rstrip(b"\n"), f"{stream}#{sequence}")
            if record is not None:
                found[sequence] = record
        return found

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()
            self.nc = None
