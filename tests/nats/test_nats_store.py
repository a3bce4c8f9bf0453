"""``--store nats`` against one real nats-server: what lands in the stream, and what happens when it goes away."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import orjson
import pytest
from natsprocs import (
    NatsServer,
    consumer_drained,
    get_json,
    metric,
    output_lines,
    output_segments,
    post_batch,
    require_nats_server,
    stream_messages,
    track,
)

from helpers import eventually, read_events


def nats_args(url: str, *more: str) -> list[str]:
    return ["--store", "nats", "--nats-url", url, *more]


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


class TestStream:
    async def test_events_are_in_the_stream_with_their_headers_and_body(self, nats_server, collectors, session):
        """Each accepted event is one message: subject per source, Nats-Msg-Id = <source>/<messageId>, the line as body."""
        collector = await collectors("c1", *nats_args(nats_server.url))
        events = [track("m1"), track("m2", properties={"total": 12.5}), {"type": "page", "anonymousId": "a", "messageId": "m3"}]
        status, body, _ = await post_batch(session, collector.url, [*events, {"type": "bogus"}])
        assert status == 200, body
        assert body["accepted"] == 3 and [r["index"] for r in body["rejected"]] == [3]

        messages = await stream_messages(nats_server.url)
        stored = [m for m in messages if m.subject == "intilery.events.web"]
        assert [m.headers["Nats-Msg-Id"] for m in stored] == ["web/m1", "web/m2", "web/m3"]
        for message in stored:
            assert message.data.endswith(b"\n") and message.data.count(b"\n") == 1
            event = orjson.loads(message.data)
            assert "web/" + event["messageId"] == message.headers["Nats-Msg-Id"] and event["source"] == "web"
            received = event["receivedAt"]
            assert message.headers["Intilery-Partition"] == f"dt={received[:10]}/hr={received[11:13]}"
        assert orjson.loads(stored[1].data)["properties"] == {"total": 12.5}
        dead = [m for m in messages if m.subject == "intilery.rejected.web"]
        assert len(dead) == 1 and orjson.loads(dead[0].data)["code"] == "unknown_type"
        assert "Nats-Msg-Id" not in (dead[0].headers or {})

    async def test_a_retry_through_another_collector_is_stored_once(self, nats_server, collectors, session):
        """The same messageIds sent to two collectors are both answered 200 and stored once (JetStream dedup)."""
        first = await collectors("c1", *nats_args(nats_server.url))
        second = await collectors("c2", *nats_args(nats_server.url))
        batch = [track(f"dup-{i}") for i in range(5)]
        for collector in (first, second, first):
            status, body, _ = await post_batch(session, collector.url, batch)
            assert status == 200 and body["accepted"] == 5
        messages = await stream_messages(nats_server.url)
        assert sorted(m.headers["Nats-Msg-Id"] for m in messages) == [f"web/dup-{i}" for i in range(5)]
        async with session.get(second.url + "/metrics") as answer:
            assert metric(await answer.text(), "intilery_nats_duplicates_total") == 5

    @pytest.mark.parametrize("stream", ["error", "duplicate"])
    async def test_the_puback_is_read_as_json_not_searched(self, nats_server, collectors, session, stream):
        """A stream whose name is a PubAck field ("error", "duplicate") still gets plain successes."""
        collector = await collectors("c1", *nats_args(nats_server.url, "--nats-stream", stream))
        status, body, _ = await post_batch(session, collector.url, [track("p1"), track("p2")])
        assert status == 200 and body["accepted"] == 2, body
        async with session.get(collector.url + "/metrics") as answer:
            assert metric(await answer.text(), "intilery_nats_duplicates_total") == 0
        assert len(await stream_messages(nats_server.url, stream)) == 2

    async def test_the_same_message_id_from_two_sources_is_stored_for_each(self, nats_server, collectors, session):
        """JetStream's duplicate window is keyed by source and messageId, as the collector's filter is."""
        two = [{"name": "web", "write_key": "wk_test"}, {"name": "app", "write_key": "wk_app"}]
        collector = await collectors("c1", *nats_args(nats_server.url), sources=two)
        for key in ("wk_test", "wk_app"):
            status, body, _ = await post_batch(session, collector.url, [track("shared")], key=key)
            assert status == 200 and body["accepted"] == 1
        async with session.get(collector.url + "/metrics") as answer:
            assert metric(await answer.text(), "intilery_nats_duplicates_total") == 0
        stored = sorted(m.headers["Nats-Msg-Id"] for m in await stream_messages(nats_server.url))
        assert stored == ["app/shared", "web/shared"]

    async def test_archive_output_matches_the_file_store(self, tmp_path, nats_server, collectors, archives, session):
        """The same requests to a file-store collector and a NATS collector + archive give the same stored events."""
        file_collector = await collectors("file")
        nats_collector = await collectors("nats", *nats_args(nats_server.url))
        batches = [
            [track(f"same-{n}-{i}", properties={"i": i}, originalTimestamp="2026-01-01T00:00:00.000Z") for i in range(20)]
            + [{"type": "identify", "userId": f"u{n}", "traits": {"plan": "pro"}, "messageId": f"id-{n}"}, {"type": 3}]
            for n in range(5)
        ]
        for batch in batches:
            for collector in (file_collector, nats_collector):
                status, _, _ = await post_batch(session, collector.url, batch)
                assert status == 200
        out = tmp_path / "archived"
        archive = await archives(out, nats_server.url)
        await eventually(lambda: consumer_drained(nats_server.url), what="the archive to catch up")
        assert await asyncio.to_thread(archive.stop) == 0

        def comparable(events):
            # receivedAt (and the timestamp derived from it) is each collector's own clock
            return sorted((orjson.dumps({k: v for k, v in e.items() if k not in ("receivedAt", "timestamp")},
                                        option=orjson.OPT_SORT_KEYS) for e in events))  # fmt: skip

        file_events = list(read_events(file_collector.data_dir))
        archived = list(read_events(out))
        assert len(archived) == 5 * 21
        assert comparable(archived) == comparable(file_events)
        assert len(output_lines(out, "rejected")) == len(list(read_events(file_collector.data_dir, "rejected"))) == 5
        for path, content in output_segments(out).items():  # partitioned by receivedAt, as the file store does
            for line in content.splitlines():
                received = orjson.loads(line)["receivedAt"]
                assert path.parent.relative_to(out / "events").as_posix() == f"dt={received[:10]}/hr={received[11:13]}"


class TestStartup:
    @pytest.mark.parametrize(
        ("existing", "flags", "complaint"),
        [
            pytest.param({"duplicate_window": 60.0}, [], "duplicate window 60 s", id="duplicate-window"),
            pytest.param({"max_age": 3600.0}, [], "max age 1 h", id="retention"),
            pytest.param({}, ["--nats-replicas", "3"], "3 replicas", id="replicas-on-a-single-server"),
        ],
    )
    async def test_a_stream_that_does_not_match_stops_the_start(self, nats_server, collectors, existing, flags, complaint):
        """An existing stream with other settings is a configuration error naming the difference, never changed."""
        import nats

        if existing:
            nc = await nats.connect(nats_server.url)
            await nc.jetstream().add_stream(
                name="INTILERY", subjects=["intilery.events.>", "intilery.rejected.>"], **existing
            )
            await nc.close()
        with pytest.raises(RuntimeError) as failure:
            await collectors("c1", *nats_args(nats_server.url, *flags))
        assert "collector exited with 2" in str(failure.value)
        assert "configuration error" in str(failure.value) and complaint in str(failure.value)
        if existing:
            nc = await nats.connect(nats_server.url)
            config = (await nc.jetstream().stream_info("INTILERY")).config
            await nc.close()
            assert config.duplicate_window == existing.get("duplicate_window", 120.0)

    async def test_starts_without_nats_and_heals_when_it_comes(self, tmp_path, collectors, session):
        """Started with NATS down: not ready and 503 + Retry-After, then ready without a restart once NATS is up."""
        require_nats_server()
        server = NatsServer(tmp_path)  # its port, not started yet
        collector = await collectors("c1", *nats_args(server.url))
        status, body = await get_json(session, collector.url + "/readyz")
        assert status == 503 and "not connected to NATS" in body["reason"]
        status, body, headers = await post_batch(session, collector.url, [track("early")])
        assert status == 503 and body["code"] == "store_unavailable" and int(headers["Retry-After"]) > 0
        await asyncio.to_thread(server.start)
        try:
            await eventually(lambda: _status(session, collector.url + "/readyz", 200), what="readiness")
            status, _, _ = await post_batch(session, collector.url, [track("early")])
            assert status == 200
            assert [m.headers["Nats-Msg-Id"] for m in await stream_messages(server.url)] == ["web/early"]
        finally:
            server.kill()


async def _status(session, url: str, expected: int) -> bool:
    try:
        async with session.get(url) as answer:
            return answer.status == expected
    except aiohttp.ClientError:
        return False


async def _held(session, url: str) -> tuple[float, float]:
    """What the collector's store holds: (bytes in flight, messages awaiting their PubAck)."""
    async with session.get(url + "/metrics") as answer:
        text = await answer.text()
    return metric(text, "intilery_store_queue_bytes"), metric(text, "intilery_nats_inflight_messages")


