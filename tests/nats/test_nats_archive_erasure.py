"""An erasure reaches every ``intilery archive``'s own output directory (issue 27 item 5, review D4).

The collector and the archive share no directory (as on two hosts): the request reaches the
archive through JetStream (the bucket ``INTILERY_PRIVACY``), with the salted hashes of the
person's identifiers only. The stream is erased first, then the archives are asked; the
regulation lists each registered archive and is FINISHED only when every one has erased the
person from its output.
"""

from __future__ import annotations

import asyncio
import gzip
import signal
import subprocess
import sys
from pathlib import Path

import orjson
from natsprocs import consumer_drained, output_lines, stream_messages

from helpers import eventually
from privacy.people import TOKEN, WRITE, call, regulate, status_of

ANN, BOB = "42", "bob-7"  # Ann's userId is short and numeric; Bob's events carry a sku "42"


def batch_of(user: str, tag: str, n: int) -> list[dict]:
    events = [{"type": "track", "userId": user, "event": "Viewed", "messageId": f"{tag}-{user}-{i}",
               "properties": {"sku": ANN}} for i in range(n)]  # fmt: skip
    events.append({"type": "track", "userId": user, "messageId": f"{tag}-{user}-dead"})  # no event name: a dead letter
    return events


async def send(collector, tag: str, rounds: int, per_round: int = 50, users=(ANN, BOB)) -> dict[str, set[str]]:
    """Ann's and Bob's events through the collector; the messageIds sent per user (dead letters aside)."""
    sent: dict[str, set[str]] = {ANN: set(), BOB: set()}
    for r in range(rounds):
        for user in users:
            events = batch_of(user, f"{tag}{r}", per_round)
            status, body = await asyncio.to_thread(call, collector.url + "/v1/batch", "POST", {"batch": events}, WRITE)
            assert status == 200, body
            sent[user] |= {e["messageId"] for e in events[:-1]}
    return sent


def archived(data_dir: Path) -> dict[str, list[str]]:
    """The archive's events by userId (messageIds, duplicates kept)."""
    found: dict[str, list[str]] = {}
    for line in output_lines(data_dir):
        event = orjson.loads(line)
        found.setdefault(event.get("userId"), []).append(event["messageId"])
    return found


def dead_letters(data_dir: Path) -> list[bytes]:
    found = []
    for path in sorted((Path(data_dir) / "rejected").glob("**/part-*")):
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        found += [line for line in data.splitlines() if line.strip()]  # an erased line is left blank
    return found


def of_user(lines: list[bytes], user: str) -> list[bytes]:
    """The dead letters of a user's messages."""
    return [line for line in lines if (orjson.loads(line).get("payload") or {}).get("userId") == user]


async def record_of(collector, regulate_id: str) -> dict:
    record = await asyncio.to_thread(status_of, collector.url, regulate_id)
    assert record["status"] != "FAILED", record
    return record


async def test_an_erasure_reaches_an_archive_that_is_still_consuming(tmp_path, nats_server, collectors, archives):
    url = nats_server.url
    collector = await collectors("c1", store="nats", nats_url=url, access_token=TOKEN, data_dir=tmp_path / "c1-data")
    output = tmp_path / "archive-out"  # the archive's own directory (another host)
    archive = await archives(output, url, "--batch", "20")
    sent = await send(collector, "a", rounds=4)
    await eventually(lambda: consumer_drained(url), timeout=120, what="the archive to catch up")
    assert len(of_user(dead_letters(output), ANN)) == 4

    # the archive falls behind: it is frozen with the person's newest events still in the stream
    archive.proc.send_signal(signal.SIGSTOP)
    later = await send(collector, "b", rounds=4)
    assert not await consumer_drained(url)
    regulate_id = await asyncio.to_thread(regulate, collector.url, "SUPPRESS_WITH_DELETE", "USER_ID", [ANN])

    async def waiting_for_the_archive():
        record = await record_of(collector, regulate_id)
        archives_seen = record["stores"].get("archives", {})
        return record if archives_seen and all(a["status"] == "PENDING" for a in archives_seen.values()) else None

    record = await eventually(waiting_for_the_archive, timeout=120, what="the job to wait for the frozen archive")
    assert record["status"] != "FINISHED" and len(record["stores"]["archives"]) == 1
    in_stream = [orjson.loads(m.data) for m in await stream_messages(url)]
    assert not [e for e in in_stream if e.get("userId") == ANN]  # the stream first
    assert not [e for e in in_stream if (e.get("payload") or {}).get("userId") == ANN]

    archive.proc.send_signal(signal.SIGCONT)

    async def finished():
        record = await record_of(collector, regulate_id)
        return record if record["status"] == "FINISHED" else None

    record = await eventually(finished, timeout=120, what="the erasure")
    [(name, done)] = record["stores"]["archives"].items()
    assert done["status"] == "DONE" and done["removed"] >= len(sent[ANN]) + 4 and done["error"] is None, done
    await eventually(lambda: consumer_drained(url), timeout=120, what="the archive to catch up")
    found = archived(output)
    assert ANN not in found
    assert sorted(found[BOB]) == sorted(sent[BOB] | later[BOB])  # every one of Bob's, once
    assert of_user(dead_letters(output), ANN) == [] and len(of_user(dead_letters(output), BOB)) == 8
    assert archive.proc.poll() is None
    # the archive's log and files never held Ann's identifier as a request (hashes only)
    assert b'"42"' not in archive.log.read_bytes()


