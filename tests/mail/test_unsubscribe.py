"""RFC 8058 one-click unsubscribe through the collector: ``POST /u/TOKEN`` unsubscribes at once (no
cookie, no redirect, no second step), an identify setting ``email_consent`` false reaches the log
once; ``GET`` changes nothing; an invalid token answers alike; the endpoint is rate limited."""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import replace

import orjson
from aiohttp.test_utils import TestServer

from collector.app import SERVER_KWARGS, create_app
from collector.config import load_config
from collector.engage.email import routes, store, tokens
from collector.engage.outbox.store import open_outbox
from collector.profiles.builder import Builder
from collector.profiles.rules import Rules
from collector.profiles.store import SqliteStore
from profiles.conftest import Log, ev


def logged(data_dir) -> list[dict]:
    found = []
    for path in sorted((data_dir / "events").rglob("*.ndjson*")):
        raw = path.read_bytes()
        if path.suffix == ".gz":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):  # being written
                continue
        found += [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    return found


async def test_one_click_unsubscribes_and_the_log_hears_it(tmp_path, aiohttp_client):
    data = tmp_path / "data"
    Log(data).write([ev("identify", userId="u1", traits={"email": "ann@example.com"})])
    profiles = SqliteStore(data / "profiles.db")
    Builder(profiles, data, Rules()).catch_up()
    pid = profiles.find("user_id", "u1")
    profiles.close()
    config = load_config(None, overrides={"data_dir": str(data)}, environ={})
    key = tokens.secret(config.email, config.data_dir)
    token = tokens.make(key, pid)
    server = TestServer(create_app(config))
    await server.start_server(**SERVER_KWARGS)
    client = await aiohttp_client(server)

    page = await client.get(f"/u/{token}")
    assert page.status == 200 and '<form method="post">' in await page.text()
    outbox = open_outbox(data / "profiles.db")
    store.create(outbox)
    assert not store.unsubscribed(outbox, pid, tokens.MARKETING)  # a GET changes nothing

    bad = await client.post(f"/u/{token[:-2]}xx", data={"List-Unsubscribe": "One-Click"}, allow_redirects=False)
    good = await client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}, allow_redirects=False)
    assert bad.status == good.status == 200
    assert bad.headers["Content-Type"] == good.headers["Content-Type"] and "Set-Cookie" not in good.headers
    assert "not valid" in await bad.text() and "You are unsubscribed" in await good.text()
    assert store.unsubscribed(outbox, pid, tokens.MARKETING)
    again = await client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status == 200

    deadline = time.monotonic() + 20
    while not [e for e in logged(data) if e.get("type") == "identify" and "email_consent" in e.get("traits", {})]:
        assert time.monotonic() < deadline, "the identify never reached the log"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the announcer's next passes: nothing more
    told = [e for e in logged(data) if e.get("type") == "identify" and "email_consent" in e.get("traits", {})]
    assert len(told) == 1 and told[0]["userId"] == "u1" and told[0]["traits"] == {"email_consent": False}
    outbox.close()


async def test_rate_limited(tmp_path, aiohttp_client):
    config = load_config(None, overrides={"data_dir": str(tmp_path / "data")}, environ={})
    server = TestServer(create_app(config))
    await server.start_server(**SERVER_KWARGS)
    client = await aiohttp_client(server)
    answers = [(await client.post("/u/nothing")).status for _ in range(routes.RATE + 1)]
    assert answers[:-1] == [200] * routes.RATE and answers[-1] == 429