class TestOutage:
    async def test_all_servers_down_then_back(self, nats_server, collectors, session):
        """NATS gone: every request is a 503 and nothing is held for it; NATS back: accepted again, no restart.

        "Prompt" and "bounded memory" are counted, not timed: each refused request is answered
        (not cut off by the session's deadline) and, even while 20 are in progress at once,
        leaves no byte and no message held by the store.
        """
        collector = await collectors("c1", *nats_args(nats_server.url))
        assert (await post_batch(session, collector.url, [track("before")]))[0] == 200
        await asyncio.to_thread(nats_server.kill)

        status, body, headers = await post_batch(session, collector.url, [track("during-0")])
        assert status == 503 and int(headers["Retry-After"]) > 0
        status, body = await get_json(session, collector.url + "/readyz")
        assert status == 503 and "not connected to NATS" in body["reason"]

        held = []
        for round in range(20):
            batches = [[track(f"flood-{round}-{n}-{i}", properties={"pad": "x" * 200}) for i in range(100)] for n in range(20)]
            *answers, during = await asyncio.gather(
                *(post_batch(session, collector.url, batch) for batch in batches), _held(session, collector.url)
            )
            assert {a[0] for a in answers} == {503}
            held += [during, await _held(session, collector.url)]
        assert set(held) == {(0, 0)}, f"refused requests left bytes or messages held: {max(held)}"

        await asyncio.to_thread(nats_server.start)
        await eventually(lambda: _status(session, collector.url + "/readyz", 200), what="readiness after NATS returned")
        status, body, _ = await post_batch(session, collector.url, [track("during-0"), track("after")])
        assert status == 200 and body["accepted"] == 2
        ids = [m.headers["Nats-Msg-Id"] for m in await stream_messages(nats_server.url)]
        assert ids == ["web/before", "web/during-0", "web/after"]

    async def test_unresponsive_server_gives_bounded_503s(self, nats_server, collectors, session):
        """A server that stops answering (SIGSTOP): every request a 503, bounded bytes in flight, then heals.

        The bytes in flight are sampled for as long as the flood lasts (each request ends by the
        publish timeout, or fails at the session's deadline): some are held, never more than the limit.
        """
        limit = 256 * 1024
        collector = await collectors("c1", *nats_args(nats_server.url), nats_publish_timeout=1.5, max_pending_bytes=limit)
        assert (await post_batch(session, collector.url, [track("before")]))[0] == 200
        os.kill(nats_server.proc.pid, signal.SIGSTOP)
        try:
            batches = [[track(f"stalled-{n}-{i}", properties={"pad": "x" * 200}) for i in range(100)] for n in range(30)]
            flood = [asyncio.create_task(post_batch(session, collector.url, batch)) for batch in batches]
            in_flight = []
            while not all(task.done() for task in flood):
                in_flight.append((await _held(session, collector.url))[0])
                await asyncio.sleep(0.05)
            answers = await asyncio.gather(*flood)
            assert 0 < max(in_flight) <= limit, in_flight
            assert {a[0] for a in answers} == {503}
            assert {a[1]["code"] for a in answers} == {"store_unavailable", "store_overloaded"}
            status, body = await get_json(session, collector.url + "/readyz")
            assert status == 503 and body["reason"]
        finally:
            os.kill(nats_server.proc.pid, signal.SIGCONT)

        async def accepted() -> bool:  # a client retrying, as the tag and server libraries do
            return (await post_batch(session, collector.url, [track("after")]))[0] == 200

        await eventually(accepted, what="an accepted request after SIGCONT")
        assert await _status(session, collector.url + "/readyz", 200)


class TestCredentials:
    async def test_a_password_in_the_url_is_never_logged(self, tmp_path, collectors, session):
        """Connect, lose the server, reconnect: no log line (nor /readyz) holds the URL's password."""
        require_nats_server()
        server = NatsServer(tmp_path, auth=("intilery", "s3cret-pass")).start()
        try:
            url = f"nats://intilery:s3cret-pass@127.0.0.1:{server.port}"
            collector = await collectors("c1", *nats_args(url))
            assert (await post_batch(session, collector.url, [track("before")]))[0] == 200
            await asyncio.to_thread(server.kill)
            await eventually(lambda: _status(session, collector.url + "/readyz", 503), what="/readyz to see the outage")
            status, body = await get_json(session, collector.url + "/readyz")
            await asyncio.to_thread(server.start)
            await eventually(lambda: b"reconnected to NATS" in collector.log.read_bytes(), what="the reconnect log line")
            assert (await post_batch(session, collector.url, [track("after")]))[0] == 200
        finally:
            server.kill()
        assert "s3cret-pass" not in str(body)
        assert b"s3cret-pass" not in collector.log.read_bytes()
