"""An erasure drops the person's undelivered deliveries (counted), removes the rest, and sends a
``privacy.delete`` webhook to each destination with ``forward_deletes: true``, once."""

from __future__ import annotations

import asyncio

from collector.engage.destinations.privacy import eraser
from collector.profiles.person import Person
from helpers import eventually

from .conftest import ev, write_destination
from .test_webhooks import deliveries, running


async def test_an_erasure_drops_pending_deliveries_and_forwards_the_delete(setup, receivers):
    config, log = setup
    receiver = await receivers()
    held = await receivers(answer=lambda n, r: (503, {}, 0))  # keeps everything pending
    write_destination(config.engage_dir, "crm", url=receiver.url, forward_deletes=True)
    write_destination(config.engage_dir, "slow", url=held.url, retry_schedule=["1h"])
    log.write([ev(userId="gone"), ev(userId="gone"), ev(userId="stays")])
    async with running(config):
        await eventually(lambda: len(deliveries(config, "crm", "delivered")) == 3 and len(deliveries(config, "slow", "failed")) == 3,
                         20, what="three delivered, three failed")  # fmt: skip
        erase = eraser(config)
        person = Person([("user_id", "gone")])
        stats = await asyncio.to_thread(erase, person, "reg_1")
        assert stats == {"dropped": 2, "removed": 2, "forwarded": 1}
        assert await asyncio.to_thread(erase, person, "reg_1") == {"dropped": 0, "removed": 0, "forwarded": 1}
        await eventually(lambda: any(r.json["type"] == "privacy.delete" for r in receiver.got), 20, what="the delete")
    deletes = [r for r in receiver.got if r.json["type"] == "privacy.delete"]
    assert len(deletes) == 1 and deletes[0].verified  # the second run queued none again
    assert deletes[0].json["data"] == {"regulateId": "reg_1", "identifiers": [{"type": "user_id", "value": "gone"}]}
    left = [d["payload"]["data"]["userId"] for d in deliveries(config, "slow")]
    assert left == ["stays"]
    assert all(d["payload"]["type"] == "privacy.delete" or d["payload"]["data"]["userId"] == "stays"
               for d in deliveries(config, "crm"))  # fmt: skip


async def test_a_suppression_drops_what_is_not_sent_and_keeps_what_was(setup, receivers):
    config, log = setup
    receiver = await receivers()
    held = await receivers(answer=lambda n, r: (503, {}, 0))
    write_destination(config.engage_dir, "crm", url=receiver.url, forward_deletes=True)
    write_destination(config.engage_dir, "slow", url=held.url, retry_schedule=["1h"])
    log.write([ev(userId="quiet"), ev(userId="stays")])
    async with running(config):
        await eventually(lambda: len(deliveries(config, "crm", "delivered")) == 2 and len(deliveries(config, "slow", "failed")) == 2,
                         20, what="two delivered, two failed")  # fmt: skip
        stats = await asyncio.to_thread(eraser(config), Person([("user_id", "quiet")]), "reg_2", False)
    assert stats == {"dropped": 1, "removed": 0, "forwarded": 0}
    assert [d["payload"]["data"]["userId"] for d in deliveries(config, "slow")] == ["stays"]
    assert len(deliveries(config, "crm", "delivered")) == 2  # what was sent stays on record (no erasure asked)
