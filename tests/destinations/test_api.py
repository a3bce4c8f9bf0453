"""``/v1/destinations`` with the access token: counts, dead letters with their answer, replay."""

from __future__ import annotations

from dataclasses import replace

from aiohttp.test_utils import TestServer

from collector.app import SERVER_KWARGS, create_app
from helpers import eventually

from .conftest import ev, write_destination
from .test_webhooks import deliveries, running

TOKEN = "at_destinations_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_list_dead_letters_and_replay_through_the_api(setup, receivers, aiohttp_client):
    config, log = setup
    config = replace(config, access_token=TOKEN)
    broken = [True]
    receiver = await receivers(answer=lambda n, r: (422, {}, 0) if broken[0] else None)
    write_destination(config.engage_dir, "crm", url=receiver.url)
    server = TestServer(create_app(config))
    await server.start_server(**SERVER_KWARGS)
    client = await aiohttp_client(server)
    events = [ev(), ev()]
    log.write(events)
    async with running(config):
        await eventually(lambda: len(deliveries(config, "crm", "dead")) == 2, 20, what="two dead letters")
        assert (await client.get("/v1/destinations")).status == 401
        assert (await client.get("/v1/destinations", headers={"Authorization": "Bearer wk_web"})).status == 401
        listed = await (await client.get("/v1/destinations", headers=AUTH)).json()
        (crm,) = listed["data"]
        assert crm["name"] == "crm" and crm["dead"] == 2 and crm["delivered"] == 0 and listed["problems"] == []
        assert crm["last_error"]["status"] == 422 and "no: 422" in crm["last_error"]["answer"]
        assert "secret" not in str(crm["settings"]).replace("'secrets': 1", "") and crm["settings"]["secrets"] == 1
        page = await (await client.get("/v1/destinations/crm/deliveries?state=dead&limit=1", headers=AUTH)).json()
        assert len(page["data"]) == 1 and page["cursor"]["has_more"]
        rest = await (await client.get(f"/v1/destinations/crm/deliveries?state=dead&next={page['cursor']['next']}",
                                       headers=AUTH)).json()  # fmt: skip
        assert len(rest["data"]) == 1 and not rest["cursor"]["has_more"]
        assert rest["data"][0]["last_status"] == 422 and rest["data"][0]["payload"]["type"] == "track"
        bad = await client.get("/v1/destinations/crm/deliveries?state=lost", headers=AUTH)
        assert bad.status == 400 and (await bad.json())["code"] == "invalid_parameter"
        missing = await client.get("/v1/destinations/nope/deliveries", headers=AUTH)
        assert missing.status == 404 and (await missing.json())["code"] == "destination_not_found"
        wrong = await client.post("/v1/destinations/crm/replay", data=b'{"since": "yesterday"}', headers=AUTH)
        assert wrong.status == 400 and (await wrong.json())["code"] == "invalid_replay"
        broken[0] = False
        replayed = await client.post("/v1/destinations/crm/replay", json={}, headers=AUTH)
        assert (await replayed.json()) == {"replayed": 2, "enabled_again": False}
        await eventually(lambda: len(deliveries(config, "crm", "delivered")) == 2, 20, what="the replay delivered")
        metrics = await (await client.get("/metrics")).text()
    assert 'intilery_deliveries_total{destination="crm",outcome="dead"} 2.0' in metrics
    assert 'intilery_deliveries_total{destination="crm",outcome="delivered"} 2.0' in metrics
    assert 'intilery_delivery_seconds_count{destination="crm"} 4.0' in metrics
    assert 'intilery_destination_queue_depth{destination="crm"} 0.0' in metrics
    ids = receiver.ids()
    assert len(ids) == 4 and set(ids[:2]) == set(ids[2:])  # the replay has the same webhook-ids
