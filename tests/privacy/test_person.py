"""The person is exactly the person (issue 27): a privacy request on a realistic shop touches
nobody else. Ann (userId ``42``, as shops number their customers) signs in on a shared kiosk;
Bob signs in later on the same kiosk without a reset; Carl orders the product whose sku is
``"42"``; Dee searches for ``42``. Ann's export, erasure and suppression must leave every event of
the other three where it is, counted in their profiles exactly as before."""

from __future__ import annotations

import asyncio
import os
import json
import threading
import time

import orjson
import pytest
from helpers import CollectorProcess, assert_whole, wait_until
from privacy.people import PROFILES, TOKEN, WRITE, call, regulate, status_of

from collector.log.layout import EVENTS, iso_ms
from collector.log.reader import Reader

KIOSK = "kiosk-7"


def shop_day() -> list[dict]:
    """Ann's 4 events, then 8 of Bob, Carl and Dee, each with a messageId naming its person."""
    ann = [
        {"type": "page", "anonymousId": KIOSK, "name": "Home"},
        {"type": "identify", "anonymousId": KIOSK, "userId": 42, "traits": {"email": "ann@shop.test"}},
        {"type": "track", "anonymousId": KIOSK, "userId": "42", "event": "Product Viewed", "properties": {"sku": "7"}},
        {"type": "track", "anonymousId": KIOSK, "userId": "42", "event": "Signed Out"},
    ]
    others = [  # Bob on the same kiosk, signed in: his, not Ann's
        ("bob", {"type": "identify", "anonymousId": KIOSK, "userId": "bob", "traits": {"email": "bob@shop.test"}}),
        ("bob", {"type": "track", "anonymousId": KIOSK, "userId": "bob", "event": "Product Viewed",
                 "properties": {"sku": "9", "note": "42"}}),
        ("bob", {"type": "track", "anonymousId": KIOSK, "userId": "bob", "event": "Cart Viewed"}),
        ("carl", {"type": "identify", "anonymousId": "carl-phone", "userId": "carl"}),
        ("carl", {"type": "track", "anonymousId": "carl-phone", "userId": "carl", "event": "Order Completed",
                  "properties": {"sku": "42", "quantity": 42, "products": [{"sku": "42"}], "revenue": 42}}),
        ("carl", {"type": "track", "anonymousId": "carl-phone", "userId": "carl", "event": "Note",
                  "properties": {"text": "ann@shop.test recommended it"}}),
        ("dee", {"type": "track", "anonymousId": "dee-laptop", "userId": "dee", "event": "Products Searched",
                 "properties": {"query": "42", "at": "13:42:00"}}),
        ("dee", {"type": "page", "anonymousId": "dee-laptop", "userId": "dee", "name": "42"}),
    ]  # fmt: skip
    out = []
    for n, event in enumerate(ann):
        out.append({**event, "messageId": f"ann-{n}"})
    for n, (who, event) in enumerate(others):
        out.append({**event, "messageId": f"{who}-{n}"})
    return out


def stored_ids(data_dir) -> list[str]:
    return sorted(e["messageId"] for e in Reader(data_dir / EVENTS).events())


def count_of(url: str, user: str) -> int | None:
    status, body = call(f"{url}{PROFILES}/user_id:{user}/traits")
    return body["traits"]["event_count"] if status == 200 else None


