"""``GET /v1/journeys`` and a person's runs, with the access token; ``intilery journeys``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from aiohttp.test_utils import TestServer

from collector.app import SERVER_KWARGS, create_app

from .test_runs import CART, T, make
from .conftest import ev

TOKEN = "at_journeys_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_journeys_and_a_person_s_runs_through_the_api_and_the_cli(setup, aiohttp_client):
    config, log = setup
    config = replace(config, access_token=TOKEN)
    store, runner = make(config, cart=CART)
    log.write([ev(event="Product Added", userId="ann", properties={"cart_id": "A"}),
               ev(event="Product Added", userId="bob", properties={"cart_id": "B"})])  # fmt: skip
    runner.step(T)
    log.write([ev(event="Order Completed", userId="bob", properties={"cart_id": "B"})])
    runner.step(T + 1)
    runner.close()
    store.close()
    server = TestServer(create_app(config))
    await server.start_server(**SERVER_KWARGS)
    client = await aiohttp_client(server)
    assert (await client.get("/v1/journeys")).status == 401
    assert (await client.get("/v1/journeys", headers={"Authorization": "Bearer wk_web"})).status == 401
    listed = await (await client.get("/v1/journeys", headers=AUTH)).json()
    (cart,) = listed["data"]
    assert listed["problems"] == []
    assert (cart["key"], cart["entered"], cart["active"], cart["converted"]) == ("cart", 2, 1, 1)
    assert "wait_for_order" in cart["steps"] and "remind" in cart["steps"]
    assert cart["versions"][0]["waiting"] == {"wait_for_order": 1}
    runs = await (await client.get("/v1/journeys/cart/runs?profile=user_id:ann", headers=AUTH)).json()
    (run,) = runs["data"]
    assert run["state"] == "active" and run["step"] == "wait_for_order" and run["next_at"] == T + 3 and run["instance"] == "A"
    bad = await client.get("/v1/journeys/cart/runs?profile=ann", headers=AUTH)
    assert bad.status == 400 and (await bad.json())["code"] == "invalid_parameter"
    missing = await client.get("/v1/journeys/nope/runs?profile=user_id:ann", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["code"] == "journey_not_found"
    flags = ["--data-dir", str(config.data_dir), "--engage-dir", str(config.engage_dir)]
    out = subprocess.run([sys.executable, "-m", "collector", "journeys", *flags], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if row.startswith("cart "))
    assert line.split()[2:6] == ["2", "1", "0", "1"] and "wait_for_order: 1" in line
    out = subprocess.run([sys.executable, "-m", "collector", "journeys", "runs", "cart", "--profile", "user_id:ann", *flags],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and "wait_for_order" in out.stdout and "active" in out.stdout
