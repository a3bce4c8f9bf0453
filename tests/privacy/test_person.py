"""The person is exactly the person (issue 27): a privacy request on a realistic shop touches
nobody else. Ann (userId ``42``, as shops number their customers) signs in on a shared kiosk;
Bob signs in later on the same kiosk without a reset; Carl orders the product whose sku is
``"42"``; Dee searches for ``42``. Ann's export, erasure and suppression must leave every event of
the other three where it is, counted in their profiles exactly as before."""

from __future__ import annotations

import json
import time

from helpers import CollectorProcess, assert_whole, wait_until
from privacy.people import PROFILES, TOKEN, WRITE, call, regulate, status_of

from collector.log.layout import EVENTS
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
        time.sleep(0)  # the answers above came after the commit
        assert stored_ids(proc.data_dir) == []
        rejected = [p for p in (proc.data_dir / "rejected").rglob("part-*")]
        assert not any(b"42" in p.read_bytes() for p in rejected if p.suffix == ".ndjson"), "kept a dead letter"
    finally:
        proc.stop()
