"""The SDK configuration routes (collector/compat/): Segment's settings, RudderStack's sourceConfig and beacon."""

from __future__ import annotations

import base64

import orjson

from helpers import eventually
from tests.conftest import stored

SETTINGS = "/v1/projects/{}/settings"


async def test_segment_settings_point_at_this_collector_with_the_requests_protocol(make_client, config):
    """apiHost is the host the request reached (+ /v1); https only when the socket or a trusted proxy says so."""
    client = await make_client(config)
    answer = await client.get(SETTINGS.format("wk_web"), headers={"Host": "collect.example.com"})
    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
    segment = (await answer.json())["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == ("wk_web", "collect.example.com/v1", "http")
    proxied = {"Host": "collect.example.com", "X-Forwarded-Proto": "https"}
    segment = (await (await client.get(SETTINGS.format("wk_web"), headers=proxied)).json())["integrations"]["Segment.io"]
    assert segment["protocol"] == "https"  # the test client is on 127.0.0.1, a trusted proxy here
    untrusted = await make_client(config, trusted_proxies=())
    segment = (await (await untrusted.get(SETTINGS.format("wk_web"), headers=proxied)).json())["integrations"]["Segment.io"]
    assert segment["protocol"] == "http"


async def test_segment_settings_behind_a_proxy_that_rewrites_host_use_x_forwarded_host(make_client, config):
    """A trusted proxy's X-Forwarded-Host is the visitors' address (its Host is internal); an
    untrusted peer's is ignored; the cacheable answer varies by every header it is built from."""
    proxied = {"Host": "collector.internal:8080", "X-Forwarded-Host": "collect.example.com",
               "X-Forwarded-Proto": "https"}  # fmt: skip
    client = await make_client(config)
    answer = await client.get(SETTINGS.format("wk_web"), headers=proxied)
    segment = (await answer.json())["integrations"]["Segment.io"]
    assert (segment["apiHost"], segment["protocol"]) == ("collect.example.com/v1", "https")
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    vary = {v.strip().lower() for v in answer.headers["Vary"].split(",")}
    assert {"host", "x-forwarded-host", "x-forwarded-proto"} <= vary
    untrusted = await make_client(config, trusted_proxies=())
    segment = (await (await untrusted.get(SETTINGS.format("wk_web"), headers=proxied)).json())["integrations"]["Segment.io"]
    assert (segment["apiHost"], segment["protocol"]) == ("collector.internal:8080/v1", "http")


async def test_unknown_or_odd_keys_are_a_404_with_code_and_sentence(client):
    for key in ("wk_nobody", "%00", "x" * 2000, "%F0%9F%92%A9"):
        answer = await client.get(SETTINGS.format(key))
        body = await answer.json()
        assert answer.status == 404, key
        assert body == {"success": False, "code": "unknown_source", "message": "no source has this write key"}
        assert answer.headers["Cache-Control"] == "no-store"


async def test_rudderstack_source_config_by_query_or_basic(client):
    basic = "Basic " + base64.b64encode(b"wk_web:").decode()
    for path, headers in (("/sourceConfig/?writeKey=wk_web", {}), ("/sourceConfig/", {"Authorization": basic})):
        answer = await client.get(path, headers=headers)
        body = await answer.json()
        assert answer.status == 200
        assert body["source"]["writeKey"] == "wk_web" and body["source"]["name"] == "web"
        assert body["source"]["destinations"] == [] and body["source"]["enabled"] is True
    answers = [await client.get(p, headers=h) for p, h in (("/sourceConfig/", {}), ("/sourceConfig/?writeKey=nope", {}),
                                                           ("/sourceConfig/", {"Authorization": "Basic !!"}))]  # fmt: skip
    assert [(a.status, (await a.json())["code"]) for a in answers] == [
        (401, "missing_write_key"), (404, "unknown_source"), (401, "invalid_write_key")]  # fmt: skip


async def test_the_preflight_allows_rudderstacks_headers(client):
    """The SDK's XHRs carry Authorization, AnonymousId, SentAt and its retry headers."""
    for path in ("/sourceConfig/", "/v1/track"):
        answer = await client.options(path, headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})
        assert answer.status == 204
        allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "anonymousid", "sentat", "rsa-retry-attempt", "rsa-since-last-attempt"} <= allowed


async def test_the_beacon_route_is_the_batch_ingest(client, config):
    """POST /beacon/v1/batch?writeKey= (text/plain, as sendBeacon sends) stores the batch; a bad key is a 401."""
    body = orjson.dumps({"batch": [{"type": "track", "event": "Beaconed", "anonymousId": "a-1"}], "sentAt": None})
    answer = await client.post("/beacon/v1/batch?writeKey=wk_web", data=body, headers={"Content-Type": "text/plain"})
    assert answer.status == 200 and (await answer.json())["accepted"] == 1
    await eventually(lambda: [e for e in stored(config.data_dir) if e.get("event") == "Beaconed"], what="the beaconed event")
    answer = await client.post("/beacon/v1/batch?writeKey=nope", data=body, headers={"Content-Type": "text/plain"})
    assert (answer.status, (await answer.json())["code"]) == (401, "invalid_write_key")


async def test_a_forwarded_value_a_client_put_before_the_proxys_own_is_not_believed(make_client, config):
    """Review P12: a proxy that appends to X-Forwarded-Host/-Proto puts its own value last; what
    comes before it is the client's (or an untrusted hop's). One value is taken per trusted hop
    (the peer, and each trusted address at the right of X-Forwarded-For), counted from the right."""
    client = await make_client(config)  # the test client is on 127.0.0.1, a trusted proxy here
    forged = {"Host": "collector.internal:8080", "X-Forwarded-Host": "evil.example, collect.example.com",
              "X-Forwarded-Proto": "https, http"}  # fmt: skip
    segment = (await (await client.get(SETTINGS.format("wk_web"), headers=forged)).json())["integrations"]["Segment.io"]
    assert (segment["apiHost"], segment["protocol"]) == ("collect.example.com/v1", "http")
    chain = {**forged, "X-Forwarded-Host": "evil.example, collect.example.com, hop.internal",
             "X-Forwarded-Proto": "http, https, http", "X-Forwarded-For": "203.0.113.9, 127.0.0.1"}  # two trusted hops
    segment = (await (await client.get(SETTINGS.format("wk_web"), headers=chain)).json())["integrations"]["Segment.io"]
    assert (segment["apiHost"], segment["protocol"]) == ("collect.example.com/v1", "https")
