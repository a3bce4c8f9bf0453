"""The runner on a real log and a real SQLite profile database: entries, waits, wait_for with
reset_on, if, exit_when, reentry, versions. Moments are given to ``step``/``fire`` (their ``now``),
so these tests never sleep; tests/journeys/test_process.py runs the real process on the clock."""

from __future__ import annotations

import orjson

from collector.engage.journeys import definitions
from collector.engage.journeys.channels import delivery_id
from collector.engage.journeys.reads import person_runs, summary
from collector.engage.journeys.runner import Runner, run_id
from collector.engage.journeys.store import open_journeys
from collector.profiles.database import db_target

from .conftest import ev, write_destination, write_journey

T = 1_800_000_000.0

CART = """\
entry: {event: Product Added, where: {field: properties.cart_id, op: exists}}
instance_key: properties.cart_id
reentry: always
exit_when: {field: event, value: Order Completed}
steps:
  - name: wait_for_order
    wait_for: {event: Order Completed, same_instance: true, timeout: 3s, reset_on: [{event: Product Added, same_instance: true}, {event: Product Removed, same_instance: true}]}
    on_event: [{exit: converted}]
  - name: remind
    send: {destination: crm}
"""

RESERVATION = """\
entry: {event: Ticket Reserved}
instance_key: properties.reservation_id
exit_when: {field: event, value: Ticket Purchased}
steps:
  - name: before_expiry
    wait: {until: properties.expires_at, offset: -1h}
  - name: remind
    track: {event: Reservation Expiring}
"""


def iso(t: float) -> str:
    from collector.engage.journeys.channels import iso as fmt

    return fmt(t)


def make(config, **files):
    write_destination(config.engage_dir, "crm", url="http://127.0.0.1:9/hook")
    for key, text in files.items():
        write_journey(config.engage_dir, key, text)
    store = open_journeys(db_target(config))
    return store, Runner(store, config.data_dir, definitions.load(config.engage_dir))


def outbox(store) -> list[tuple]:
    rows = store._all("SELECT id, destination, payload FROM outbox ORDER BY id")
    store.commit()
    return rows


def runs(store) -> dict:
    rows = store._all("SELECT instance, state, outcome, next_at FROM journey_runs ORDER BY entered_at")
    store.commit()
    return {i: (s, o, n) for i, s, o, n in rows}


def test_the_abandoned_cart_restarts_when_the_cart_changes_and_ends_with_the_order(setup):
    config, log = setup
    store, runner = make(config, cart=CART)
    a = ev(event="Product Added", properties={"cart_id": "A"})
    log.write([a, ev(event="Product Added", properties={"cart_id": "B"})])
    assert runner.step(T) == 2
    log.write([ev(event="Product Removed", properties={"cart_id": "A"})])  # cart A changes 2 s later
    runner.step(T + 2)
    assert runs(store)["A"] == ("active", None, T + 2 + 3)
    log.write([ev(event="Order Completed", properties={"cart_id": "B"})])  # B is bought
    runner.step(T + 2.5)
    assert runs(store)["B"][:2] == ("ended", "converted")
    assert runner.fire(T + 3.5) == 0  # A's first timer was restarted: nothing is due
    assert outbox(store) == []
    assert runner.fire(T + 5.0) == 1
    (sent,) = outbox(store)
    assert sent[0] == delivery_id(run_id("cart", a, ""), 0) and sent[1] == "crm"
    assert runs(store)["A"][:2] == ("ended", "completed")
    # the reminder is for the cart that was abandoned: the entering event travels with it
    import orjson

    assert orjson.loads(sent[2])["data"]["event"]["properties"]["cart_id"] == "A"


def test_the_expiring_reservation_reminds_an_hour_before_unless_bought(setup):
    config, log = setup
    store, runner = make(config, reservation=RESERVATION)
    log.write([ev(event="Ticket Reserved", properties={"reservation_id": "r1", "expires_at": iso(T + 3 * 3600)}),
               ev(event="Ticket Reserved", userId="u2", properties={"reservation_id": "r2", "expires_at": iso(T + 3 * 3600)})])  # fmt: skip
    runner.step(T)
    assert {s[2] for s in runs(store).values()} == {T + 2 * 3600}
    log.write([ev(event="Ticket Purchased", userId="u2", properties={"reservation_id": "r2"})])
    runner.step(T + 60)
    assert runner.fire(T + 2 * 3600 - 1) == 0
    assert runner.fire(T + 2 * 3600) == 1
    told = store._all("SELECT profile_id, message FROM engage_announce")
    assert len(told) == 1 and '"Reservation Expiring"' in told[0][1] and '"u1"' in told[0][0]
    assert runs(store) == {"r1": ("ended", "completed", None), "r2": ("ended", "converted", None)}


