"""One destination that hangs or fails does not slow another; a circuit breaker stops hammering it."""

from __future__ import annotations

import asyncio

from helpers import eventually

from .conftest import ev, write_destination
from .test_webhooks import deliveries, running


async def test_a_hanging_destination_does_not_delay_a_healthy_one(setup, receivers):
    config, log = setup
    hanging = await receivers(hold=asyncio.Event())  # answers nothing until the test lets it
    healthy = await receivers()
    write_destination(config.engage_dir, "hangs", url=hanging.url, timeout="1h", concurrency=2)
    write_destination(config.engage_dir, "healthy", url=healthy.url, concurrency=2)
    async with running(config):
        log.write([ev() for _ in range(50)])
        await eventually(lambda: len(hanging.got) == 2, 20, what="the hanging receiver to hold both its workers")
        log.write([ev() for _ in range(200)])
        await eventually(lambda: len(healthy.got) == 250, 30, what="every event at the healthy receiver")
        # all 250 arrived while the other destination's two requests were still unanswered
        assert len(hanging.got) == 2 and not hanging.hold.is_set()
        hanging.hold.set()
        await eventually(lambda: len(hanging.got) == 250, 30, what="the hanging one to catch up once it answers")
    assert len(deliveries(config, "healthy", "delivered")) == 250 and len(deliveries(config, "hangs", "delivered")) == 250


async def test_a_failing_destination_is_not_hammered(setup, receivers):
    config, log = setup
    failing = await receivers(answer=lambda n, r: (500, {}, 0))
    write_destination(config.engage_dir, "fails", url=failing.url, retry_schedule=["1s"] * 20, concurrency=4)
    log.write([ev() for _ in range(100)])
    async with running(config):
        await eventually(lambda: len(failing.got) >= 5, 20, what="the first failures")
        await asyncio.sleep(4)
    # without a breaker: 100 events tried and each retried every second, hundreds of requests in 4 s;
    # with it: 5 failures open it for 1 s, then one probe each time it closes (1 s, 2 s, 4 s ...)
    assert len(failing.got) <= 12, f"{len(failing.got)} requests to a failing endpoint in ~4 s"
    assert len(deliveries(config, "fails", "pending")) >= 80  # most never tried yet, still kept
