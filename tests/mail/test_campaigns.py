"""Broadcasts: one message per member with an email and consent, through the outbox's email lane to
a real SMTP server; the same campaign again (a restart) queues nobody twice; the status counts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson

from collector.engage.destinations.sender import Database
from collector.engage.email import campaigns, sender, store, templates, tokens
from collector.engage.outbox.store import open_outbox
from collector.profiles.builder import Builder
from collector.profiles.rules import Rules
from collector.profiles.store import SqliteStore
from mail.relay import Relay
from mail.test_sending import final, run_until
from profiles.conftest import Log, ev

NEWS = "---\nsubject: News for {{ traits.name }}\n---\n<p>Hi {{ traits.name }}</p>\n"


def people(data: Path, n: int) -> dict[str, str]:
    """``n`` people u0..u(n-1) with an email (u1 has none, u2 said no), all in the audience ``all``."""
    events = []
    for i in range(n):
        traits = {"name": f"P{i}"}
        if i != 1:
            traits["email"] = f"p{i}@x.example"
        if i == 2:
            traits["email_consent"] = False
        events.append(ev("identify", userId=f"u{i}", traits=traits))
    Log(data).write(events)
    profiles = SqliteStore(data / "profiles.db")
    Builder(profiles, data, Rules()).catch_up()
    pids = {f"u{i}": profiles.find("user_id", f"u{i}") for i in range(n)}
    profiles._many("INSERT INTO engage_members (audience, profile_id, entered_at) VALUES (?, ?, ?)",
                   [("all", pid, 0.0) for pid in pids.values()])  # fmt: skip
    profiles.commit()
    profiles.close()
    return pids


def setup(tmp_path, port: int):
    data = tmp_path / "data"
    pids = people(data, 6)
    (tmp_path / "engage" / "templates").mkdir(parents=True)
    (tmp_path / "engage" / "templates" / "news.liquid").write_text(NEWS)
    config_file = tmp_path / "intilery.toml"
    config_file.write_text(f'data_dir = "{data}"\n[email]\nfrom = "Shop <news@shop.example>"\npublic_url = "https://c.example"\n'
                           f'smtp_port = {port}\nsmtp_security = "none"\nrate_per_second = 1000\n')  # fmt: skip
    return data, pids, config_file


async def test_a_broadcast_reaches_each_member_with_consent_once(tmp_path):
    from collector.config import load_config

    with Relay() as relay:
        data, pids, config_file = setup(tmp_path, relay.port)
        run = [sys.executable, "-m", "collector", "campaign", "send", "--audience", "all", "--template", "news",
               "--config", str(config_file), "--id", "c1"]  # fmt: skip
        dry = subprocess.run([*run, "--dry-run"], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert orjson.loads(dry.stdout) == {"id": "c1", "dry_run": True, "queued": 4, "no_email": 1, "no_consent": 1}
        config = load_config(str(config_file), with_dev_source=False)
        outbox = open_outbox(data / "profiles.db")
        assert outbox.deliveries(sender.LANE) == []  # a dry run queues nothing
        store.create(outbox)
        store.unsubscribe(outbox, pids["u3"], tokens.MARKETING)  # clicked the link before the profile heard
        out = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert orjson.loads(out.stdout)["queued"] == 3 and "members looked at" in out.stderr
        # killed before its page's commit (cursor and counts go together), started again: nobody queued twice
        campaigns.create(outbox)
        outbox._run("UPDATE email_campaigns SET cursor = '', done = 0, counts = '{}' WHERE id = 'c1'")
        outbox.commit()
        assert subprocess.run(run, capture_output=True, text=True, timeout=60).returncode == 0
        assert len(outbox.deliveries(sender.LANE)) == 3
        db = Database(outbox)
        await run_until(sender.EmailLane(config.email, db, tokens.secret(config.email, data)), outbox, final(outbox, 3))
        got = sorted(tos[0] for tos, _, _ in relay.received)
        assert got == ["p0@x.example", "p4@x.example", "p5@x.example"]
        assert [m["List-Unsubscribe-Post"] for _, m, _ in relay.received] == ["List-Unsubscribe=One-Click"] * 3
        status = subprocess.run([sys.executable, "-m", "collector", "campaign", "status", "c1", "--config", str(config_file)],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert orjson.loads(status.stdout) == {"id": "c1", "audience": "all", "template": "news", "done": True, "queued": 0,
                                               "sent": 3, "failed": 0, "dead": 0,
                                               "skipped": {"no_email": 1, "no_consent": 2}}  # fmt: skip
        db.close()


async def test_post_v1_campaigns_with_the_access_token(tmp_path, aiohttp_client):
    from dataclasses import replace

    from aiohttp.test_utils import TestServer

    from collector.app import SERVER_KWARGS, create_app
    from collector.config import load_config

    data, pids, config_file = setup(tmp_path, 2525)
    config = replace(load_config(str(config_file), with_dev_source=False), access_token="at_mail_test")
    server = TestServer(create_app(config))
    await server.start_server(**SERVER_KWARGS)
    client = await aiohttp_client(server)
    auth = {"Authorization": "Bearer at_mail_test"}
    assert (await client.post("/v1/campaigns", json={"audience": "all", "template": "news"})).status == 401
    bad = await client.post("/v1/campaigns", json={"audience": "all"}, headers=auth)
    assert bad.status == 400 and (await bad.json())["code"] == "invalid_campaign"
    missing = await client.post("/v1/campaigns", json={"audience": "all", "template": "nope"}, headers=auth)
    assert missing.status == 400 and "no such template" in (await missing.json())["message"]
    started = await client.post("/v1/campaigns", json={"audience": "all", "template": "news", "id": "c2"}, headers=auth)
    assert started.status == 202 and (await started.json())["id"] == "c2"
    deadline = time.monotonic() + 20
    while True:
        got = await (await client.get("/v1/campaigns/c2", headers=auth)).json()
        if got.get("done"):
            break
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.05)
    assert (got["queued"], got["sent"], got["skipped"]) == (4, 0, {"no_email": 1, "no_consent": 1})
    assert (await client.get("/v1/campaigns/c2")).status == 401
    nope = await client.get("/v1/campaigns/zz", headers=auth)
    assert nope.status == 404 and (await nope.json())["code"] == "campaign_not_found"


def test_the_email_process_sends_what_a_campaign_queued_and_stops_on_sigterm(tmp_path):
    import signal

    with Relay() as relay:
        data, pids, config_file = setup(tmp_path, relay.port)
        out = subprocess.run([sys.executable, "-m", "collector", "campaign", "send", "--audience", "all", "--template", "news",
                              "--config", str(config_file)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        proc = subprocess.Popen([sys.executable, "-m", "collector", "email", "run", "--config", str(config_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while len(relay.received) < 4:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, f"{len(relay.received)} received"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        assert "@x.example" not in proc.stderr.read().decode()  # no address in a log line


def test_an_erased_person_s_pending_mail_is_dropped(tmp_path):
    from collector.config import load_config
    from collector.engage.destinations.privacy import forget
    from collector.profiles.database import open_store

    data, pids, config_file = setup(tmp_path, 2525)
    config = load_config(str(config_file), with_dev_source=False)
    outbox, profiles = open_outbox(data / "profiles.db"), open_store(str(data / "profiles.db"), reads_only=True)
    template = templates.parse("news", NEWS, Path("news.liquid"))
    assert campaigns.send(outbox, profiles, config, "all", template, "c3")["queued"] == 4
    counts = forget(outbox, {("user_id", "u0"), ("email", "p0@x.example")}, "reg_1", [])
    assert counts["dropped"] == 1
    left = [d["payload"]["to"] for d in outbox.deliveries(sender.LANE)]
    assert sorted(left) == ["p3@x.example", "p4@x.example", "p5@x.example"]
    profiles.close()
    outbox.close()


async def test_beside_the_collector_the_email_process_sends(tmp_path, aiohttp_client):
    from aiohttp.test_utils import TestServer

    from collector.app import SERVER_KWARGS, create_app
    from collector.config import load_config

    with Relay() as relay:
        data, pids, config_file = setup(tmp_path, relay.port)
        config = load_config(str(config_file), with_dev_source=False)
        outbox, profiles = open_outbox(data / "profiles.db"), SqliteStore(data / "profiles.db")
        campaigns.send(outbox, profiles, config, "all", templates.parse("news", NEWS, Path("news.liquid")), "c4")
        profiles.close()
        outbox.close()
        server = TestServer(create_app(config, profiles_builder=True))
        await server.start_server(**SERVER_KWARGS)
        await aiohttp_client(server)
        deadline = time.monotonic() + 60
        while len(relay.received) < 4:
            assert time.monotonic() < deadline, f"{len(relay.received)} received"
            await asyncio.sleep(0.1)
        await server.close()


def test_marketing_without_public_url_is_a_clear_error(tmp_path):
    data, pids, config_file = setup(tmp_path, 2525)
    config_file.write_text(config_file.read_text().replace('public_url = "https://c.example"\n', ""))
    out = subprocess.run([sys.executable, "-m", "collector", "campaign", "send", "--audience", "all", "--template", "news",
                          "--config", str(config_file)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and "marketing email needs [email] public_url" in out.stderr and "Traceback" not in out.stderr
