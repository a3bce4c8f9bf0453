"""What goes where: filter (the condition language), Segment's consent rule, mapping directives;
the definitions' files checked with file, line and reason, and no secret in a message."""

from __future__ import annotations

import asyncio

from collector.engage.destinations import definitions
from collector.engage.destinations.consumer import verdict
from collector.engage.outbox.store import open_outbox
from collector.profiles.database import db_target
from helpers import eventually

from .conftest import SECRET, ev, write_destination
from .test_webhooks import running


def consent(**prefs) -> dict:
    return {"consent": {"categoryPreferences": prefs}}


async def test_filter_and_consent_choose_what_is_sent(setup, receivers):
    config, log = setup
    receiver = await receivers()
    write_destination(config.engage_dir, "ads", url=receiver.url, consent_categories=["advertising", "analytics"],
                      filter={"all": [{"field": "type", "value": "track"},
                                      {"field": "properties.revenue", "op": "gt", "value": 50}]})  # fmt: skip
    sent = ev(properties={"revenue": 60}, context=consent(advertising=True, analytics=True))
    log.write([
        sent,
        ev(properties={"revenue": 60}),  # no consent information: not sent to a destination that lists categories
        ev(properties={"revenue": 60}, context=consent(advertising=True)),  # one category missing
        ev(properties={"revenue": 60}, context=consent(advertising=True, analytics=False)),
        ev(properties={"revenue": 60}, context=consent(advertising="true", analytics=True)),  # true, not "true"
        ev(properties={"revenue": 10}, context=consent(advertising=True, analytics=True)),  # the filter
        ev(kind="page", properties={"revenue": 60}, context=consent(advertising=True, analytics=True)),
    ])  # fmt: skip
    stop = asyncio.Event()
    from collector.engage.destinations import service

    counts = asyncio.create_task(service.serve(config, stop))
    await eventually(lambda: receiver.got, 20, what="the one event")
    await asyncio.sleep(0.5)
    stop.set()
    stats = await counts
    assert [r.json["data"]["messageId"] for r in receiver.got] == [sent["messageId"]]
    assert stats["filled"] == {"ads/filtered": 2, "ads/no_consent": 4, "ads/queued": 1}
    outbox = open_outbox(db_target(config))  # counted with the deliveries: what /metrics and the API show
    counted = {k: v for k, v in outbox.stats()["ads"].items() if k.startswith("outcome:")}
    assert counted == {"outcome:filtered": 2, "outcome:no_consent": 4, "outcome:delivered": 1}
    outbox.close()


async def test_mapping_reshapes_the_data(setup, receivers):
    config, log = setup
    receiver = await receivers()
    mapping = {
        "order": {"@path": "$.properties.order_id"},
        "greeting": {"@template": "Hello {{ traits.first_name | default: 'there' }}, order {{properties.order_id}}"},
        "known": {"@if": {"exists": {"@path": "$.userId"}, "then": True, "else": False}},
        "kind": {"@literal": "order"},
        "items": {"@arrayPath": ["$.properties.products", {"sku": {"@path": "$.sku"}, "qty": {"@path": "$.quantity"}}]},
        "missing": {"@path": "$.properties.nothing"},
    }
    write_destination(config.engage_dir, "crm", url=receiver.url, mapping=mapping)
    log.write([ev(properties={"order_id": "o-1", "products": [{"sku": "a", "quantity": 2}, {"sku": "b"}]})])
    async with running(config):
        await eventually(lambda: receiver.got, 20, what="the webhook")
    body = receiver.got[0].json
    assert receiver.got[0].verified and body["type"] == "track"
    assert body["data"] == {"order": "o-1", "greeting": "Hello there, order o-1", "known": True, "kind": "order",
                            "items": [{"sku": "a", "qty": 2}, {"sku": "b"}]}  # fmt: skip


def test_the_consent_rule_alone():
    dest = definitions.Destination("d", "http://x", (b"k" * 32,), consent_categories=("a",))
    assert verdict(dest, ev(context=consent(a=True))) is None
    assert verdict(dest, ev(context={"consent": {}})) == "no_consent"
    assert verdict(definitions.Destination("d", "http://x", (b"k" * 32,)), ev()) is None  # no categories: everything


def test_check_names_file_line_and_reason_and_never_the_secret(tmp_path, monkeypatch):
    engage = tmp_path / "engage"
    folder = engage / "destinations"
    folder.mkdir(parents=True)
    (folder / "good.yaml").write_text(f"url: https://hooks.example.com/in\nsecret: {SECRET}\n")
    (folder / "typo.yaml").write_text("url: https://x.example\nsecret: ${HOOK_SECRET}\nbatch_sise: 5\n")
    (folder / "badsecret.yaml").write_text("url: https://x.example\nsecret: sk_live_abcdefgh\n")
    (folder / "badurl.yaml").write_text(f"url: ftp://x.example\nsecret: {SECRET}\n")
    (folder / "badfilter.yaml").write_text(f"url: https://x.example\nsecret: {SECRET}\nfilter:\n  trait: plan\n")
    (folder / "badmap.yaml").write_text(f"url: https://x.example\nsecret: {SECRET}\nmapping:\n  a: {{'@pth': x}}\n")
    (folder / "unset.yaml").write_text("url: https://x.example\nsecret: ${NOT_SET_ANYWHERE}\n")
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    problems = definitions.check(engage)
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert f"{folder / 'typo.yaml'}:3: unknown key 'batch_sise'" in text
    assert f"{folder / 'badsecret.yaml'}:2: 'secret' is a Standard Webhooks secret" in text
    assert f"{folder / 'badurl.yaml'}:1: 'url' is an http:// or https://" in text
    assert f"{folder / 'badfilter.yaml'}:4: 'trait' is about a person" in text
    assert f"{folder / 'badmap.yaml'}:" in text and "unknown directive '@pth'" in text
    assert f"{folder / 'unset.yaml'}:2: ${{NOT_SET_ANYWHERE}} is not set" in text
    assert "sk_live_abcdefgh" not in text and SECRET[6:] not in text
    assert definitions.check(tmp_path / "nothing") == []
