"""``Audience Entered/Exited`` rows of the profile database appended to the log exactly once
(``collector/engage/audiences/announce.py``), by real collector processes killed with SIGKILL
while they drain: before the append, during it, and between the append and the DELETE; on the
file store, with ``--workers``, on the NATS store, and with PostgreSQL shared by two collectors."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from collector.profiles.database import open_store
from helpers import CollectorProcess, assert_whole, read_events, wait_until
from tests.profiles.conftest import postgres  # noqa: F401 (the session's PostgreSQL server)

WHEN = "2026-12-08T02:00:00.000Z"
TOKEN = "at_announce"


def announce_table(target: str | Path) -> None:
    """The profile database with the audiences' tables (as the builder makes it)."""
    open_store(str(target)).close()


def message(n: int, kind: str = "Entered") -> dict:
    return {"type": "track", "event": f"Audience {kind}", "userId": f"u{n}", "anonymousId": f"a{n}",
            "properties": {"audience_key": "vip", "audience_name": "VIPs"}, "messageId": str(uuid.UUID(int=n)),
            "timestamp": WHEN}  # fmt: skip


def insert(target: str | Path, first: int, count: int, kind: str = "Entered") -> list[str]:
    """Rows ``first`` .. ``first + count - 1`` (their seq), as the builder commits them; their ids."""
    store = open_store(str(target))
    try:
        rows = [(str(uuid.UUID(int=n)), n, f"p{n}", json.dumps(message(n, kind))) for n in range(first, first + count)]
        store._many("INSERT INTO engage_announce (id, seq, profile_id, message) VALUES (?, ?, ?, ?)", rows)
        store.commit()
    finally:
        store.close()
    return [row[0] for row in rows]


def pending(target: str | Path) -> int:
    store = open_store(str(target), reads_only=True)
    try:
        return store._all("SELECT COUNT(*) FROM engage_announce")[0][0]
    finally:
        store.close()


def announced(data_dir: Path) -> list[dict]:
    return [e for e in read_events(data_dir) if e.get("source") == "intilery"]


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and 'source="intilery"' in line)  # fmt: skip


def collector(tmp_path: Path, *args: str, name: str = "c", **settings) -> CollectorProcess:
    workdir = tmp_path / name
    workdir.mkdir(exist_ok=True)
    return CollectorProcess(workdir, args=["--no-profiles", *args], access_token=TOKEN, **settings)


def test_rows_become_server_side_tracks_of_the_source_intilery_in_seq_order_and_are_deleted(tmp_path):
    """Rows waiting at start and a row committed while the collector runs are stored once each, as
    the collector stores a server-side track (source intilery, no client address), in seq order,
    and deleted; a row that is not a message goes to rejected/ with a sentence."""
    proc = collector(tmp_path)
    db = proc.data_dir / "profiles.db"
    announce_table(db)
    ids = insert(db, 3, 2) + insert(db, 5, 1, "Exited")
    store = open_store(str(db))
    store._run("INSERT INTO engage_announce (id, seq, profile_id, message) VALUES (?, ?, ?, ?)",
               ("bad-row", 1, "p1", "not json"))  # fmt: skip
    store.commit()
    store.close()
    with proc:
        wait_until(lambda: len(announced(proc.data_dir)) == 3 and pending(db) == 0, 30, what="the rows in the log")
        ids += insert(db, 6, 1)
        wait_until(lambda: len(announced(proc.data_dir)) == 4 and pending(db) == 0, 30, what="a new row in the log")
        assert metric(proc.url, "intilery_events_accepted_total") == 4
    events = announced(proc.data_dir)
    assert [e["messageId"] for e in events] == ids  # seq order
    first = events[0]
    assert first["type"] == "track" and first["event"] == "Audience Entered" and events[2]["event"] == "Audience Exited"
    assert first["properties"] == {"audience_key": "vip", "audience_name": "VIPs"}
    assert (first["userId"], first["anonymousId"], first["source"]) == ("u3", "a3", "intilery")
    assert first["originalTimestamp"] == first["timestamp"] == WHEN and first["receivedAt"] >= WHEN
    assert "ip" not in first["context"] and "userAgent" not in first["context"]
    rejected = [r for r in read_events(proc.data_dir, "rejected")]
    assert [(r["code"], r["message"], r["payload"]) for r in rejected] == [
        ("invalid_message", "a message must be a JSON object", "not json")
    ]


