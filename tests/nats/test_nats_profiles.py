"""Profiles from the NATS store: the builder follows the JetStream stream, the cursor (the last
stream sequence) committed with each batch, and the Profile API pages events from the stream."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import urllib.request
from pathlib import Path

from helpers import wait_until
from tests.profiles.killing import Traffic, committed, counted_per_user, kill_builders, profiles_process, send

TOKEN = "at_nats"


def read(url: str, who: str, what: str) -> dict | None:
    request = urllib.request.Request(f"{url}/v1/spaces/default/collections/users/profiles/{who}/{what}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except OSError:
        return None


def builder(data_dir: Path, nats_url: str, *args: str) -> subprocess.Popen:
    return profiles_process(data_dir, "--store", "nats", "--nats-url", nats_url, *args)


async def test_serve_on_the_nats_store_builds_profiles_and_pages_events_from_the_stream(nats_server, collectors):
    """``intilery serve --store nats`` with its defaults: a visitor's anonymous page, their sign-in and
    an order make one profile, and its events come back from the stream, newest first."""
    collector = await collectors("c1", "--store", "nats", "--nats-url", nats_server.url, access_token=TOKEN)
    journey = [
        {"type": "page", "anonymousId": "a-1", "name": "Home", "messageId": "n-1", "timestamp": "2026-12-01T10:00:00Z"},
        {"type": "identify", "anonymousId": "a-1", "userId": "u-1", "traits": {"email": "Ann@Example.com"},
         "messageId": "n-2", "timestamp": "2026-12-01T10:01:00Z"},
        {"type": "track", "userId": "u-1", "event": "Order Completed", "properties": {"revenue": 9.5},
         "messageId": "n-3", "timestamp": "2026-12-01T10:02:00Z"},
    ]  # fmt: skip
    assert await asyncio.to_thread(send, collector.url, journey)
    traits = await asyncio.to_thread(
        wait_until, lambda: ((read(collector.url, "email:ann@example.com", "traits") or {}).get("traits") or {}).get("event_count") == 3
        and read(collector.url, "email:ann@example.com", "traits")["traits"], 30, 0.1, "the profile from the stream")  # fmt: skip
    assert traits["email"] == "Ann@Example.com" and traits["revenue"] == {"USD": 9.5}
    ids = {(i["type"], i["id"]) for i in read(collector.url, "anonymous_id:a-1", "external_ids")["data"]}
    assert ids == {("anonymous_id", "a-1"), ("user_id", "u-1"), ("email", "ann@example.com")}
    first = read(collector.url, "user_id:u-1", "events?limit=2")
    assert [e["messageId"] for e in first["data"]] == ["n-3", "n-2"] and first["cursor"]["has_more"]
    rest = read(collector.url, "user_id:u-1", f"events?limit=2&next={first['cursor']['next']}")
    assert [e["messageId"] for e in rest["data"]] == ["n-1"] and not rest["cursor"]["has_more"]


async def test_sigkill_of_the_stream_builder_at_any_point_misses_and_doubles_nothing(nats_server, collectors, tmp_path):
    """``intilery profiles --store nats`` killed (SIGKILL) again and again while the collector takes
    events, then run to the end: every acknowledged event is counted exactly once, per person."""
    collector = await collectors("c1", "--store", "nats", "--nats-url", nats_server.url, "--no-profiles")
    data_dir = tmp_path / "builder"
    data_dir.mkdir()
    db = data_dir / "profiles.db"
    with Traffic(collector.url, 30, seed=5) as traffic:
        await asyncio.to_thread(kill_builders, lambda: builder(data_dir, nats_server.url), db, 8, random.Random(5))
    rest = builder(data_dir, nats_server.url, "--once")
    assert await asyncio.to_thread(rest.wait, 120) == 0, rest.stdout.read().decode()
    assert counted_per_user(db) == dict(traffic.sent), "counts differ from what the collector acknowledged"
    assert committed(db) == sum(traffic.sent.values())
