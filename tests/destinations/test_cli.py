"""``intilery destinations``: try (the request a sample event makes, signed), the counts, the dead
letters with their answer, replay by id; bad input is a sentence."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from standardwebhooks import Webhook

from helpers import eventually

from .conftest import SECRET, ev, write_destination
from .test_webhooks import deliveries, running


def cli(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collector", "destinations", *args, "--data-dir", str(config.data_dir),
                           "--engage-dir", str(config.engage_dir)], capture_output=True, text=True, timeout=60)  # fmt: skip


def test_try_prints_the_signed_request_a_sample_event_makes(setup, tmp_path):
    config, _ = setup
    write_destination(config.engage_dir, "crm", url="https://hooks.example.com/in",
                      mapping={"order": {"@path": "$.properties.order_id"}, "who": {"@template": "{{ userId }}"}},
                      filter={"field": "event", "value": "Order Completed"})  # fmt: skip
    sample = tmp_path / "order.json"
    sample.write_text(json.dumps(ev(properties={"order_id": "o-7"})))
    done = cli(config, "try", "crm", str(sample))
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition("\n\n")
    lines = head.splitlines()
    assert lines[0] == "POST https://hooks.example.com/in"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    raw = body.rstrip("\n").encode()
    assert Webhook(SECRET).verify(raw, headers) == {"type": "track", "timestamp": "2026-12-08T02:00:00.000Z",
                                                    "data": {"order": "o-7", "who": "u1"}}  # fmt: skip
    other = tmp_path / "page.json"
    other.write_text(json.dumps(ev(kind="page")))
    skipped = cli(config, "try", "crm", str(other))
    assert skipped.returncode == 0 and "not sent: the destination's filter" in skipped.stdout
    nope = cli(config, "try", "nope", str(sample))
    assert nope.returncode == 1 and "no destination 'nope' (there are: crm)" in nope.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    bad = cli(config, "try", "crm", str(broken))
    assert bad.returncode == 1 and "cannot read a JSON event" in bad.stderr and "Traceback" not in bad.stderr


async def test_counts_dead_letters_and_replay_by_id(setup, receivers):
    config, log = setup
    broken = [True]
    receiver = await receivers(answer=lambda n, r: (404, {}, 0) if broken[0] else None)
    write_destination(config.engage_dir, "crm", url=receiver.url)
    log.write([ev(), ev()])
    async with running(config):
        dead = await eventually(lambda: len(deliveries(config, "crm", "dead")) == 2 and deliveries(config, "crm", "dead"), 20,
                                what="two dead letters")  # fmt: skip
        listed = await asyncio.to_thread(cli, config)
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith("crm"))
        assert row.split()[1:5] == ["0", "0", "0", "2"] and "answered 404" in row
        failed = await asyncio.to_thread(cli, config, "failed", "crm")
        assert dead[0]["id"] in failed.stdout and "status 404" in failed.stdout and "no: 404" in failed.stdout
        broken[0] = False
        replayed = await asyncio.to_thread(cli, config, "replay", "crm", "--id", dead[0]["id"])
        assert replayed.stdout.startswith("1 deliveries of crm due again"), replayed.stderr
        await eventually(lambda: deliveries(config, "crm", "delivered"), 20, what="the replayed one")
        bad = await asyncio.to_thread(cli, config, "replay", "crm", "--since", "last week")
        assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr
    assert [d["id"] for d in deliveries(config, "crm", "delivered")] == [dead[0]["id"]]
    assert receiver.ids()[-1] == dead[0]["id"]
