"""The console's Destinations and Journeys pages (issues 30 and 32, item 6): each destination's deliveries by
state, per minute over the last hour and its dead ones with the answer that killed them, and a replay; each
journey's steps in order with the people at each; a person's runs on their profile. A real collector (its
destinations process and journeys process beside it) delivering to a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import CollectorProcess, wait_until
from tests.console.conftest import SOURCES, TOKEN, WRITE_KEY, batch, call
from tests.destinations.conftest import write_destination
from tests.journeys.conftest import write_journey

BEARER = {"Authorization": f"Bearer {TOKEN}"}
REFUSAL = "account 7 is closed"

CART = """\
name: Abandoned cart
entry: {event: Product Added, where: {field: properties.cart_id, op: exists}}
instance_key: properties.cart_id
reentry: always
exit_when: {field: event, value: Order Completed}
steps:
  - name: wait_for_order
    wait_for: {event: Order Completed, same_instance: true, timeout: 1h}
    on_event: [{exit: converted}]
  - name: remind
    send: {destination: crm}
"""


class Receiver:
    """A webhook receiver in a thread: ``/crm`` takes everything; ``/ads`` refuses (422) while ``refusing``."""

    def __init__(self) -> None:
        self.refusing = True
        self.got: dict[str, int] = {"crm": 0, "ads": 0}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                name = self.path.strip("/")
                receiver.got[name] = receiver.got.get(name, 0) + 1
                status, body = (422, REFUSAL) if name == "ads" and receiver.refusing else (200, "ok")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(collector, path: str, headers=BEARER):
    status, _, body = call(collector.url + path, headers=headers)
    return status, json.loads(body)


def by(rows: list[dict], key: str) -> dict:
    return {row[key]: row for row in rows}


@pytest.fixture(scope="module")
def engaged(tmp_path_factory):
    """A collector with two destinations (crm takes everything, ads refuses: 3 dead letters), the abandoned
    cart journey (ann waiting for her order, bob's converted), its profiles built; the receiver as
    ``collector.receiver``."""
    workdir = tmp_path_factory.mktemp("console-engage")
    receiver = Receiver()
    engage = workdir / "engage"
    write_destination(engage, "crm", url=receiver.url + "/crm")
    write_destination(engage, "ads", url=receiver.url + "/ads")
    write_journey(engage, "abandoned_cart", CART)
    try:
        with CollectorProcess(workdir, SOURCES, access_token=TOKEN, engage_dir=str(engage)) as running:
            running.receiver, running.started = receiver, time.time()
            events = [{"type": "track", "event": "Product Added", "userId": "ann", "properties": {"cart_id": "A"}},
                      {"type": "track", "event": "Product Added", "userId": "bob", "properties": {"cart_id": "B"}},
                      {"type": "track", "event": "Order Completed", "userId": "bob", "properties": {"cart_id": "B"}}]  # fmt: skip
            assert batch(running.url, events) == 200

            def settled():
                listed = by(get(running, "/console/api/destinations")[1]["data"], "name")
                journeys = get(running, "/console/api/journeys")[1]["data"]
                found = get(running, "/console/api/profiles/user_id:ann")[0] == 200
                return (found and listed.get("crm", {}).get("delivered") == 3 and listed.get("ads", {}).get("dead") == 3
                        and journeys and journeys[0]["active"] == 1 and journeys[0]["converted"] == 1)  # fmt: skip

            wait_until(settled, 60, what="the deliveries, the journey's runs and ann's profile")
            yield running
    finally:
        receiver.stop()


def test_each_destination_s_counts_deliveries_per_minute_and_dead_letters_with_their_answer(engaged):
    status, body = get(engaged, "/console/api/destinations")
    assert status == 200 and body["problems"] == []
    assert body["since"] % 60 == 0 and body["since"] <= time.time() - 59 * 60
    listed = by(body["data"], "name")
    crm, ads = listed["crm"], listed["ads"]
    assert (crm["delivered"], crm["pending"], crm["failed"], crm["dead"]) == (3, 0, 0, 0)
    assert (ads["delivered"], ads["pending"], ads["failed"], ads["dead"]) == (0, 0, 0, 3)
    assert all(len(series) == 60 for series in crm["minutes"].values())
    assert sum(crm["minutes"]["delivered"]) == 3 and sum(crm["minutes"]["dead"]) == 0
    assert sum(ads["minutes"]["dead"]) == 3 and sum(ads["minutes"]["delivered"]) == 0
    assert sum(crm["minutes"]["delivered"][-2:]) == 3  # in the last minute or two, not an hour ago
    assert crm["dead_letters"] == [] and len(ads["dead_letters"]) == 3
    assert {(d["last_status"], REFUSAL in d["last_answer"]) for d in ads["dead_letters"]} == {(422, True)}
    assert "payload" not in ads["dead_letters"][0]  # the answer, not the person's data


def test_each_journey_s_steps_in_order_with_the_people_at_each(engaged):
    status, body = get(engaged, "/console/api/journeys")
    assert status == 200 and body["problems"] == []
    (cart,) = body["data"]
    assert (cart["key"], cart["name"]) == ("abandoned_cart", "Abandoned cart")
    assert (cart["entered"], cart["active"], cart["exited"], cart["converted"]) == (2, 1, 0, 1)
    assert cart["steps"].index("wait_for_order") < cart["steps"].index("remind")
    assert cart["versions"][0]["waiting"] == {"wait_for_order": 1}


def test_a_person_s_journey_runs_on_their_profile(engaged):
    status, ann = get(engaged, "/console/api/profiles/user_id:ann")
    assert status == 200
    (run,) = ann["journeys"]
    assert (run["journey"], run["state"], run["step"], run["instance"]) == ("abandoned_cart", "active", "wait_for_order", "A")
    assert engaged.started + 3600 - 60 < run["next_at"] < time.time() + 3600
    status, bob = get(engaged, "/console/api/profiles/user_id:bob")
    (run,) = bob["journeys"]
    assert (run["state"], run["step"], run["outcome"], run["next_at"]) == ("ended", None, "converted", None)


@pytest.mark.parametrize("method, path", [("GET", "/console/api/destinations"), ("GET", "/console/api/journeys"),
                                          ("POST", "/console/api/destinations/ads/replay")])  # fmt: skip
def test_without_the_token_nothing(engaged, method, path):
    for headers, code in (({}, "missing_access_token"), ({"Authorization": f"Bearer {WRITE_KEY}"}, "invalid_access_token")):
        status, _, body = call(engaged.url + path, headers=headers, method=method, data=b"" if method == "POST" else None)
        assert status == 401 and json.loads(body)["code"] == code
    assert by(get(engaged, "/console/api/destinations")[1]["data"], "name")["ads"]["dead"] == 3  # nothing replayed


def test_a_replay_from_another_origin_on_the_cookie_is_refused_and_an_unknown_destination_is_a_404(engaged):
    status, _, body = call(engaged.url + "/console/api/destinations/nope/replay", headers=BEARER, method="POST", data=b"")
    assert status == 404 and json.loads(body)["code"] == "destination_not_found"
    _, headers, _ = call(engaged.url + "/console/signin", data=f"token={TOKEN}".encode(), method="POST",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    cookie = headers.get("Set-Cookie").split(";")[0]
    status, _, body = call(engaged.url + "/console/api/destinations/ads/replay", method="POST", data=b"",
                           headers={"Cookie": cookie, "Origin": "http://evil.example"})  # fmt: skip
    assert status == 403 and json.loads(body)["code"] == "cross_origin_request"
    assert by(get(engaged, "/console/api/destinations")[1]["data"], "name")["ads"]["dead"] == 3


def test_replay_sends_the_dead_ones_again(engaged):  # last: it changes the counts
    engaged.receiver.refusing = False
    status, _, body = call(engaged.url + "/console/api/destinations/ads/replay", headers=BEARER, method="POST", data=b"")
    assert status == 200 and json.loads(body) == {"replayed": 3, "enabled_again": False}
    wait_until(lambda: by(get(engaged, "/console/api/destinations")[1]["data"], "name")["ads"]["delivered"] == 3, 30,
               what="the replayed deliveries delivered")  # fmt: skip
    ads = by(get(engaged, "/console/api/destinations")[1]["data"], "name")["ads"]
    assert ads["dead"] == 0 and ads["dead_letters"] == [] and sum(ads["minutes"]["delivered"]) == 3