def test_a_duplicated_event_enters_no_run_twice_and_reentry_is_obeyed(setup):
    config, log = setup
    once = CART.replace("reentry: always", "reentry: once")
    later = CART.replace("reentry: always", "reentry: {after: 10s}")
    store, runner = make(config, always=CART, once=once, later=later)
    first = ev(event="Product Added", properties={"cart_id": "A"})
    log.write([first, dict(first)])  # the same messageId twice
    runner.step(T)
    assert store._all("SELECT journey, COUNT(*) FROM journey_runs GROUP BY journey ORDER BY journey") == [
        ("always", 1), ("later", 1), ("once", 1)]  # fmt: skip
    runner.fire(T + 4)  # each sends its reminder and completes
    for t in (T + 5, T + 20):
        log.write([ev(event="Product Added", properties={"cart_id": "A"})])
        runner.step(t)
        runner.fire(t + 4)
    counted = dict(store._all("SELECT journey, COUNT(*) FROM journey_runs GROUP BY journey"))
    assert counted == {"always": 3, "once": 1, "later": 2}  # later: not at T+5 (within 10 s), again at T+20
    log.write([first])  # a replay of the first event, after its run ended
    runner.step(T + 30)
    assert dict(store._all("SELECT journey, COUNT(*) FROM journey_runs GROUP BY journey")) == counted


def test_exit_when_ends_a_run_at_any_step_and_if_branches(setup):
    config, log = setup
    text = """\
entry: {event: Signed Up}
exit_when: {field: event, value: Subscribed}
steps:
  - if: {field: properties.plan, value: pro}
    then: [{send: {destination: crm}}]
    else: [{track: {event: Free Welcome}}]
  - name: later
    wait: 5s
  - send: {destination: crm}
"""
    store, runner = make(config, onboarding=text)
    log.write([ev(event="Signed Up", userId="pro", properties={"plan": "pro"}), ev(event="Signed Up", userId="free")])
    runner.step(T)
    assert len(outbox(store)) == 1 and len(store._all("SELECT 1 FROM engage_announce")) == 1
    log.write([ev(event="Subscribed", userId="free")])
    runner.step(T + 1)
    runner.fire(T + 10)
    assert len(outbox(store)) == 2  # pro's second send; free exited at the wait
    rows = summary(store, runner.journeys)
    assert rows[0]["converted"] == 1 and rows[0]["completed"] == 1 and rows[0]["entered"] == 2
    (free,) = person_runs(store, "onboarding", [("user_id", "free")])
    assert free["outcome"] == "converted" and free["state"] == "ended"


def test_a_changed_definition_strands_no_run(setup):
    config, log = setup
    store, runner = make(config, cart=CART)
    log.write([ev(event="Product Added", properties={"cart_id": "A"})])
    runner.step(T)
    runner.close()
    write_journey(config.engage_dir, "cart", CART.replace("timeout: 3s", "timeout: 60s").replace("name: remind", "name: nudge"))
    runner = Runner(store, config.data_dir, definitions.load(config.engage_dir))
    log.write([ev(event="Product Added", properties={"cart_id": "B"})])
    runner.step(T + 1)
    rows = summary(store, runner.journeys)[0]["versions"]
    assert [(v["current"], v["active"], v["waiting"]) for v in rows] == [(True, 1, {"wait_for_order": 1}),
                                                                         (False, 1, {"wait_for_order": 1})]  # fmt: skip
    assert runner.fire(T + 4) == 1  # A keeps its 3 s
    assert runs(store)["B"][2] == T + 61
    (sent,) = outbox(store)
    import orjson

    assert orjson.loads(sent[2])["data"]["step"] == "remind"  # the old version's step


def test_a_suppressed_person_s_runs_end_and_an_erased_one_s_are_removed_with_their_sends(setup):
    from collector.engage.journeys.privacy import eraser
    from collector.profiles.person import Person

    config, log = setup
    store, runner = make(config, later="entry: {event: Signed Up}\nsteps:\n  - send: {destination: crm}\n  - wait: 5s\n"
                                         "  - send: {destination: crm}\n")  # fmt: skip
    log.write([ev(event="Signed Up", userId=u) for u in ("quiet", "gone", "stays")])
    runner.step(T)
    assert len(outbox(store)) == 3
    erase = eraser(config)
    assert erase(Person([("user_id", "quiet")]), "reg_1", False) == {"dropped": 1, "removed": 0, "forwarded": 0, "runs_ended": 1}
    assert erase(Person([("user_id", "gone")]), "reg_2") == {"dropped": 1, "removed": 0, "forwarded": 0, "runs_removed": 1}
    runner.fire(T + 10)
    assert [orjson.loads(p)["data"]["userId"] for _, _, p in outbox(store)] == ["stays", "stays"]
    assert runs_by_user(store) == {"quiet": ("ended", "suppressed"), "stays": ("ended", "completed")}