async def test_a_stopped_archive_keeps_the_job_waiting_until_it_is_back(tmp_path, nats_server, collectors, archives):
    url = nats_server.url
    collector = await collectors("c1", store="nats", nats_url=url, access_token=TOKEN, data_dir=tmp_path / "c1-data")
    output = tmp_path / "archive-out"
    archive = await archives(output, url)
    sent = await send(collector, "a", rounds=2)
    await eventually(lambda: consumer_drained(url), timeout=120, what="the archive to catch up")
    await asyncio.to_thread(archive.stop)  # registered, and down

    regulate_id = await asyncio.to_thread(regulate, collector.url, "DELETE_ONLY", "USER_ID", [ANN])

    async def waiting():
        record = await record_of(collector, regulate_id)
        listed = record["stores"].get("archives", {})
        return record if listed and all(a["status"] == "PENDING" for a in listed.values()) else None

    await eventually(waiting, timeout=120, what="the job to list the stopped archive as pending")
    for _ in range(3):  # it keeps waiting: looked at again after several of the job's rounds
        record = await eventually(waiting, timeout=60, what="the job to still wait")
        assert record["status"] in ("RUNNING", "INITIALIZED")
    assert archived(output)[ANN]  # still there: the archive is down

    await asyncio.to_thread(archive.start)

    async def finished():
        record = await record_of(collector, regulate_id)
        return record if record["status"] == "FINISHED" else None

    record = await eventually(finished, timeout=120, what="the erasure once the archive is back")
    [(name, done)] = record["stores"]["archives"].items()
    assert done["status"] == "DONE" and done["removed"] == len(sent[ANN]) + 2, done
    found = archived(output)
    assert ANN not in found and sorted(found[BOB]) == sorted(sent[BOB])
    assert of_user(dead_letters(output), ANN) == [] and len(of_user(dead_letters(output), BOB)) == 2

    # taken away for good: forgotten, so erasures no longer wait for it
    await asyncio.to_thread(archive.stop)
    forget = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "collector", "archive", "--nats-url", url,
                                     "--data-dir", str(output), "--forget", name], capture_output=True, timeout=60)  # fmt: skip
    assert forget.returncode == 0, forget.stdout + forget.stderr
    regulate_id = await asyncio.to_thread(regulate, collector.url, "DELETE_ONLY", "USER_ID", [BOB])
    record = await eventually(finished, timeout=120, what="an erasure with no archive registered")
    assert record["stores"]["archives"] == {}


async def test_an_erasure_while_the_archive_writes(tmp_path, nats_server, collectors, archives):
    """Not frozen: the archive goes on writing (small batches) while it erases; every line of the
    other person stays, once, and none of hers is left."""
    url = nats_server.url
    collector = await collectors("c1", store="nats", nats_url=url, access_token=TOKEN, data_dir=tmp_path / "c1-data")
    output = tmp_path / "archive-out"
    sent = await send(collector, "a", rounds=20)
    await archives(output, url, "--batch", "1")
    await eventually(lambda: any((output / "events").glob("**/part-*")), timeout=60, what="the archive to start writing")
    regulate_id = await asyncio.to_thread(regulate, collector.url, "SUPPRESS_WITH_DELETE", "USER_ID", [ANN])
    later = await send(collector, "b", rounds=2, users=(BOB,))  # his go on meanwhile

    async def finished():
        record = await record_of(collector, regulate_id)
        return record if record["status"] == "FINISHED" else None

    record = await eventually(finished, timeout=180, what="the erasure")
    assert [a["status"] for a in record["stores"]["archives"].values()] == ["DONE"]
    await eventually(lambda: consumer_drained(url), timeout=180, what="the archive to catch up")
    found = archived(output)
    assert ANN not in found
    assert sorted(found[BOB]) == sorted(sent[BOB] | later[BOB])
    assert of_user(dead_letters(output), ANN) == [] and len(of_user(dead_letters(output), BOB)) == 22
