"""Erasing a person from the JetStream stream (``--store nats``).

Every message of the stream is read through the stream's one reader (``StreamReader``, events
and dead letters); each one of the person's is removed with JetStream's message delete *with
erase* (``$JS.API.STREAM.MSG.DELETE.<stream>``, ``no_erase: false``): every replica overwrites the
message's bytes in its files, not only its index. A message already gone (a job run again after
a kill) counts as done.
"""

from __future__ import annotations

import asyncio

import orjson

from collector.log.jetstream import API_TIMEOUT, StreamSettings, connect
from collector.log.layout import EVENTS, REJECTED
from collector.log.stream_reader import StreamReader
from collector.profiles.person import Person

ERR_NO_MESSAGE = 10057  # JetStream: no message with that sequence


class StreamEraser:
    def __init__(self, config) -> None:
        self.config = config
        self.settings = StreamSettings.from_config(config)

    def erase(self, person: Person) -> dict:
        """Remove the person's messages; counts (run from the job's thread: its own event loop)."""
        return asyncio.run(self._erase(person))

    async def _erase(self, person: Person) -> dict:
        stats = {"scanned": 0, "scanned_bytes": 0, "removed": 0, "errors": []}
        nc = await connect(self.config, "intilery-privacy")
        try:
            for log_name in (EVENTS, REJECTED):
                drop = person.owns_line if log_name == EVENTS else person.owns_dead_letter
                reader = StreamReader(self.config, log_name=log_name)
                try:
                    async for record in reader.read():
                        stats["scanned"] += 1
                        stats["scanned_bytes"] += len(record.line)
                        if drop(record.line):
                            await self._delete(nc, int(record.segment.rpartition("#")[2]), stats)
                finally:
                    await reader.close()
        finally:
            await nc.close()
        return stats

    async def _delete(self, nc, sequence: int, stats: dict) -> None:
        subject = f"$JS.API.STREAM.MSG.DELETE.{self.settings.name}"
        answer = orjson.loads((await nc.request(subject, orjson.dumps({"seq": sequence, "no_erase": False}),
                                                timeout=API_TIMEOUT)).data)  # fmt: skip
        error = answer.get("error")
        if error is None and answer.get("success"):
            stats["removed"] += 1
        elif error is not None and error.get("err_code") == ERR_NO_MESSAGE:
            return
        else:
            stats["errors"].append(f"nats: delete of sequence {sequence} failed ({(error or {}).get('err_code')})")
