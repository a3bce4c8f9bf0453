"""The journeys process, on the clock: a SIGKILL at any point loses no run, skips no step and
sends nothing twice; a timer that fell due while it was down fires at its first pass after the
restart; with the destinations process, the reminder reaches a real receiver once."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time

import orjson

from collector.engage.journeys.channels import delivery_id
from collector.engage.journeys.runner import run_id
from collector.engage.journeys.store import open_journeys
from collector.profiles.database import db_target
from helpers import eventually

from .conftest import ev, write_destination, write_journey

STEPS = """\
entry: {event: Signed Up}
steps:
  - send: {destination: crm}
  - wait: 1s
  - send: {destination: crm}
  - track: {event: Welcome Done}
  - wait: 1s
  - send: {destination: crm}
"""


async def start(config, what: str = "journeys"):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collector", what, "run", "--data-dir", str(config.data_dir),
        "--engage-dir", str(config.engage_dir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)  # fmt: skip


def query(config, sql: str) -> list[tuple]:
    store = open_journeys(db_target(config))
    try:
        return store._all(sql)
    finally:
        store.close()


async def test_sigkill_at_any_point_loses_no_run_and_sends_nothing_twice(setup):
    config, log = setup
    rng = random.Random(32)
    write_destination(config.engage_dir, "crm", url="http://127.0.0.1:9/hook")
    write_journey(config.engage_dir, "welcome", STEPS)
    events = []
    for kill in range(6):
        process = await start(config)
        written = [ev(event="Signed Up", userId=f"u{len(events) + i}") for i in range(rng.randrange(20, 60))]
        events += written
        for i in range(0, len(written), 10):
            log.write(written[i : i + 10])
        await asyncio.sleep(rng.uniform(0.3, 1.5))  # not a wait for a result: the kill lands anywhere
        assert process.returncode is None, (await process.stderr.read()).decode()
        process.send_signal(signal.SIGKILL)
        await process.wait()
    process = await start(config)
    try:
        await eventually(lambda: query(config, "SELECT COUNT(*) FROM journey_runs WHERE state = 'ended'")[0][0] == len(events),
                         60, what="every run to complete")  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    runs = query(config, "SELECT id, outcome FROM journey_runs")
    assert sorted(r for r, _ in runs) == sorted(run_id("welcome", e, "") for e in events)  # one run per person, none lost
    assert {o for _, o in runs} == {"completed"}
    sent = [i for (i,) in query(config, "SELECT id FROM outbox")]
    # every step of every run, exactly once: the first send is step 0's id ... (the ids are the run's and the step's)
    assert len(sent) == len(set(sent)) == 3 * len(events)
    ids = {delivery_id(r, pc) for r, _ in runs for pc in range(6)}
    assert set(sent) <= ids
    told = query(config, "SELECT message FROM engage_announce")
    assert len(told) == len(events) and {orjson.loads(m)["userId"] for (m,) in told} == {e["userId"] for e in events}


async def test_a_timer_that_fell_due_while_down_fires_at_once_after_the_restart(setup):
    config, log = setup
    write_destination(config.engage_dir, "crm", url="http://127.0.0.1:9/hook")
    write_journey(config.engage_dir, "later", "entry: {event: Signed Up}\nsteps:\n  - wait: 2s\n  - send: {destination: crm}\n")
    process = await start(config)
    log.write([ev(event="Signed Up", userId=f"u{i}") for i in range(50)])
    await eventually(lambda: query(config, "SELECT COUNT(*) FROM journey_runs WHERE next_at IS NOT NULL")[0][0] == 50, 30,
                     what="50 runs waiting")  # fmt: skip
    process.send_signal(signal.SIGKILL)
    await process.wait()
    (due,) = query(config, "SELECT MAX(next_at) FROM journey_runs")[0]
    while time.time() < due + 1:  # down until every timer is a second overdue
        await asyncio.sleep(0.1)
    assert query(config, "SELECT COUNT(*) FROM outbox")[0][0] == 0
    restarted = time.time()
    process = await start(config)
    try:
        await eventually(lambda: query(config, "SELECT COUNT(*) FROM outbox")[0][0] == 50, 30, what="the 50 overdue sends")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    created = [c for (c,) in query(config, "SELECT created FROM outbox")]
    print(f"overdue timers fired {max(created) - restarted:.3f} s after the restart (process start included)")
    assert min(created) >= due - 2  # none fired early


async def test_the_reminder_reaches_a_receiver_once_through_the_destinations_process(setup, receivers):
    config, log = setup
    got = await receivers()
    # the destination's own filter lets no event of the log through: it receives the journey's sends alone
    write_destination(config.engage_dir, "crm", url=got.url, filter={"field": "event", "value": "Nothing"})
    write_journey(config.engage_dir, "cart", (
        "entry: {event: Product Added}\ninstance_key: properties.cart_id\nreentry: always\n"
        "steps:\n  - wait_for: {event: Order Completed, same_instance: true, timeout: 2s,"
        " reset_on: {event: Product Added, same_instance: true}}\n    on_event: [{exit: converted}]\n"
        "  - send: {destination: crm}\n"))  # fmt: skip
    journeys, destinations = await start(config), await start(config, "destinations")
    try:
        added = ev(event="Product Added", properties={"cart_id": "A"})
        log.write([added, ev(event="Product Added", properties={"cart_id": "B"})])
        await asyncio.sleep(1)  # the cart changes a second later: two more seconds from then
        log.write([ev(event="Product Added", properties={"cart_id": "A"}), ev(event="Order Completed", properties={"cart_id": "B"})])
        changed = time.time()
        await eventually(lambda: got.got, 30, what="the reminder")
        await asyncio.sleep(1)  # anything else would have come by now
    finally:
        for p in (journeys, destinations):
            p.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(p.wait(), 30) == 0
    (reminder,) = got.got
    assert reminder.verified and reminder.headers["webhook-id"] == delivery_id(run_id("cart", added, ""), 0)
    assert reminder.json["type"] == "journey.send" and reminder.json["data"]["instance"] == "A"
    assert reminder.at >= changed + 2 - 0.2  # restarted by the change (the first timer would have fired at +1 s)


async def test_sighup_reads_the_files_again_and_runs_keep_their_version(setup):
    config, log = setup
    write_destination(config.engage_dir, "crm", url="http://127.0.0.1:9/hook")
    text = "entry: {event: Signed Up}\nreentry: always\nsteps:\n  - name: long\n    wait: 1h\n  - send: {destination: crm}\n"
    write_journey(config.engage_dir, "welcome", text)
    process = await start(config)
    try:
        log.write([ev(event="Signed Up", userId="early")])
        await eventually(lambda: query(config, "SELECT COUNT(*) FROM journey_runs")[0][0] == 1, 30, what="the first run")
        write_journey(config.engage_dir, "welcome", text.replace("name: long\n    wait: 1h", "name: short\n    wait: 1s"))
        process.send_signal(signal.SIGHUP)
        await eventually(lambda: query(config, "SELECT COUNT(*) FROM journey_versions")[0][0] == 2, 30, what="the new version")
        log.write([ev(event="Signed Up", userId="late")])
        await eventually(lambda: query(config, "SELECT COUNT(*) FROM outbox")[0][0] == 1, 30, what="the new version's send")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    runs = {orjson.loads(e)["userId"]: (s, v) for e, s, v in query(config, "SELECT entry, state, version FROM journey_runs")}
    assert runs["early"][0] == "active" and runs["late"][0] == "ended" and runs["early"][1] != runs["late"][1]