def test_ann_on_a_shared_kiosk_export_erase_and_suppress_touch_nobody_else(tmp_path):
    """The issue's reproduction: before the fix, Ann's export held Bob's signed-in events, her
    erasure deleted 5 of the other customers' 8 events, and Bob's new kiosk events were dropped."""
    proc = CollectorProcess(tmp_path, access_token=TOKEN).start()
    try:
        for event in shop_day():  # one at a time, in order: the kiosk is Ann's first
            assert call(proc.url + "/v1/batch", "POST", {"batch": [event]}, WRITE)[0] == 200
        others = [m for m in stored_ids(proc.data_dir) if not m.startswith("ann-")]
        assert len(others) == 8
        counts = {"bob": 3, "carl": 3, "dee": 2}
        wait_until(lambda: all(count_of(proc.url, u) == c for u, c in counts.items())
                   and count_of(proc.url, "42") == 4, what="the four profiles built")  # fmt: skip

        status, body = call(f"{proc.url}{PROFILES}/user_id:42/export")
        assert status == 200
        exported = sorted(json.loads(line)["messageId"] for line in body.splitlines()[1:])
        assert exported == [f"ann-{n}" for n in range(4)]

        regulate_id = regulate(proc.url, "SUPPRESS_WITH_DELETE", "USER_ID", ["42"])
        record = wait_until(lambda: (r := status_of(proc.url, regulate_id))["status"] in ("FINISHED", "FAILED") and r,
                            what="the erasure")  # fmt: skip
        assert record["status"] == "FINISHED", record
        assert stored_ids(proc.data_dir) == others, "nobody else loses an event"
        assert record["stores"]["events"]["removed"] == 4
        assert call(f"{proc.url}{PROFILES}/user_id:42/traits")[0] == 404
        for user, count in counts.items():
            assert count_of(proc.url, user) == count, user
        status, body = call(f"{proc.url}{PROFILES}/user_id:bob/events?limit=10")
        assert status == 200 and len(body["data"]) == 3

        # suppressed: Ann is not stored again; Bob, signed in on the kiosk, still is
        before = len(stored_ids(proc.data_dir))
        for event in ({"type": "track", "userId": 42, "event": "Back"},
                      {"type": "alias", "userId": "ann-new", "previousId": "42"}):  # fmt: skip
            assert call(proc.url + "/v1/batch", "POST", {"batch": [event]}, WRITE)[0] == 200
        assert len(stored_ids(proc.data_dir)) == before
        bob = {"type": "track", "anonymousId": KIOSK, "userId": "bob", "event": "Came Back", "messageId": "bob-new"}
        assert call(proc.url + "/v1/batch", "POST", {"batch": [bob]}, WRITE)[0] == 200
        assert "bob-new" in stored_ids(proc.data_dir)
        wait_until(lambda: count_of(proc.url, "bob") == 4, what="Bob's new event counted")
        assert_whole(proc.data_dir)
    finally:
        proc.stop()


def test_a_batch_context_and_an_alias_cannot_bring_a_suppressed_person_back(tmp_path):
    """Suppression is checked after the batch's outer context is merged into each message, and an
    alias whose previousId is the suppressed userId is suppressed; a suppressed person's rejected
    messages are not kept in rejected/ either."""
    proc = CollectorProcess(tmp_path, access_token=TOKEN).start()
    try:
        regulate_id = regulate(proc.url, "SUPPRESS", "EMAIL", ["ann@shop.test"])
        wait_until(lambda: status_of(proc.url, regulate_id)["status"] == "FINISHED", what="the suppression")
        regulate_id = regulate(proc.url, "SUPPRESS", "USER_ID", ["42"])
        wait_until(lambda: status_of(proc.url, regulate_id)["status"] == "FINISHED", what="the suppression")
        bodies = [
            {"context": {"traits": {"email": "Ann@Shop.test"}}, "batch": [{"type": "page", "anonymousId": "new-dev"}]},
            {"batch": [{"type": "alias", "userId": "ann-2", "previousId": "42"}]},
            {"batch": [{"type": "track", "userId": "42"}]},  # no event name: refused, and not kept
        ]
        for body in bodies:
            assert call(proc.url + "/v1/batch", "POST", body, WRITE)[0] == 200
        assert call(proc.url + "/v1/track", "POST", {"userId": 42}, WRITE)[0] == 400  # refused whole, not kept
        assert call(proc.url + "/v1/batch", "POST", {"batch": [{"userId": "42", "event": "E"}] * 2501}, WRITE)[0] == 413
        assert stored_ids(proc.data_dir) == []
        rejected = [p for p in (proc.data_dir / "rejected").rglob("part-*")]
        assert not any(b"42" in p.read_bytes() for p in rejected if p.suffix == ".ndjson"), "kept a dead letter"
    finally:
        proc.stop()


