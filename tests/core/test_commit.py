"""The commit of a request: duplicates (seen, repeated, in flight), appends awaited together."""

from __future__ import annotations

import asyncio

import pytest

from collector.ingest.commit import Committer
from collector.config import Source
from collector.dedup import Dedup
from collector.errors import Unavailable
from collector.ingest.pipeline import Outcome

NOW = 1_795_000_000.0
WEB = Source(name="web", write_key="wk_web")


class HeldStore:
    """A store whose appends wait until the test settles them: the order of events is the test's."""

    def __init__(self) -> None:
        self.appends: list[tuple[str, list[bytes], asyncio.Future]] = []

    def append(self, lines, *, partition, log="events", ids=None, source=""):
        future = asyncio.get_running_loop().create_future()
        self.appends.append((log, list(lines), future))
        return future

    def settle(self, log: str, error: Exception | None = None) -> None:
        for name, _lines, future in self.appends:
            if name == log and not future.done():
                future.set_exception(error) if error else future.set_result(None)

    def lines(self, log: str = "events") -> list[bytes]:
        return [line for name, lines, future in self.appends if name == log for line in lines]


def outcome(*ids: str) -> Outcome:
    return Outcome(lines=[f'{{"messageId":"{i}"}}\n'.encode() for i in ids], ids=list(ids), rejected=[])


async def turns(n: int = 3) -> None:
    """Let the tasks just created run up to their first wait."""
    for _ in range(n):
        await asyncio.sleep(0)


async def until(condition) -> None:
    """Let the other tasks run until ``condition()`` holds (at most 1,000 turns of the loop)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


@pytest.fixture
def store() -> HeldStore:
    return HeldStore()


@pytest.fixture
def committer(store) -> Committer:
    return Committer(store, Dedup())


class TestDuplicates:
    async def test_a_repeat_within_the_request_is_stored_once(self, committer, store):
        """The same messageId twice in one batch: one line written, one duplicate counted."""
        task = asyncio.create_task(committer.commit(WEB, outcome("a", "b", "a"), NOW, []))
        await until(lambda: store.appends)
        store.settle("events")
        assert await task == 1
        assert len(store.lines()) == 2

    async def test_a_concurrent_duplicate_waits_for_the_write_in_flight(self, committer, store):
        """Two requests with the same id at once: one write; the second answers only after it is durable."""
        first = asyncio.create_task(committer.commit(WEB, outcome("a"), NOW, []))
        await until(lambda: store.appends)
        second = asyncio.create_task(committer.commit(WEB, outcome("a"), NOW, []))
        await turns()
        assert not second.done(), "the duplicate answered before the write it depends on was durable"
        store.settle("events")
        assert await first == 0 and await second == 1
        assert store.lines() == [b'{"messageId":"a"}\n']
        assert committer.dedup.seen(("web", "a")) and not committer.dedup.in_flight

    async def test_a_concurrent_duplicate_shares_the_failure_of_the_write_it_waited_for(self, committer, store):
        """When the write in flight fails, its duplicate is not reported stored: both get the 503."""
        first = asyncio.create_task(committer.commit(WEB, outcome("a"), NOW, []))
        await until(lambda: store.appends)
        second = asyncio.create_task(committer.commit(WEB, outcome("a"), NOW, []))
        await turns()
        store.settle("events", Unavailable("store_unavailable", "disk full"))
        for task in (first, second):
            with pytest.raises(Unavailable):
                await task
        assert not committer.dedup.seen(("web", "a")), "a failed write entered the duplicate window"
        assert not committer.dedup.in_flight

    async def test_an_id_stored_before_is_not_written_again(self, committer, store):
        """An id in the window (a retry after a 200) is answered as a duplicate without a write."""
        committer.dedup.add([("web", "a")], NOW)
        assert await committer.commit(WEB, outcome("a"), NOW, []) == 1
        assert store.appends == []


class TestFailures:
    async def test_one_failing_write_among_several_fails_the_commit_but_keeps_what_was_stored(self, committer, store):
        """The dead letters fail and the events succeed: a 503, every write awaited, the stored ids in the window."""
        task = asyncio.create_task(committer.commit(WEB, outcome("a", "b"), NOW, [b'{"code":"invalid"}\n']))
        await until(lambda: len(store.appends) == 2)
        store.settle("rejected", Unavailable("store_unavailable", "rejected/ is read-only"))
        await turns()
        assert not task.done(), "answered before every write was settled"
        store.settle("events")
        with pytest.raises(Unavailable):
            await task
        assert committer.dedup.seen(("web", "a")) and committer.dedup.seen(("web", "b")), "a retry of stored events would be stored twice"
        assert all(future.done() for *_, future in store.appends)

    async def test_a_failing_event_write_leaves_its_ids_free_for_the_retry(self, committer, store):
        """The events write fails: nothing enters the window, so the client's retry is stored."""
        task = asyncio.create_task(committer.commit(WEB, outcome("a"), NOW, []))
        await until(lambda: store.appends)
        store.settle("events", Unavailable("store_unavailable", "disk full"))
        with pytest.raises(Unavailable):
            await task
        retry = asyncio.create_task(committer.commit(WEB, outcome("a"), NOW, []))
        await until(lambda: len(store.appends) == 2)
        store.settle("events")
        assert await retry == 0