def test_a_sigkill_between_the_append_and_the_delete_stores_each_event_once(tmp_path):
    """The DELETE is held back (the test holds SQLite's write lock) until the collector has appended
    the rows, then the collector is killed: the rows are still pending, the next collector appends
    them again, and its duplicate filter (seeded from the log) drops every one."""
    proc = collector(tmp_path)
    db = proc.data_dir / "profiles.db"
    announce_table(db)
    ids = insert(db, 1, 700)  # two batches
    holder = sqlite3.connect(db, timeout=30)
    holder.execute("BEGIN IMMEDIATE")  # the announcer's DELETE waits for this lock
    try:
        proc.start()
        wait_until(lambda: len(announced(proc.data_dir)) >= 500, 30, what="the first batch appended")
        proc.kill()
    finally:
        holder.rollback()
        holder.close()
    assert pending(db) == 700  # appended, never deleted
    with proc:
        wait_until(lambda: pending(db) == 0, 30, what="the rows drained after the restart")
        assert metric(proc.url, "intilery_events_duplicate_total") == 500  # appended again: dropped
    assert Counter(e["messageId"] for e in announced(proc.data_dir)) == Counter(ids)
    assert_whole(proc.data_dir)


def test_sigkill_at_any_point_while_draining_stores_each_event_exactly_once(tmp_path):
    """Collectors killed (SIGKILL) again and again at random moments while they drain 20,000 rows,
    more rows committed between the kills, then one left to finish: every row is in the log
    exactly once, the log whole, the table empty."""
    rng = random.Random(29)
    proc = collector(tmp_path)
    db = proc.data_dir / "profiles.db"
    announce_table(db)
    ids = insert(db, 1, 20_000)
    for round_ in range(8):
        proc.start()
        threading.Event().wait(rng.uniform(0, 0.6))  # not a wait for a result: the kill lands anywhere
        proc.kill()
        ids += insert(db, 100_000 + round_ * 500, 500)
    assert pending(db) > 0  # the kills came while it drained
    with proc:
        wait_until(lambda: pending(db) == 0, 60, what="the rows drained")
    assert Counter(e["messageId"] for e in announced(proc.data_dir)) == Counter(ids)
    assert_whole(proc.data_dir)


def test_with_workers_one_process_appends_and_each_event_is_stored_once(tmp_path):
    """``--workers 3``: one worker, the one holding the host's lock, drains (through the host writer),
    and the rows are stored once each."""
    proc = collector(tmp_path, "--workers", "3")
    db = proc.data_dir / "profiles.db"
    announce_table(db)
    ids = insert(db, 1, 5_000)
    with proc:
        wait_until(lambda: pending(db) == 0, 60, what="the rows drained")
        ids += insert(db, 10_000, 3)
        wait_until(lambda: pending(db) == 0, 60, what="new rows drained")
    assert proc.log.read_text().count("appending audience events to the log") == 1
    assert Counter(e["messageId"] for e in announced(proc.data_dir)) == Counter(ids)


@pytest.fixture
def nats_url(tmp_path):
    from tests.nats.natsprocs import NatsServer, require_nats_server

    require_nats_server()
    server = NatsServer(tmp_path).start()
    yield server.url
    server.kill()


async def stream_ids(nats_url: str) -> Counter:
    from tests.nats.natsprocs import stream_messages

    found = Counter()
    for msg in await stream_messages(nats_url):
        event = json.loads(msg.data)
        if event.get("source") == "intilery":
            found[event["messageId"]] += 1
    return found