def ann_on_two_devices(t0: float) -> list[dict]:
    """Ann browses anonymously on her phone and laptop, and signs in on each (the links that make
    the two anonymous histories hers are in the log, whatever the profile database says)."""
    events = []
    for n, device in enumerate(("ann-phone", "ann-laptop")):
        events += [{"type": "page", "anonymousId": device, "name": "Browse"},
                   {"type": "identify", "anonymousId": device, "userId": "42"}]  # fmt: skip
    events.append({"type": "track", "userId": "bob", "anonymousId": "bob-phone", "event": "Bob"})
    return [{**e, "messageId": f"m{n}", "timestamp": iso_ms(t0 + n), "receivedAt": iso_ms(t0 + n),
             "source": "web"} for n, e in enumerate(events)]  # fmt: skip


def write_events(data_dir, events: list[dict]) -> None:
    """Events of an hour ago, as closed segments (through the file store)."""
    from collector.log.files import FileStore
    from collector.log.layout import hour_partition

    async def write() -> None:
        store = FileStore(data_dir, segment_max_bytes=512)
        await store.start()
        for event in events:
            await store.append([orjson.dumps(event) + b"\n"], partition=hour_partition(time.time() - 3600))
        await store.close()

    asyncio.run(write())


@pytest.mark.parametrize("database", ["none", "behind"])
def test_an_erasure_is_whole_without_a_current_profile_database(tmp_path, database):
    """No builder runs (``--no-profiles``) and the profile database is missing, or was built before
    Ann signed in on her laptop: the job finds her from the log itself (before the fix it erased
    only what the database knew, her laptop's anonymous history stayed, and it said FINISHED)."""
    data_dir = tmp_path / "data"
    events = ann_on_two_devices(time.time() - 3600)
    write_events(data_dir, events[:2])
    if database == "behind":
        from collector.profiles.builder import Builder
        from collector.profiles.store import SqliteStore

        store = SqliteStore(data_dir / "profiles.db")
        Builder(store, data_dir).catch_up()
        assert store.find("anonymous_id", "ann-phone") and not store.find("anonymous_id", "ann-laptop")
        store.close()
    write_events(data_dir, events[2:])
    proc = CollectorProcess(tmp_path, access_token=TOKEN, args=["--no-profiles"]).start()
    try:
        regulate_id = regulate(proc.url, "DELETE_ONLY", "USER_ID", ["42"])
        record = wait_until(lambda: (r := status_of(proc.url, regulate_id))["status"] == "FINISHED" and r,
                            what="the erasure")  # fmt: skip
    finally:
        proc.stop()
    assert stored_ids(data_dir) == ["m4"], "Bob's event alone stays"
    assert record["identifiers"] == 3 and record["stores"]["events"]["removed"] == 4
    assert not list((data_dir / "regulations").glob(".person-*")), "the scratch database is deleted"


def test_a_delete_only_of_someone_who_goes_on_sending_finishes(tmp_path):
    """DELETE_ONLY erases what was received up to its rotation; what arrives after stays (the
    job used to FAIL after 15 rotations that kept finding the person in the open segments)."""
    data_dir = tmp_path / "data"
    write_events(data_dir, ann_on_two_devices(time.time() - 3600))
    proc = CollectorProcess(tmp_path, access_token=TOKEN).start()
    stop = threading.Event()

    def keep_sending() -> None:
        n, deadline = 0, time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            call(proc.url + "/v1/track", "POST", {"userId": "42", "event": "Still here", "messageId": f"late-{n}"}, WRITE)
            n += 1

    sender = threading.Thread(target=keep_sending)
    try:
        wait_until(lambda: count_of(proc.url, "42") == 4, what="Ann's profile")
        sender.start()
        wait_until(lambda: any(m.startswith("late-") for m in stored_ids(data_dir)), what="Ann sending")
        regulate_id = regulate(proc.url, "DELETE_ONLY", "USER_ID", ["42"])
        record = wait_until(lambda: (r := status_of(proc.url, regulate_id))["status"] != "RUNNING" and
                            r["status"] != "INITIALIZED" and r, what="the erasure")  # fmt: skip
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(30)
        proc.stop()
    assert record["status"] == "FINISHED", record
    left = stored_ids(data_dir)
    assert "m4" in left and not any(m in left for m in ("m0", "m1", "m2", "m3"))
    assert all(e["receivedAt"] >= record["rotatedAt"] for e in Reader(data_dir / EVENTS).events()
               if e["messageId"].startswith("late-")), "a late event received before the rotation stayed"  # fmt: skip


