"""A journey's ``send: {email: TEMPLATE}``: the run puts one delivery on the email lane, rendered for
the person (their traits, the entering event) when it is sent, to a real SMTP server; a journey
naming a template that does not exist is a mistake with its line."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from collector.config import Email
from collector.engage.definitions import DefinitionError
from collector.engage.destinations.sender import Database
from collector.engage.email import sender
from collector.engage.journeys import definitions
from collector.engage.journeys.runner import Runner
from collector.engage.journeys.store import open_journeys
from collector.profiles.builder import Builder
from collector.profiles.database import db_target, open_store
from collector.profiles.rules import Rules
from mail.relay import Relay
from mail.test_sending import final, run_until
from tests.destinations.conftest import setup  # noqa: F401 (fixture)
from tests.journeys.conftest import ev, write_journey

T = time.time()
JOURNEY = "entry: {event: Product Added}\nsteps:\n  - name: tell\n    send: {email: cart}\n"
TEMPLATE = "---\nsubject: \"{{ event.properties.name }} is waiting, {{ traits.first_name }}\"\n---\n<p>{{ event.properties.name }}</p>\n"


async def test_a_journey_sends_an_email(setup):  # noqa: F811
    config, log = setup
    (config.engage_dir / "templates").mkdir(parents=True)
    (config.engage_dir / "templates" / "cart.liquid").write_text(TEMPLATE)
    write_journey(config.engage_dir, "cart", JOURNEY)
    log.write([ev("identify", userId="ann", traits={"email": "ann@x.example", "first_name": "Ann"}),
               ev(event="Product Added", userId="ann", properties={"name": "Lamp"})])  # fmt: skip
    profiles = open_store(db_target(config))
    Builder(profiles, config.data_dir, Rules()).catch_up()
    store = open_journeys(db_target(config))
    runner = Runner(store, config.data_dir, definitions.load(config.engage_dir))
    runner.step(T)
    runner.close()
    rows = store._all("SELECT destination FROM outbox")
    assert rows == [("email",)]
    with Relay() as relay:
        settings = Email(smtp_port=relay.port, smtp_security="none", from_="shop@shop.example",
                         public_url="https://c.example", rate_per_second=1000)  # fmt: skip
        db = Database(store)
        lane = sender.EmailLane(settings, db, b"k" * 32, root=config.engage_dir, profiles=profiles)
        await run_until(lane, store, final(store, 1))
        assert len(relay.received) == 1, store._all("SELECT state, last_error FROM outbox")
        (_, message, _), = relay.received
        assert message["Subject"] == "Lamp is waiting, Ann" and message["To"] == "ann@x.example"
        db.close()
    profiles.close()


def test_a_missing_template_is_a_mistake_with_its_line(tmp_path):
    write_journey(tmp_path, "cart", JOURNEY)
    with pytest.raises(DefinitionError, match=r"cart.yaml:4: 'send' names template 'cart', and engage/templates/ has no such file"):
        definitions.load(tmp_path)
