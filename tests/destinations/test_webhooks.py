"""Webhooks in the Standard Webhooks format, checked by the ``standardwebhooks`` package: signatures
(one secret, two during a rotation), one event a request and batches, retries on the schedule with
the same webhook-id, Retry-After, dead letters with the last request and answer, 410, redirects."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from standardwebhooks import Webhook

from collector.engage.destinations import service
from collector.engage.destinations.consumer import delivery_id
from collector.engage.outbox.store import open_outbox
from collector.profiles.database import db_target
from helpers import eventually

from .conftest import OTHER_SECRET, SECRET, ev, write_destination


@contextlib.asynccontextmanager
async def running(config):
    """The destinations service in this event loop, until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.serve(config, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def deliveries(config, name: str, state: str | None = None) -> list[dict]:
    outbox = open_outbox(db_target(config))
    try:
        return outbox.deliveries(name, state, 1000)
    finally:
        outbox.close()


async def test_every_event_arrives_signed_to_the_standard(setup, receivers):
    config, log = setup
    receiver = await receivers()
    write_destination(config.engage_dir, "crm", url=receiver.url)
    events = [ev(), ev(kind="identify", traits={"email": "a@example.com"}), ev(kind="page", name="Home")]
    log.write(events)
    async with running(config):
        await eventually(lambda: len(receiver.got) >= 3, 20, what="three webhooks")
    assert [r.verified for r in receiver.got] == [True] * 3
    bodies = sorted((r.json for r in receiver.got), key=lambda b: b["data"]["messageId"])
    assert [(b["type"], b["data"]) for b in bodies] == [(e["type"], e) for e in sorted(events, key=lambda e: e["messageId"])]
    assert all(b["timestamp"] == "2026-12-08T02:00:00.000Z" for b in bodies)
    assert sorted(receiver.ids()) == sorted(delivery_id("crm", e) for e in events)
    headers = receiver.got[0].headers
    assert headers["Content-Type"] == "application/json" and headers["webhook-signature"].startswith("v1,")
    assert {d["state"] for d in deliveries(config, "crm")} == {"delivered"}


async def test_two_secrets_during_a_rotation_give_two_signatures(setup, receivers):
    config, log = setup
    receiver = await receivers(secret=OTHER_SECRET)
    write_destination(config.engage_dir, "crm", url=receiver.url, secret=[SECRET, OTHER_SECRET])
    log.write([ev()])
    async with running(config):
        await eventually(lambda: receiver.got, 20, what="a webhook")
    got = receiver.got[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(got.body, got.headers)  # the old secret's receiver, and the new one's, both accept it
    assert got.verified


async def test_batches_carry_up_to_batch_size_events(setup, receivers):
    config, log = setup
    receiver = await receivers()
    write_destination(config.engage_dir, "warehouse", url=receiver.url, batch_size=10)
    events = [ev() for _ in range(25)]
    log.write(events)
    async with running(config):
        await eventually(lambda: len(receiver.events()) >= 25, 20, what="25 events")
    assert all(r.verified for r in receiver.got)
    assert all(r.json["type"] == "batch" and len(r.json["data"]["batch"]) <= 10 for r in receiver.got)
    assert len(receiver.got) >= 3
    assert sorted(e["messageId"] for e in receiver.events()) == sorted(e["messageId"] for e in events)


async def test_retries_keep_the_webhook_id_and_follow_the_schedule(setup, receivers):
    config, log = setup
    receiver = await receivers(answer=lambda n, r: (503, {}, 0) if n <= 2 else None)
    write_destination(config.engage_dir, "crm", url=receiver.url, retry_schedule=["1s", "2s"])
    log.write([ev()])
    async with running(config):
        await eventually(lambda: len(receiver.got) >= 3 and deliveries(config, "crm", "delivered"), 30, what="the third attempt")
    assert len(set(receiver.ids())) == 1 and all(r.verified for r in receiver.got)
    first, second, third = (r.at for r in receiver.got)
    assert 0.85 <= second - first and 1.75 <= third - second  # 1 s, then 2 s, each ±10%
    (done,) = deliveries(config, "crm")
    assert done["attempts"] == 3 and done["last_status"] == 200


async def test_retry_after_is_honoured(setup, receivers):
    config, log = setup
    receiver = await receivers(answer=lambda n, r: (429, {"Retry-After": "3"}, 0) if n == 1 else None)
    write_destination(config.engage_dir, "crm", url=receiver.url, retry_schedule=["1s"])
    log.write([ev()])
    async with running(config):
        await eventually(lambda: len(receiver.got) >= 2, 30, what="the retry")
    assert receiver.got[1].at - receiver.got[0].at >= 2.9


async def test_a_4xx_is_dead_at_once_with_the_last_request_and_answer(setup, receivers):
    config, log = setup
    receiver = await receivers(answer=lambda n, r: (400, {}, 0))
    write_destination(config.engage_dir, "crm", url=receiver.url, retry_schedule=["1s"])
    event = ev()
    log.write([event])
    async with running(config):
        (dead,) = await eventually(lambda: deliveries(config, "crm", "dead"), 20, what="a dead delivery")
        await asyncio.sleep(1.5)  # past the schedule's first wait: nothing is retried
    assert len(receiver.got) == 1
    assert dead["attempts"] == 1 and dead["last_status"] == 400 and "no: 400" in dead["last_answer"]
    assert "not retried" in dead["last_error"] and event["messageId"] in dead["last_request"]
    assert dead["last_request"].startswith(f"POST {receiver.url}")


async def test_a_used_up_schedule_is_dead(setup, receivers):
    config, log = setup
    receiver = await receivers(answer=lambda n, r: (500, {}, 0))
    write_destination(config.engage_dir, "crm", url=receiver.url, retry_schedule=["1s"])
    log.write([ev()])
    async with running(config):
        (dead,) = await eventually(lambda: deliveries(config, "crm", "dead"), 20, what="a dead delivery")
    assert len(receiver.got) == 2 and dead["attempts"] == 2
    assert "answered 500" in dead["last_error"] and "used up" in dead["last_error"]


async def test_410_disables_the_destination_which_keeps_its_events_for_replay(setup, receivers):
    config, log = setup
    gone = [True]
    receiver = await receivers(answer=lambda n, r: (410, {}, 0) if gone[0] else None)
    write_destination(config.engage_dir, "crm", url=receiver.url)
    log.write([ev()])
    async with running(config):
        await eventually(lambda: deliveries(config, "crm", "dead"), 20, what="the 410")
        log.write([ev(), ev()])
        await eventually(lambda: len(deliveries(config, "crm", "pending")) == 2, 20, what="two kept")
        await asyncio.sleep(1.5)
        assert len(receiver.got) == 1  # disabled: nothing more sent
        outbox = open_outbox(db_target(config))
        assert "410" in outbox.disabled()["crm"][1]
        gone[0] = False
        assert outbox.replay("crm") == 1 and outbox.enable("crm")
        outbox.close()
        await eventually(lambda: len(deliveries(config, "crm", "delivered")) == 3, 20, what="all three delivered")


async def test_redirects_are_not_followed(setup, receivers):
    config, log = setup
    target = await receivers()
    receiver = await receivers(answer=lambda n, r: (307, {"Location": target.url}, 0))
    write_destination(config.engage_dir, "crm", url=receiver.url)
    log.write([ev()])
    async with running(config):
        (dead,) = await eventually(lambda: deliveries(config, "crm", "dead"), 20, what="a dead delivery")
    assert target.got == [] and "redirect" in dead["last_error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_addresses_are_refused_after_dns(setup, receivers, host):
    config, log = setup
    receiver = await receivers()
    write_destination(config.engage_dir, "crm", url=receiver.url.replace("127.0.0.1", host), allow_private_network=False)
    log.write([ev()])
    async with running(config):
        (dead,) = await eventually(lambda: deliveries(config, "crm", "dead"), 20, what="a refused delivery")
    assert receiver.got == []
    assert "loopback" in dead["last_error"] and "allow_private_network" in dead["last_error"]
