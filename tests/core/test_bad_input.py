"""Bad input: each gets its status, code and sentence; nothing partial is stored; rejects are kept."""

from __future__ import annotations

import gzip

import orjson
import pytest

from collector.ingest.validate import MAX_BODY_BYTES
from tests.conftest import rejected, stored

KEY = {"X-Write-Key": "wk_web"}
JSON = {**KEY, "Content-Type": "application/json"}


def big(n: int) -> str:
    return "x" * n


CASES = [
    pytest.param("/v1/track", b"{not json", JSON, 400, "invalid_json", True, id="invalid-json"),
    pytest.param("/v1/track", b"", JSON, 400, "invalid_json", True, id="empty-body"),
    pytest.param("/v1/track", b"[1,2]", JSON, 400, "invalid_json", True, id="not-an-object"),
    pytest.param("/v1/track", b'{"userId":"u","event":"\xff\xfe"}', JSON, 400, "invalid_json", True, id="invalid-utf8"),
    pytest.param("/v1/track", b"[" * 1000 + b"]" * 1000, JSON, 400, "invalid_json", True, id="deep-nesting"),
    pytest.param("/v1/track", b'{"event":"E"}', JSON, 400, "missing_id", True, id="missing-ids"),
    pytest.param("/v1/track", b'{"userId":"u"}', JSON, 400, "missing_event", True, id="track-without-event"),
    pytest.param("/v1/group", b'{"userId":"u"}', JSON, 400, "missing_group_id", True, id="group-without-groupId"),
    pytest.param("/v1/alias", b'{"userId":"u"}', JSON, 400, "missing_previous_id", True, id="alias-without-previousId"),
    pytest.param("/v1/track", b'{"userId":"u","event":"E","properties":[1]}', JSON, 400, "invalid_field", True, id="properties-not-object"),
    pytest.param("/v1/track", b'{"userId":{"a":1},"event":"E"}', JSON, 400, "invalid_field", True, id="userId-object"),
    pytest.param("/v1/track", b'{"userId":"u","event":7}', JSON, 400, "invalid_field", True, id="event-number"),
    pytest.param("/v1/track", b'{"userId":"u","event":"E","timestamp":"yesterday"}', JSON, 400, "invalid_timestamp", True, id="bad-timestamp"),
    pytest.param("/v1/track", b'{"userId":"u","type":"page"}', JSON, 400, "type_mismatch", True, id="type-mismatch"),
    pytest.param("/v1/batch", b'{"batch":{}}', JSON, 400, "invalid_batch", True, id="batch-not-array"),
    pytest.param("/v1/batch", b'{"batch":[],"context":5}', JSON, 400, "invalid_batch", True, id="batch-context-not-object"),
    pytest.param("/v1/track", orjson.dumps({"userId": "u", "event": "E", "properties": {"p": big(40_000)}}), JSON, 413, "message_too_large", True, id="message-over-32KB"),
    pytest.param("/v1/batch", orjson.dumps({"batch": [{"userId": "u", "type": "track", "event": "E", "properties": {"p": big(30_000)}}] * 20}), JSON, 413, "body_too_large", True, id="body-over-500KB"),
    pytest.param("/v1/batch", orjson.dumps({"batch": [{"userId": "u", "type": "track", "event": "E"}] * 2501}), JSON, 413, "batch_too_large", True, id="batch-over-2500"),
    pytest.param("/v1/batch", b"\x1f\x8bnot really gzip", {**JSON, "Content-Encoding": "gzip"}, 400, "invalid_gzip", True, id="bad-gzip"),
    pytest.param("/v1/batch", gzip.compress(b'{"batch":[]}') + b"trailing", {**JSON, "Content-Encoding": "gzip"}, 400, "invalid_gzip", True, id="gzip-trailing-garbage"),
    pytest.param("/v1/batch", gzip.compress(b" " * 2_000_000), {**JSON, "Content-Encoding": "gzip"}, 413, "body_too_large", True, id="gzip-bomb"),
    pytest.param("/v1/batch", b'{"batch":[]}', {**KEY, "Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_content_type", True, id="wrong-content-type"),
    pytest.param("/v1/batch", b'{"batch":[]}', {**JSON, "Content-Encoding": "br"}, 415, "unsupported_encoding", True, id="unsupported-encoding"),
    pytest.param("/v1/track", b'{"userId":"u","event":"E"}', {"X-Write-Key": "nope"}, 401, "invalid_write_key", False, id="bad-write-key"),
    pytest.param("/v1/track", b'{"userId":"u","event":"E"}', {"Content-Type": "application/json"}, 401, "missing_write_key", False, id="no-write-key"),
    pytest.param("/v1/track", b'{"userId":"u","event":"E"}', {**JSON, "Origin": "https://evil.example"}, 403, "origin_not_allowed", False, id="disallowed-origin"),
]


@pytest.mark.parametrize("path, body, headers, status, code, kept", CASES)
async def test_bad_input_is_answered_and_kept(client, config, path, body, headers, status, code, kept):
    """A clear status, machine code and sentence; nothing stored; the payload kept in rejected/ when authenticated."""
    answer = await client.post(path, data=body, headers=headers)
    assert answer.status == status, await answer.text()
    reply = await answer.json()
    assert reply["success"] is False and reply["code"] == code
    assert isinstance(reply["message"], str) and len(reply["message"]) > 10
    assert stored(config.data_dir) == []
    kept_records = rejected(config.data_dir)
    if kept:
        [record] = kept_records
        assert record.pop("receivedAt")
        assert record == {"source": "web", "code": code, "message": reply["message"], **kept_payload(body, headers)}
    else:
        assert kept_records == []


def kept_payload(body: bytes, headers: dict) -> dict:
    """What rejected/ keeps of a body: its text (what is not UTF-8 replaced, so it can be scrubbed); the size
    alone when it was refused unread (over the cap) or is encoded (gzip that did not inflate, an unknown encoding)."""
    if len(body) > MAX_BODY_BYTES or "Content-Encoding" in headers:
        return {"payload": None, "payloadBytes": len(body)}
    return {"payload": body.decode("utf-8", "replace")}


async def test_invalid_messages_in_a_batch_are_rejected_one_by_one(client, config):
    """The valid messages are stored; each invalid one is listed with its index, code and sentence."""
    batch = [
        {"type": "track", "userId": "u", "event": "Good 0"},
        {"type": "track", "userId": "u"},
        "not an object",
        {"type": "teleport", "userId": "u"},
        {"userId": "u", "event": "no type"},
        {"type": "page", "anonymousId": "a", "properties": "x"},
        {"type": "identify", "userId": "u", "traits": {"ok": True}},
    ]
    answer = await client.post("/v1/batch", json={"batch": batch}, headers=KEY)
    assert answer.status == 200
    reply = await answer.json()
    assert reply["accepted"] == 2
    assert [(r["index"], r["code"]) for r in reply["rejected"]] == [
        (1, "missing_event"), (2, "invalid_message"), (3, "unknown_type"), (4, "missing_type"), (5, "invalid_field"),
    ]  # fmt: skip
    assert all(r["message"] for r in reply["rejected"])
    assert [line.get("event") or line["type"] for line in stored(config.data_dir)] == ["Good 0", "identify"]
    kept = rejected(config.data_dir)
    assert [(r["index"], r["code"]) for r in kept] == [(r["index"], r["code"]) for r in reply["rejected"]]
    assert kept[1]["payload"] == "not an object"


async def test_an_oversize_message_inside_a_batch_is_rejected_alone(client, config):
    batch = [{"type": "track", "userId": "u", "event": "Big", "properties": {"p": "x" * 40_000}},
             {"type": "track", "userId": "u", "event": "Small"}]  # fmt: skip
    reply = await (await client.post("/v1/batch", json={"batch": batch}, headers=KEY)).json()
    assert reply["accepted"] == 1 and reply["rejected"][0]["code"] == "message_too_large"
    assert [line["event"] for line in stored(config.data_dir)] == ["Small"]
