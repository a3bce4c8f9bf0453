"""The console with ``--store nats``: a stream opened on one collector shows what another stored,
accepted and rejected, read from the JetStream stream through ``log.stream_reader``."""

from __future__ import annotations

import json
import uuid

from tests.console.conftest import TOKEN, send
from tests.console.sse import Stream


async def test_a_console_on_one_collector_shows_what_another_stored(nats_server, collectors):
    args = ["--store", "nats", "--nats-url", nats_server.url]
    watched = await collectors("c1", *args, access_token=TOKEN)
    other = await collectors("c2", *args, access_token=TOKEN)
    run = uuid.uuid4().hex[:10]
    with Stream(f"{watched.url}/console/stream?q={run}", TOKEN) as stream:
        assert stream.status == 200
        assert send(other.url, {"event": "Via Other", "userId": "u1", "properties": {"run": run}}, write_key="wk_test") == 200
        assert send(other.url, {"userId": "u1", "properties": {"run": run}}, write_key="wk_test") == 400
        stream.wait(lambda: len(stream.of("accepted")) == 1 and len(stream.of("rejected")) == 1, "both, from the stream")
        (_, accepted_id, accepted), = stream.of("accepted")
        (_, rejected_id, rejected), = stream.of("rejected")
        last_id = stream.of("accepted", "rejected")[-1][1]
    assert json.loads(accepted["raw"])["event"] == "Via Other" and accepted_id.startswith("events#")
    assert json.loads(rejected["raw"])["code"] == "missing_event" and rejected_id.startswith("rejected#")
    assert send(other.url, {"event": "After", "userId": "u1", "properties": {"run": run}}, write_key="wk_test") == 200
    with Stream(f"{watched.url}/console/stream?q={run}", TOKEN, last_id=last_id) as resumed:
        resumed.wait(lambda: [json.loads(d["raw"]).get("event") for _, _, d in resumed.of("accepted", "rejected")] == ["After"],
                     "only what came after the last id")  # fmt: skip