def runs_by_user(store) -> dict:
    rows = store._all("SELECT entry, state, outcome FROM journey_runs")
    store.commit()
    return {orjson.loads(e)["userId"]: (s, o) for e, s, o in rows}


def test_an_audience_entered_enters_the_journey(setup):
    config, log = setup
    store, runner = make(config, vip="entry: {audience: high_value}\nsteps:\n  - send: {destination: crm}\n")
    log.write([ev(event="Audience Entered", userId="ann", source="intilery", properties={"audience_key": "high_value"}),
               ev(event="Audience Entered", userId="bob", source="intilery", properties={"audience_key": "other"})])  # fmt: skip
    runner.step(T)
    (sent,) = outbox(store)
    assert orjson.loads(sent[2])["data"]["userId"] == "ann"


def test_a_new_journey_takes_in_no_one_from_the_log_s_history(setup):
    config, log = setup
    old = ev(event="Product Added", properties={"cart_id": "old"}, receivedAt="2026-01-01T00:00:00.000Z")
    log.write([old, ev(event="Product Added", properties={"cart_id": "new"})])
    store, runner = make(config, cart=CART)  # switched on after the old cart's event was received
    runner.step(T)
    assert list(runs(store)) == ["new"]


def test_a_late_event_of_a_person_is_applied_in_the_order_of_its_timestamp(setup):
    import time

    from collector.engage.journeys.channels import iso as fmt
    from collector.engage.journeys.runner import HOLD

    config, log = setup
    store, runner = make(config, cart=CART)
    log.write([ev(event="Order Completed", timestamp="2026-12-08T02:00:01.000Z", receivedAt=fmt(time.time()),
                  properties={"cart_id": "A"})])  # fmt: skip
    assert runner.step(T) == 0  # held: a late one of the person may still come
    # the cart's Product Added, from an offline device's batch: earlier in time, received later
    log.write([ev(event="Product Added", timestamp="2026-12-08T02:00:00.000Z", receivedAt=fmt(time.time()),
                  properties={"cart_id": "A"})])  # fmt: skip
    deadline = time.time() + HOLD + 10
    while not runner.step(T) and time.time() < deadline:
        time.sleep(0.05)
    assert runs(store) == {"A": ("ended", "converted", None)}  # entered, then bought: no reminder
    assert runner.fire(T + 10) == 0 and outbox(store) == []


def test_the_shipped_examples_do_what_they_say(setup):
    """The demo's two files as shipped (two hours, one hour before expiry), their moments given."""
    from pathlib import Path

    config, log = setup
    shipped = Path(__file__).resolve().parents[2] / "demo_site" / "engage" / "journeys"
    store, runner = make(config, **{p.stem: p.read_text() for p in shipped.glob("*.yaml")})
    log.write([ev(event="Product Added", userId="ann"), ev(event="Product Added", userId="bob"),
               ev(event="Ticket Reserved", userId="cy", properties={"reservation_id": "r1", "expires_at": iso(T + 5 * 3600)}),
               ev(event="Ticket Reserved", userId="di", properties={"reservation_id": "r2", "expires_at": iso(T + 5 * 3600)})])  # fmt: skip
    runner.step(T)
    log.write([ev(event="Product Added", userId="ann"), ev(event="Order Completed", userId="bob"),
               ev(event="Ticket Purchased", userId="di", properties={"reservation_id": "r2"})])  # fmt: skip
    runner.step(T + 3600)  # ann's cart changes an hour later; bob buys; di buys her ticket
    assert runner.fire(T + 2 * 3600) == 0  # ann's two hours start again from the change
    assert runner.fire(T + 3 * 3600) == 1  # ann's reminder
    assert runner.fire(T + 4 * 3600) == 1  # cy's: an hour before her reservation expires
    told = sorted((orjson.loads(m)["userId"], orjson.loads(m)["event"]) for (m,) in store._all("SELECT message FROM engage_announce"))
    assert told == [("ann", "Cart Reminder Due"), ("cy", "Reservation Expiring")]  # nobody messaged after buying
