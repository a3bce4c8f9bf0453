"""``intilery serve`` runs the journeys process beside the collector when there are journey files:
the abandoned cart, end to end (events posted over HTTP, the reminder at a real receiver, nothing
for the cart that was bought); a mistake in a journey stops the collector at start."""

from __future__ import annotations

import asyncio

import aiohttp

from helpers import CollectorProcess, eventually

from .conftest import write_destination, write_journey

CART = """\
name: Abandoned cart
entry: {event: Product Added, where: {field: properties.cart_id, op: exists}}
instance_key: properties.cart_id
reentry: always
exit_when: {field: event, value: Order Completed}
steps:
  - name: wait_for_order
    wait_for: {event: Order Completed, same_instance: true, timeout: 2s, reset_on: {event: Product Added, same_instance: true}}
    on_event: [{exit: converted}]
  - name: remind
    send: {destination: crm}
"""


async def post(url: str, event: str, user: str, cart: str) -> None:
    async with aiohttp.ClientSession() as client:
        answer = await client.post(url + "/v1/track", headers={"X-Write-Key": "wk_test"},
                                   json={"event": event, "userId": user, "properties": {"cart_id": cart}})  # fmt: skip
        assert answer.status == 200


async def test_the_abandoned_cart_end_to_end(tmp_path, receivers):
    receiver = await receivers()
    engage = tmp_path / "engage"
    write_destination(engage, "crm", url=receiver.url, filter={"field": "event", "value": "Never"})
    write_journey(engage, "abandoned_cart", CART)
    collector = CollectorProcess(tmp_path, engage_dir=str(engage))
    await asyncio.to_thread(collector.start)
    try:
        await post(collector.url, "Product Added", "ann", "A")
        await post(collector.url, "Product Added", "bob", "B")
        await post(collector.url, "Order Completed", "bob", "B")
        await eventually(lambda: receiver.got, 60, what="ann's reminder")
        await asyncio.sleep(1)  # anything else would have come by now (bob's cart's timer too)
    finally:
        await asyncio.to_thread(collector.stop)
    (got,) = receiver.got
    data = got.json["data"]
    assert got.verified and got.json["type"] == "journey.send"
    assert (data["journey"], data["userId"], data["instance"], data["step"]) == ("abandoned_cart", "ann", "A", "remind")


def test_a_mistake_in_a_journey_stops_the_collector_at_start_with_its_file_and_line(tmp_path):
    engage = tmp_path / "engage"
    path = write_journey(engage, "cart", CART.replace(", timeout: 2s", ""))
    write_destination(engage, "crm", url="https://hooks.example.com/in")
    collector = CollectorProcess(tmp_path, engage_dir=str(engage))
    try:
        collector.start()
    except RuntimeError as exc:
        said = str(exc)
    else:
        collector.stop()
        raise AssertionError("the collector started with a broken journey")
    assert f"{path}:8: a 'wait_for' needs a 'timeout'" in said and "Traceback" not in said