async def test_on_the_nats_store_a_sigkill_between_publish_and_delete_stores_each_event_once(tmp_path, nats_url):
    """On the NATS store the collector's filter starts empty: a batch published again after a kill
    between the publish and the DELETE is dropped by JetStream's duplicate window (Nats-Msg-Id),
    and random kills while it drains leave every row in the stream exactly once."""
    proc = collector(tmp_path, "--store", "nats", "--nats-url", nats_url)
    db = proc.data_dir / "profiles.db"
    announce_table(db)
    ids = insert(db, 1, 700)
    holder = sqlite3.connect(db, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    try:
        await asyncio.to_thread(proc.start)
        deadline = asyncio.get_running_loop().time() + 30
        while sum((await stream_ids(nats_url)).values()) < 500:
            assert asyncio.get_running_loop().time() < deadline, "the first batch was not published"
            await asyncio.sleep(0.1)
        proc.kill()
    finally:
        holder.rollback()
        holder.close()
    assert pending(db) == 700
    rng = random.Random(7)
    ids += insert(db, 1000, 5_000)
    for _ in range(4):
        await asyncio.to_thread(proc.start)
        await asyncio.sleep(rng.uniform(0, 0.5))  # not a wait for a result: the kill lands anywhere
        proc.kill()
    await asyncio.to_thread(proc.start)
    try:
        await asyncio.to_thread(wait_until, lambda: pending(db) == 0, 60, 0.1, "the rows drained")
    finally:
        proc.stop()
    assert await stream_ids(nats_url) == Counter(ids)


def test_two_collectors_sharing_postgresql_claim_rows_apart_and_store_each_once(tmp_path, postgres):
    """Two collectors (two hosts: a data directory each) drain one PostgreSQL table together: rows
    are claimed with SKIP LOCKED, so each row is in exactly one of the two logs, once; their
    connections cut by the server, they connect again and go on."""
    import psycopg

    url = postgres.database()
    announce_table(url)
    one = collector(tmp_path, "--profiles-db", url, name="one")
    two = collector(tmp_path, "--profiles-db", url, name="two")
    ids = []
    with one, two:  # both look at the table every 0.2 s, then the rows come
        for first in range(1, 20_001, 2_000):
            ids += insert(url, first, 2_000)
        wait_until(lambda: pending(url) == 0, 60, what="the rows drained")
        with psycopg.connect(url, autocommit=True) as admin:
            cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()  # fmt: skip
        assert len(cut) >= 2
        ids += insert(url, 50_000, 100)
        wait_until(lambda: pending(url) == 0, 60, what="rows drained after the connections were cut")
    first = Counter(e["messageId"] for e in announced(one.data_dir))
    second = Counter(e["messageId"] for e in announced(two.data_dir))
    assert first and second  # both took a share
    assert first + second == Counter(ids)


def test_events_that_make_a_person_enter_and_leave_an_audience_append_one_entered_and_one_exited(tmp_path):
    """End to end, one collector with its builder: an order makes Ann a recent buyer (a 2-second
    window), a second order keeps her in, and the window passing with no new order takes her out:
    one ``Audience Entered`` and one ``Audience Exited`` in the log, hers, of the source intilery."""
    workdir = tmp_path / "c"
    (workdir / "engage" / "audiences").mkdir(parents=True)
    (workdir / "engage" / "audiences" / "buyers.yaml").write_text(
        "name: Recent buyers\ncondition: {event: Order Completed, within: 2s}\n"
    )
    proc = CollectorProcess(workdir, access_token=TOKEN)

    def track(message_id: str) -> None:
        body = {"type": "track", "event": "Order Completed", "userId": "ann", "anonymousId": "a-ann",
                "messageId": message_id}  # fmt: skip
        request = urllib.request.Request(proc.url + "/v1/track", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "X-Write-Key": "wk_test"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    def audience_events() -> list[dict]:
        return [e for e in announced(proc.data_dir) if e["event"].startswith("Audience ")]

    with proc:
        track("order-1")
        entered = wait_until(audience_events, 30, 0.05, "Audience Entered in the log")
        track("order-2")
        wait_until(lambda: len(audience_events()) == 2, 60, 0.1, "Audience Exited when the window passed")
    events = audience_events()
    assert [e["event"] for e in events] == ["Audience Entered", "Audience Exited"]
    assert entered[0]["messageId"] == events[0]["messageId"]
    for event in events:
        assert event["properties"] == {"audience_key": "buyers", "audience_name": "Recent buyers"}
        assert (event["type"], event["userId"], event["anonymousId"], event["source"]) == ("track", "ann", "a-ann", "intilery")
    assert len({e["messageId"] for e in events}) == 2