def test_a_request_that_meets_an_error_is_retried_with_its_reason_until_done_or_cancelled(tmp_path):
    """A job that cannot finish (here: a damaged .gz segment holding the person) is never FAILED
    for good: its status says why, its raw identifiers stay (0600), it runs again after a backoff
    and finishes once the cause is gone; another one is cancelled by the operator."""
    import gzip
    import os
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    write_events(data_dir, ann_on_two_devices(time.time() - 3600))
    proc = CollectorProcess(tmp_path, access_token=TOKEN, args=["--no-profiles"]).start()
    try:
        damaged = next((data_dir / EVENTS).rglob("*.gz")).with_name("part-damaged_0-000001.ndjson.gz")
        damaged.write_bytes(gzip.compress(b'{"userId":"42","messageId":"x"}\n' * 100)[:60])  # cut short
        first = regulate(proc.url, "DELETE_ONLY", "USER_ID", ["42"])
        record = wait_until(lambda: (r := status_of(proc.url, first)).get("lastError") and r, what="a first attempt")
        assert record["status"] == "RUNNING" and record["attempts"] >= 1 and record["nextAttemptAt"]
        subjects = data_dir / "regulations" / f"{first}.subjects.json"
        assert subjects.exists() and (subjects.stat().st_mode & 0o777) == 0o600
        damaged.unlink()  # the operator moves the damaged file away: the next attempt finishes
        wait_until(lambda: status_of(proc.url, first)["status"] == "FINISHED", what="the retried request")
        assert not subjects.exists()

        damaged.write_bytes(gzip.compress(b'{"userId":"bob","messageId":"y"}\n' * 100)[:60])
        second = regulate(proc.url, "DELETE_ONLY", "USER_ID", ["bob"])
        wait_until(lambda: status_of(proc.url, second).get("lastError"), what="a first attempt")
        cancel = subprocess.run([sys.executable, "-m", "collector", "privacy", "cancel", second, "--data-dir",
                                 str(data_dir)], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "INTILERY_ACCESS_TOKEN": TOKEN})  # fmt: skip
        assert cancel.returncode == 0, cancel.stderr
        assert status_of(proc.url, second)["status"] == "CANCELLED"
        assert not (data_dir / "regulations" / f"{second}.subjects.json").exists()
    finally:
        proc.stop()


def test_the_whole_person_comes_from_a_database_that_has_read_the_log_up_to_the_request(tmp_path):
    """``subjects.resolver``: a database behind the log while its builder runs (the host's builder
    lock held) makes the job wait (``NotYet``); once it has read the log up to the request it is
    used; with no builder running the log itself is read."""
    from collector.config import load_config
    from collector.privacy.subjects import NotYet, resolver
    from collector.profiles.builder import Builder
    from collector.profiles.database import take_lock
    from collector.profiles.store import SqliteStore

    data_dir = tmp_path / "data"
    events = ann_on_two_devices(time.time() - 3600)
    write_events(data_dir, events[:2])
    store = SqliteStore(data_dir / "profiles.db")
    builder = Builder(store, data_dir)
    builder.catch_up()
    write_events(data_dir, events[2:])  # her laptop, linked in the log, not yet in the database
    config = load_config(None, {"data_dir": str(data_dir)}, with_dev_source=False)
    resolve, cutoff = resolver(config), iso_ms(time.time())
    whole = {("user_id", "42"), ("anonymous_id", "ann-phone"), ("anonymous_id", "ann-laptop")}

    lock = take_lock(data_dir)  # a builder is running
    try:
        with pytest.raises(NotYet):
            resolve([("user_id", "42")], cutoff)
        builder.catch_up()  # ... and reads the log up to the request
        assert resolve([("user_id", "42")], cutoff) == whole
    finally:
        os.close(lock)
    store.close()
    (data_dir / "profiles.db").unlink()
    assert resolve([("user_id", "42")], cutoff) == whole  # no database: from the log
