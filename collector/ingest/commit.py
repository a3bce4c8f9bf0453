"""The commit of a request: duplicates out, append, wait until durable.

After the pipeline has turned a request's messages into lines, ``Committer.commit``:

1. drops the ids seen in the window, and repeats within the request (an id is a source's:
   ``(source, messageId)``, so another source's event with the same id is stored);
2. for an id another request is writing right now (in flight), waits for that write instead
   of writing it again;
3. appends the fresh lines and the dead letters, and awaits every write (and every in-flight
   wait), even when one fails, so no failure leaves another unretrieved;
4. adds the stored ids to the window, even when the answer is a 503 because another write of
   the same request failed: a retry of them is then a duplicate.

``dead_letters`` turns the messages a batch rejected one by one into the lines ``commit``
writes to ``rejected/`` with the events (with the violations of a message its
source's tracking plan rejected); ``reject`` keeps a whole rejected request there.
The store is any log store (``collector.log``); nothing here knows which.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from collector.config import Source
from collector.dedup import Dedup
from collector.ingest import deadletters
from collector.ingest.pipeline import Outcome
from collector.log.layout import REJECTED, day_partition, hour_partition


def dead_letters(source: Source, received_at: float, outcome: Outcome, messages: list, indexed: bool = True) -> list[bytes]:
    """The ``rejected/`` lines of the messages ``outcome`` rejected: code, sentence, the message as sent
    (and its ``index`` in the batch when ``indexed``)."""
    return [
        deadletters.record(source, received_at, r["code"], r["message"], **({"index": r["index"]} if indexed else {}),
                           **violations_kept(outcome, r["index"]), payload=messages[r["index"]])  # fmt: skip
        for r in outcome.rejected
        if r["index"] not in outcome.unkept
    ]


def violations_kept(outcome: Outcome, index: int) -> dict:
    """``violations=`` for a message rejected by its source's tracking plan (rejected/ keeps what it broke)."""
    found = outcome.violations.get(index)
    return {"violations": found} if found else {}


class Committer:
    def __init__(self, store: Any, dedup: Dedup) -> None:
        self.store, self.dedup = store, dedup

    def commit(self, source: Source, outcome: Outcome, received_at: float, rejected_lines: list[bytes]) -> Awaitable[int]:
        """Store what is new, wait for in-flight duplicates; awaited, how many were duplicates."""
        return self.write(source.name, outcome.ids, outcome.lines, received_at, rejected_lines)

    async def write(self, source: str, ids: list[str], lines: list[bytes], received_at: float,
                    rejected_lines: list[bytes]) -> int:  # fmt: skip
        """``commit`` by the source's name: the part the host writer runs for every worker."""
        dedup, fresh_lines, fresh_ids, fresh_keys, waits = self.dedup, [], [], [], []
        seen_here: set[tuple[str, str]] = set()
        for message_id, line in zip(ids, lines):
            key = (source, message_id)  # another source's event with the same id is its own
            if key in seen_here or dedup.seen(key):
                continue
            in_flight = dedup.in_flight.get(key)
            if in_flight is not None:
                waits.append(in_flight)
                continue
            seen_here.add(key)
            fresh_lines.append(line)
            fresh_ids.append(message_id)
            fresh_keys.append(key)
        commits = []
        if rejected_lines:
            commits.append(
                self.store.append(rejected_lines, partition=day_partition(received_at), log=REJECTED, source=source)
            )
        if fresh_lines:
            commit = self.store.append(fresh_lines, partition=hour_partition(received_at), ids=fresh_ids, source=source)
            commits.append(commit)
            for key in fresh_keys:
                dedup.in_flight[key] = commit
        try:
            if len(commits) == 1 and not waits:  # most requests: one write, awaited without gathering
                try:
                    await commits[0]
                    failure = None
                except Exception as exc:  # noqa: BLE001 - raised below, once the window is kept
                    failure = exc
                stored = failure is None
            else:  # every write (and every in-flight duplicate) is awaited, even when one fails
                results = await asyncio.gather(*commits, *waits, return_exceptions=True)
                stored = not isinstance(results[len(commits) - 1], BaseException) if commits else False
                failure = next((r for r in results if isinstance(r, BaseException)), None)
        finally:
            for key in fresh_keys:
                if dedup.in_flight.get(key) is commits[-1]:
                    del dedup.in_flight[key]
        if fresh_lines and stored:
            dedup.add(fresh_keys, received_at)  # stored: a retry of them is a duplicate even if the answer is a 503
        if failure is not None:
            raise failure
        return len(ids) - len(fresh_ids)

    async def reject(self, source: Source, received_at: float, code: str, message: str, **payload) -> None:
        """Keep a whole rejected request in ``rejected/``: ``payload=`` (or ``payloadBase64=``) as sent."""
        line = deadletters.record(source, received_at, code, message, **payload)
        await self.write(source.name, [], [], received_at, [line])
