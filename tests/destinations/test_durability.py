"""A destinations process SIGKILLed at any point loses no delivery and creates none twice; what was
in flight is sent again with the same webhook-id (at least once)."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections import defaultdict

from collector.engage.destinations.consumer import delivery_id
from collector.engage.outbox.store import open_outbox
from collector.profiles.database import db_target
from helpers import eventually

from .conftest import ev, write_destination


async def start(config):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collector", "destinations", "run", "--data-dir", str(config.data_dir),
        "--engage-dir", str(config.engage_dir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)  # fmt: skip


def rows(config) -> list[tuple]:
    outbox = open_outbox(db_target(config))
    try:
        return outbox._all("SELECT id, destination, state FROM outbox")
    finally:
        outbox.close()


async def test_sigkill_at_any_point_loses_no_delivery_and_creates_none_twice(setup, receivers):
    config, log = setup
    rng = random.Random(30)
    slow = await receivers(answer=lambda n, r: (200, {}, rng.uniform(0, 0.05)))
    batched = await receivers()
    write_destination(config.engage_dir, "one", url=slow.url, timeout="1s", concurrency=3)
    write_destination(config.engage_dir, "many", url=batched.url, timeout="1s", batch_size=7)
    events = []
    for kill in range(5):
        process = await start(config)
        written = [ev() for _ in range(rng.randrange(50, 150))]
        events += written
        for i in range(0, len(written), 25):
            log.write(written[i : i + 25])
        before = len(slow.got) + len(batched.got)
        await eventually(lambda: len(slow.got) + len(batched.got) > before or process.returncode is not None, 30,
                         what="the process to send")  # fmt: skip
        assert process.returncode is None, (await process.stderr.read()).decode()
        await asyncio.sleep(rng.uniform(0, 0.3))  # not a wait for a result: the kill lands anywhere
        process.send_signal(signal.SIGKILL)
        await process.wait()
    process = await start(config)
    try:
        await eventually(lambda: {r.headers["webhook-id"] for r in slow.got} >= {delivery_id("one", e) for e in events}
                         and len({e["messageId"] for e in batched.events()}) == len(events), 60,
                         what="every event at both receivers")  # fmt: skip
        await eventually(lambda: {s for _, _, s in rows(config)} == {"delivered"}, 30, what="every delivery delivered")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    stored = rows(config)
    assert len(stored) == 2 * len(events)  # one delivery per event and destination, none twice
    assert {i for i, d, _ in stored if d == "one"} == {delivery_id("one", e) for e in events}
    assert all(r.verified for r in slow.got + batched.got)
    # a repeat (sent again after a kill) carries the same webhook-id and the same body
    seen = defaultdict(set)
    for r in slow.got + batched.got:
        seen[r.headers["webhook-id"]].add(r.body)
    assert all(len(bodies) == 1 for bodies in seen.values())
