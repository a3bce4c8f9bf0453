"""Sending through the outbox's email lane to a real SMTP server: delivered with a stable Message-ID,
4xx and connection errors retried (the same message), 5xx dead and the address undeliverable,
later sends to it skipped and counted; DKIM covering RFC 8058's headers, verified by dkimpy."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import dkim
import orjson

from collector.config import Email
from collector.engage.destinations.sender import Database
from collector.engage.email import sender, templates, tokens
from collector.engage.outbox.store import open_outbox
from mail.relay import Relay, free_port

KEY = b"k" * 32
CART = templates.parse("cart", "---\nsubject: Hi {{ traits.name }}\n---\n<p>Hello {{ traits.name }}</p>\n", Path("cart.liquid"))
RECEIPT = templates.parse("receipt", "---\nsubject: Receipt\nkind: transactional\n---\n<p>Thanks</p>\n", Path("receipt.liquid"))


def settings(port: int, **more) -> Email:
    return Email(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", from_="Shop <news@shop.example>",
                 public_url="https://c.example", rate_per_second=1000.0, retry_schedule=(0.2, 0.2), smtp_timeout=5.0,
                 **more)  # fmt: skip


def queue(outbox, payloads: list[dict]) -> None:
    outbox.begin()
    outbox.add([(p["id"], sender.LANE, orjson.dumps(p).decode(), p["profile_id"]) for p in payloads], "test", {}, 0)
    outbox.commit()


def person(pid: str, address: str) -> dict:
    return {"traits": {"email": address, "name": "<Ann>"}, "profile_id": pid}


async def run_until(lane: sender.EmailLane, outbox, done, seconds: float = 20.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(lane.run(stop))
    deadline = time.monotonic() + seconds
    try:
        while not done():
            assert time.monotonic() < deadline, f"not done in {seconds} s: {states(outbox)}"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def states(outbox) -> dict[str, str]:
    return {d["id"]: d["state"] for d in outbox.deliveries(sender.LANE, limit=1000)}


def final(outbox, n: int):
    return lambda: sum(s in ("delivered", "dead") for s in states(outbox).values()) == n


async def test_delivered_retried_refused_and_skipped(tmp_path):
    outbox = open_outbox(tmp_path / "profiles.db")
    db = Database(outbox)
    with Relay() as relay:
        relay.handler.rcpt_answers = {"gone@x.example": ["550 5.1.1 <gone@x.example> no such user"],
                                      "busy@x.example": ["451 4.3.0 try later", ""]}  # fmt: skip
        relay.handler.data_answers = ["", "451 4.3.0 queue full"]  # the second message read, then deferred
        s = settings(relay.port)
        now = time.time()
        queue(outbox, [sender.compose(s, KEY, CART, person("p1", "ann@x.example"), "msg_1", now),
                       sender.compose(s, KEY, CART, person("p2", "gone@x.example"), "msg_2", now),
                       sender.compose(s, KEY, CART, person("p3", "busy@x.example"), "msg_3", now)])  # fmt: skip
        lane = sender.EmailLane(s, db, KEY, concurrency=1)
        await run_until(lane, outbox, final(outbox, 3))
        assert states(outbox) == {"msg_1": "delivered", "msg_2": "dead", "msg_3": "delivered"}
        ids = [(tos, m["Message-ID"]) for tos, m, _ in relay.received]
        assert ids[0] == (["ann@x.example"], "<msg_1@shop.example>")
        # busy: refused at RCPT once (nothing read), read and deferred at DATA once, then accepted: the same message twice
        assert [i for i in ids if i[0] == ["busy@x.example"]] == [(["busy@x.example"], "<msg_3@shop.example>")] * 2
        busy = [raw for tos, _, raw in relay.received if tos == ["busy@x.example"]]
        assert busy[0] == busy[1]
        dead = outbox.deliveries(sender.LANE, "dead")[0]
        assert dead["last_status"] == 550 and "gone@" not in dead["last_error"] and "<address>" in dead["last_error"]
        message = relay.received[0][1]
        assert message["Subject"] == "Hi <Ann>" and "Hello &lt;Ann&gt;" in message.get_body(("html",)).get_content()
        assert message.get_body(("plain",)).get_content().splitlines() == ["Hello <Ann>"]
        assert message["List-Unsubscribe"] == f"<https://c.example/u/{tokens.make(KEY, 'p1')}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # later sends to the refused address: skipped and counted, never tried
        before = len(relay.received)
        queue(outbox, [sender.compose(s, KEY, RECEIPT, person("p2", "Gone@X.example"), "msg_4", time.time())])
        await run_until(lane, outbox, final(outbox, 4))
        assert len(relay.received) == before
        assert outbox.deliveries(sender.LANE, limit=10, after="msg_3")[0]["last_error"] == "skipped: undeliverable"
        assert outbox.stats()[sender.LANE]["skipped:undeliverable"] == 1
    db.close()


async def test_a_relay_down_is_retried_with_the_same_message(tmp_path):
    outbox = open_outbox(tmp_path / "profiles.db")
    db = Database(outbox)
    port = free_port()
    s = settings(port, **{})
    s = Email(**{**s.__dict__, "retry_schedule": (0.5, 0.5, 0.5)})
    queue(outbox, [sender.compose(s, KEY, RECEIPT, person("p1", "ann@x.example"), "msg_1", time.time())])
    lane = sender.EmailLane(s, db, KEY)
    await run_until(lane, outbox, lambda: outbox.deliveries(sender.LANE)[0]["attempts"] >= 1)
    first = outbox.deliveries(sender.LANE)[0]
    assert first["state"] == "failed" and "could not reach the relay" in first["last_error"]
    with Relay(port) as relay:
        await run_until(lane, outbox, final(outbox, 1))
        assert relay.received[0][1]["Message-ID"] == "<msg_1@shop.example>"
        assert "List-Unsubscribe" not in relay.received[0][1]  # transactional: no unsubscribe
    db.close()


async def test_unsubscribed_marketing_is_skipped_transactional_still_goes(tmp_path):
    from collector.engage.email import store

    outbox = open_outbox(tmp_path / "profiles.db")
    db = Database(outbox)
    store.create(outbox)
    store.unsubscribe(outbox, "p1", tokens.MARKETING)
    with Relay() as relay:
        s = settings(relay.port)
        queue(outbox, [sender.compose(s, KEY, CART, person("p1", "ann@x.example"), "msg_1", time.time()),
                       sender.compose(s, KEY, RECEIPT, person("p1", "ann@x.example"), "msg_2", time.time())])  # fmt: skip
        await run_until(sender.EmailLane(s, db, KEY), outbox, final(outbox, 2))
        assert states(outbox) == {"msg_1": "dead", "msg_2": "delivered"}
        assert [m["Subject"] for _, m, _ in relay.received] == ["Receipt"]
        assert outbox.stats()[sender.LANE]["skipped:unsubscribed"] == 1
    db.close()


async def test_frequency_cap(tmp_path):
    outbox = open_outbox(tmp_path / "profiles.db")
    db = Database(outbox)
    with Relay() as relay:
        s = Email(**{**settings(relay.port).__dict__, "frequency_cap": "2/day"})
        queue(outbox, [sender.compose(s, KEY, CART, person("p1", "ann@x.example"), f"msg_{i}", time.time()) for i in range(3)])
        await run_until(sender.EmailLane(s, db, KEY, concurrency=1), outbox, final(outbox, 3))
        assert len(relay.received) == 2
        assert outbox.stats()[sender.LANE]["skipped:frequency_cap"] == 1
    db.close()


async def test_dkim_signs_the_one_click_headers(tmp_path):
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                            capture_output=True).stdout  # fmt: skip
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    outbox = open_outbox(tmp_path / "profiles.db")
    db = Database(outbox)
    with Relay() as relay:
        s = Email(**{**settings(relay.port).__dict__, "dkim_domain": "shop.example", "dkim_selector": "s1",
                     "dkim_key_file": key})  # fmt: skip
        queue(outbox, [sender.compose(s, KEY, CART, person("p1", "ann@x.example"), "msg_1", time.time())])
        await run_until(sender.EmailLane(s, db, KEY), outbox, final(outbox, 1))
        raw = relay.received[0][2]
    names = {}

    def dns(name, timeout=5):
        names[name] = True
        return record if name == b"s1._domainkey.shop.example." else None

    assert dkim.verify(raw, dnsfunc=dns)
    assert b"s1._domainkey.shop.example." in names
    signed = dkim.DKIM(raw)
    header = [v for k, v in dkim.rfc822_parse(raw)[0] if k.lower() == b"dkim-signature"][0]
    h = dict(p.strip().split(b"=", 1) for p in header.split(b";") if b"=" in p)[b"h"]
    covered = {x.strip().lower() for x in h.replace(b"\r\n", b"").split(b":")}
    assert {b"list-unsubscribe", b"list-unsubscribe-post", b"from", b"subject", b"message-id"} <= covered
    del signed
    tampered = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: List-Unsubscribe=Two")
    assert not dkim.verify(tampered, dnsfunc=dns)
    db.close()


def test_quiet_hours_in_the_person_s_zone():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    window = (21 * 60, 8 * 60)
    ny = ZoneInfo("America/New_York")
    late = datetime(2026, 12, 8, 23, 30, tzinfo=ny).timestamp()
    assert sender.held_until(window, "America/New_York", late) == datetime(2026, 12, 9, 8, 0, tzinfo=ny).timestamp()
    noon = datetime(2026, 12, 8, 12, 0, tzinfo=ny).timestamp()
    assert sender.held_until(window, "America/New_York", noon) is None
    assert sender.held_until(window, "Not/AZone", noon) is None  # 17:00 UTC: not quiet there either
    assert sender.held_until(None, "America/New_York", late) is None


async def test_a_marketing_message_in_quiet_hours_is_held_not_sent(tmp_path):
    outbox = open_outbox(tmp_path / "profiles.db")
    db = Database(outbox)
    with Relay() as relay:
        s = Email(**{**settings(relay.port).__dict__, "quiet_hours": "00:00-23:59"})  # quiet all day but a minute
        one = person("p1", "ann@x.example")
        queue(outbox, [sender.compose(s, KEY, CART, one, "msg_1", time.time()),
                       sender.compose(s, KEY, RECEIPT, one, "msg_2", time.time())])  # fmt: skip
        await run_until(sender.EmailLane(s, db, KEY), outbox, final(outbox, 1))
        held = outbox.deliveries(sender.LANE)[0]
        if time.gmtime().tm_hour * 60 + time.gmtime().tm_min < 23 * 60 + 59:
            assert held["state"] == "pending" and held["next_at"] > time.time() and held["attempts"] == 0
            assert [m["Subject"] for _, m, _ in relay.received] == ["Receipt"]  # transactional: at once
    db.close()
