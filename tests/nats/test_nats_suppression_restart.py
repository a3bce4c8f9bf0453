"""A NATS collector with a non-empty suppression list, restarted (issue 27 item 4, review P4).

The list and its salt live in the KV bucket ``INTILERY_PRIVACY``; each collector keeps the last
list it read, and the salt, in its data directory. Restarted, it must answer every message at
once (never a 500 while it has not read the bucket yet), go on applying the list it had when the
bucket cannot be read (here: the server's permissions deny the bucket to the collector's user,
while the event stream stays writable), and say so in ``/readyz`` and in its log.
"""

from __future__ import annotations

import asyncio

from pathlib import Path

import orjson
import pytest
from natsprocs import NatsServer, require_nats_server, stream_messages

import collector as collector_package
from helpers import eventually
from privacy.people import TOKEN, WRITE, call, regulate, status_of

ANN, BOB = "42", "bob-7"  # Ann's userId is short and numeric, as many shops number customers
KV_DENIED = ["$KV.INTILERY_PRIVACY.>", "$JS.API.*.*.KV_INTILERY_PRIVACY", "$JS.API.*.*.KV_INTILERY_PRIVACY.>",
             "$JS.API.DIRECT.GET.KV_INTILERY_PRIVACY", "$JS.API.DIRECT.GET.KV_INTILERY_PRIVACY.>"]  # fmt: skip


def server_config(path, deny_bucket: bool) -> None:
    """Two users: ``admin`` (the test) and ``app`` (the collector), which may be denied the bucket."""
    deny = ("publish: {deny: [" + ", ".join(f'"{s}"' for s in KV_DENIED) + "]}") if deny_bucket else ""
    path.write_text("authorization {\n  users = [\n    {user: admin, password: adminpw}\n"
                    f"    {{user: app, password: apppw, permissions: {{{deny}}}}}\n  ]\n}}\n")  # fmt: skip


def assert_documented(body: dict) -> None:
    """The answer matches /readyz's 200 in the shipped OpenAPI document."""
    import jsonschema

    document = orjson.loads((Path(collector_package.__file__).parent / "static" / "openapi.json").read_bytes())
    schema = document["paths"]["/readyz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(body, schema)


def url_of(server: NatsServer, user: str) -> str:
    return f"nats://{user}:{user}pw@127.0.0.1:{server.port}"


async def stored_ids(server: NatsServer) -> set[str]:
    return {orjson.loads(m.data).get("messageId") for m in await stream_messages(url_of(server, "admin"))}


async def send_both(collector, tag: str, n: int = 10) -> list[int]:
    """Ann's and Bob's identified messages, each on its own; the statuses in order."""
    statuses = []
    for i in range(n):
        for user in (ANN, BOB):
            body = {"userId": user, "event": "Viewed", "messageId": f"{tag}-{user}-{i}", "properties": {"sku": ANN}}
            status, _ = await asyncio.to_thread(call, collector.url + "/v1/track", "POST", body, WRITE)
            statuses.append(status)
    return statuses


@pytest.fixture
def guarded_server(tmp_path):
    require_nats_server()
    config = tmp_path / "nats.conf"
    server_config(config, deny_bucket=False)
    server = NatsServer(tmp_path, config=config).start()
    yield server, config
    server.kill()


async def test_a_restarted_collector_applies_its_last_list_and_never_answers_500(tmp_path, guarded_server, collectors):
    server, config = guarded_server
    settings = dict(store="nats", nats_url=url_of(server, "app"), access_token=TOKEN, data_dir=tmp_path / "c1-data")
    collector = await collectors("c1", **settings)
    regulate_id = await asyncio.to_thread(regulate, collector.url, "SUPPRESS", "USER_ID", [ANN])
    await eventually(lambda: asyncio.to_thread(lambda: status_of(collector.url, regulate_id)["status"] == "FINISHED"),
                     timeout=60, what="the suppression")  # fmt: skip
    await asyncio.to_thread(collector.stop)

    # restarted: messages at once, before and after its first read of the bucket
    collector = await collectors("c1", **settings)
    assert set(await send_both(collector, "restart")) == {200}
    stored = await stored_ids(server)
    assert {f"restart-{BOB}-{i}" for i in range(10)} <= stored
    assert not any(i.startswith(f"restart-{ANN}-") for i in stored)
    await asyncio.to_thread(collector.stop)

    # the bucket cannot be read any more (the stream can): the last list stays in force
    server.kill()
    server_config(config, deny_bucket=True)
    server.start()
    collector = await collectors("c1", **settings)
    assert set(await send_both(collector, "denied")) == {200}
    stored = await stored_ids(server)
    assert {f"denied-{BOB}-{i}" for i in range(10)} <= stored
    assert not any(i.startswith(f"denied-{ANN}-") for i in stored)

    async def says_stale():
        status, body = await asyncio.to_thread(call, collector.url + "/readyz", headers={})
        # ingest goes on: ready (200), with a warning (a 503 here is the store's probe on a loaded machine)
        return body if status == 200 and body.get("suppressionList", {}).get("stale") else None

    body = await eventually(says_stale, timeout=30, what="/readyz to name the stale shared list")
    assert body["ready"] is True and "suppression_list_stale" in body["warnings"]
    assert body["suppressionList"]["hashes"] >= 1
    assert_documented(body)

    def logged() -> int:
        return collector.log.read_text().count("the shared suppression list cannot be read")

    await eventually(logged, timeout=30, what="the log line")
    assert set(await send_both(collector, "later", 3)) == {200}
    assert logged() == 1  # once, not at every pull

    # the bucket readable again: no longer stale
    await asyncio.to_thread(collector.stop)
    server.kill()
    server_config(config, deny_bucket=False)
    server.start()
    collector = await collectors("c1", **settings)

    async def current():
        status, body = await asyncio.to_thread(call, collector.url + "/readyz", headers={})
        return status == 200 and body.get("suppressionList", {}).get("stale") is False

    await eventually(current, timeout=30, what="/readyz to say the list is current")
    assert_documented((await asyncio.to_thread(call, collector.url + "/readyz", headers={}))[1])
