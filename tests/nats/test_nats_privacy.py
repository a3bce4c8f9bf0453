"""Privacy requests on the NATS store: a 3-replica stream and the archive consumer's output (issue 14)."""

from __future__ import annotations

import asyncio

import orjson
from natsprocs import cluster_url, consumer_drained, stream_messages

from helpers import eventually
from privacy.people import ANN, BOB, PROFILES, TOKEN, WRITE, call, events_of, mentions, person_ids, regulate, seed, status_of


def mentions_in(messages, person: dict) -> list[int]:
    """Stream sequences whose data names the person (any of their identifiers, any case)."""
    needles = [i.lower().encode() for i in person_ids(person)]
    return [m.seq for m in messages if any(n in m.data.lower() for n in needles)]


def of(messages, person: dict) -> list[str]:
    """The messageIds of the person's events in the stream."""
    ids = set(person_ids(person))
    found = []
    for message in messages:
        event = orjson.loads(message.data)
        if "messageId" in event and {event.get("userId"), event.get("anonymousId")} & ids:
            found.append(event["messageId"])
    return sorted(found)


async def test_suppress_with_delete_on_a_3_replica_stream_and_its_archive(tmp_path, nats_cluster, collectors, archives):
    url = cluster_url(nats_cluster)
    data_dir = tmp_path / "shared"  # the archive's output; the collector keeps its privacy state and profiles here
    await asyncio.to_thread(seed, data_dir, [ANN, BOB])  # older history, archived before
    collector = await collectors("c1", store="nats", nats_url=url, nats_replicas=3, access_token=TOKEN,
                                 data_dir=data_dir)  # fmt: skip
    elsewhere = await collectors("c2", store="nats", nats_url=url, nats_replicas=3, access_token=TOKEN,
                                 data_dir=tmp_path / "c2-data")  # another host: no data directory shared
    await archives(data_dir, url)
    for person in (ANN, BOB):
        for n in range(5):
            batch = [{"type": "track", "userId": person["user"], "event": f"Live {n}", "properties": {"email": person["email"]}},
                     {"type": "page", "anonymousId": person["anons"][n % len(person["anons"])]},
                     {"type": "identify", "anonymousId": person["anons"][n % len(person["anons"])],
                      "userId": person["user"], "traits": {"email": person["email"]}},
                     {"type": "track", "userId": person["user"]}]  # no event name: a dead letter in the stream
            status, _ = await asyncio.to_thread(call, collector.url + "/v1/batch", "POST", {"batch": batch}, WRITE)
            assert status == 200
    await eventually(lambda: consumer_drained(url), timeout=120, what="the archive to catch up")

    def built() -> bool:
        status, body = call(f"{collector.url}{PROFILES}/user_id:{ANN['user']}/external_ids")
        return status == 200 and len(body["data"]) == len(person_ids(ANN))

    await eventually(lambda: asyncio.to_thread(built), timeout=120, what="the profile built from the stream")
    before = await stream_messages(url)
    bob_stream, bob_files = of(before, BOB), events_of(data_dir, BOB)
    assert mentions_in(before, ANN) and len(bob_stream) == 15

    regulate_id = await asyncio.to_thread(regulate, collector.url, "SUPPRESS_WITH_DELETE", "EMAIL", [ANN["email"]])

    async def finished():
        record = await asyncio.to_thread(status_of, collector.url, regulate_id)
        assert record["status"] != "FAILED", record
        return record if record["status"] == "FINISHED" else None

    record = await eventually(finished, timeout=120, what="the erasure")
    after = await stream_messages(url)  # the whole stream, read back
    assert mentions_in(after, ANN) == []
    assert of(after, BOB) == bob_stream
    assert record["stores"]["nats"]["removed"] == 20  # 15 events and 5 dead letters
    assert mentions(data_dir, person_ids(ANN)) == {}
    assert events_of(data_dir, BOB) == bob_files
    assert (await asyncio.to_thread(call, f"{collector.url}{PROFILES}/email:{ANN['email']}/traits"))[0] == 404

    status, body = await asyncio.to_thread(call, collector.url + "/v1/track", "POST",
                                           {"userId": ANN["user"], "event": "After"}, WRITE)  # fmt: skip
    assert status == 200 and body["accepted"] == 1
    assert mentions_in(await stream_messages(url), ANN) == []
    # every replica's message store of the stream has the messages overwritten (erase, not only unindexed);
    # the replicas' Raft logs (jetstream/$SYS/_js_/) keep the published entries until JetStream compacts
    # them: README "Privacy requests" says so
    for server in nats_cluster:
        stream_files = [p for p in (server.workdir / "store" / "jetstream").glob("*/streams/INTILERY") if p.is_dir()]
        assert stream_files and all(mentions(p, person_ids(ANN)) == {} for p in stream_files), server.name

    # the collector on the other host has the list from the NATS bucket (within a second)
    sent = iter(range(1000))

    async def dropped_elsewhere() -> bool:
        message_id = f"elsewhere-{next(sent)}"
        status, _ = await asyncio.to_thread(call, elsewhere.url + "/v1/page", "POST",
                                            {"anonymousId": ANN["anons"][1], "messageId": message_id}, WRITE)  # fmt: skip
        assert status == 200
        return all(orjson.loads(m.data).get("messageId") != message_id for m in await stream_messages(url))

    await eventually(dropped_elsewhere, timeout=60, what="the other host's collector to drop her events")
    count = len(await stream_messages(url))
    for _ in range(3):
        assert await dropped_elsewhere()
    assert len(await stream_messages(url)) == count
    assert (await asyncio.to_thread(call, elsewhere.url + "/metrics", headers={}))[0] == 200

