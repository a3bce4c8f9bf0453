"""Every ingest path stores the right line, with every enrichment field."""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiohttp.test_utils import TestServer

from collector.app import SERVER_KWARGS, STATE, create_app
from helpers import eventually
from tests.conftest import rejected, stored

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
KEY = {"X-Write-Key": "wk_web"}
FROM_LONDON = {"X-Forwarded-For": "203.0.113.77", "User-Agent": CHROME}

ONE = {
    "track": {"event": "Product Viewed", "properties": {"sku": "A1"}},
    "page": {"name": "Home", "properties": {"path": "/"}},
    "screen": {"name": "Settings"},
    "identify": {"traits": {"email": "ann@example.com"}},
    "group": {"groupId": "g1", "traits": {"plan": "pro"}},
    "alias": {"previousId": "anon-1"},
}


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TestEndpoints:
    @pytest.mark.parametrize("kind", list(ONE))
    @pytest.mark.parametrize("short", [False, True], ids=["long", "short"])
    async def test_single_message_endpoint_stores_an_enriched_line(self, client, config, kind, short):
        """/v1/<type> and its one-letter alias store the message with every enrichment field."""
        path = f"/v1/{kind[0]}" if short else f"/v1/{kind}"
        message = {"userId": "u1", "messageId": f"m-{kind}-{short}", **ONE[kind]}
        answer = await client.post(path, json=message, headers={**KEY, **FROM_LONDON})
        assert answer.status == 200, await answer.text()
        assert await answer.json() == {"success": True, "accepted": 1, "rejected": []}
        [line] = stored(config.data_dir)
        assert line["type"] == kind and line["userId"] == "u1" and line["messageId"] == f"m-{kind}-{short}"
        for field, value in ONE[kind].items():
            assert line[field] == value
        assert line["source"] == "web"
        received = datetime.fromisoformat(line["receivedAt"].replace("Z", "+00:00"))
        assert abs(received.timestamp() - time.time()) < 60
        assert line["timestamp"] == line["receivedAt"]
        context = line["context"]
        assert context["ip"] == "203.0.113.0"
        assert context["location"] == {
            "country": "United Kingdom", "countryCode": "GB", "region": "England", "city": "London",
            "latitude": 51.5142, "longitude": -0.0931, "timezone": "Europe/London",
        }  # fmt: skip
        assert context["userAgent"] == CHROME
        assert context["os"] == {"name": "Windows", "version": "10"}
        assert context["browser"]["name"] == "Chrome" and context["browser"]["version"].startswith("120.0")
        assert context["device"]["type"] == "desktop"
        assert "bot" not in context

    async def test_batch_merges_outer_context_and_corrects_a_clock_one_hour_off(self, client, config):
        """The outer context goes under each message's own; timestamps are skew-corrected."""
        client_now = datetime.now(timezone.utc) + timedelta(hours=1)  # the browser's clock is 1 h fast
        body = {
            "batch": [
                {"type": "page", "anonymousId": "a1", "name": "Home",
                 "originalTimestamp": iso(client_now - timedelta(seconds=30)),
                 "context": {"page": {"path": "/"}, "library": {"version": "2"}}},
                {"type": "track", "anonymousId": "a1", "event": "Clicked",
                 "originalTimestamp": iso(client_now - timedelta(seconds=10))},
            ],
            "context": {"library": {"name": "intilery.js", "version": "1"}, "locale": "en-GB"},
            "sentAt": iso(client_now),
        }  # fmt: skip
        answer = await client.post("/v1/batch", data=orjson.dumps(body), headers={**KEY, "Content-Type": "text/plain"})
        assert (await answer.json())["accepted"] == 2
        first, second = stored(config.data_dir)
        assert first["context"]["library"] == {"name": "intilery.js", "version": "2"}
        assert first["context"]["page"] == {"path": "/"} and first["context"]["locale"] == "en-GB"
        assert second["context"]["library"] == {"name": "intilery.js", "version": "1"}
        for line, ago in ((first, 30), (second, 10)):
            received = datetime.fromisoformat(line["receivedAt"].replace("Z", "+00:00"))
            corrected = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
            assert abs((received - corrected).total_seconds() - ago) < 0.01
            assert line["sentAt"] == body["sentAt"]
            assert line["originalTimestamp"] == next(m for m in body["batch"] if m["type"] == line["type"])["originalTimestamp"]

    async def test_timestamp_is_never_in_the_future(self, client, config):
        """A message stamped ahead of its sentAt (a broken client) is clamped to receivedAt."""
        future = iso(datetime.now(timezone.utc) + timedelta(days=2))
        message = {"userId": "u", "event": "E", "timestamp": future}
        await client.post("/v1/track", json=message, headers=KEY)
        [line] = stored(config.data_dir)
        assert line["timestamp"] == line["receivedAt"] and line["originalTimestamp"] == future

    async def test_intilery_event_discriminator_becomes_type(self, client, config):
        """Intilery's server API puts the call name in "event"; it is normalised to "type"."""
        body = {"batch": [{"event": "identify", "userId": "u9", "traits": {"name": "Ann"}}]}
        assert (await (await client.post("/v1/batch", json=body, headers=KEY)).json())["accepted"] == 1
        [line] = stored(config.data_dir)
        assert line["type"] == "identify" and "event" not in line

    async def test_gzip_body(self, client, config):
        """A gzip body, here as two concatenated members (valid gzip, as `cat a.gz b.gz` makes)."""
        text = orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "Zipped"}]})
        body = gzip.compress(text[:10]) + gzip.compress(text[10:])
        answer = await client.post(
            "/v1/batch", data=body, headers={**KEY, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        )
        assert answer.status == 200, await answer.text()
        assert stored(config.data_dir)[0]["event"] == "Zipped"

    @pytest.mark.parametrize(
        "how",
        [
            pytest.param(lambda b: ({"Authorization": "Basic " + base64.b64encode(b"wk_web:").decode()}, b, ""), id="basic"),
            pytest.param(lambda b: ({"X-Write-Key": "wk_web"}, b, ""), id="header"),
            pytest.param(lambda b: ({}, {**b, "writeKey": "wk_web"}, ""), id="body"),
            pytest.param(lambda b: ({}, b, "?writeKey=wk_web"), id="query"),
        ],
    )
    async def test_write_key_sources(self, client, config, how):
        """The write key is read from Basic auth, X-Write-Key, the body, or the query string."""
        headers, body, query = how({"userId": "u", "event": "E"})
        answer = await client.post("/v1/track" + query, json=body, headers=headers)
        assert answer.status == 200
        [line] = stored(config.data_dir)
        assert line["source"] == "web" and "writeKey" not in line

    async def test_pixel(self, client, config):
        """The no-JavaScript pixel stores its message and always answers a GIF."""
        data = base64.urlsafe_b64encode(orjson.dumps({"anonymousId": "a", "event": "Email Opened"})).decode().rstrip("=")
        answer = await client.get(f"/v1/pixel.gif?data={data}&writeKey=wk_web")
        assert answer.status == 200 and answer.content_type == "image/gif"
        assert (await answer.read()).startswith(b"GIF89a")
        [line] = stored(config.data_dir)
        assert line["type"] == "track" and line["event"] == "Email Opened"
        bad = await client.get("/v1/pixel.gif?data=!!!&writeKey=wk_web")
        assert bad.status == 200 and bad.content_type == "image/gif"
        assert rejected(config.data_dir)[0]["code"] in ("invalid_pixel", "invalid_json")

    async def test_bot_is_flagged_not_dropped(self, client, config):
        await client.post("/v1/page", json={"anonymousId": "a"}, headers={**KEY, "User-Agent": GOOGLEBOT})
        [line] = stored(config.data_dir)
        assert line["context"]["bot"] is True and line["context"]["botName"] == "Googlebot"
        assert line["context"]["device"]["type"] == "bot"

    async def test_mobile_user_agent_from_the_message(self, client, config):
        """context.userAgent sent by the client wins over the request header."""
        message = {"anonymousId": "a", "context": {"userAgent": IPHONE}}
        await client.post("/v1/page", json=message, headers={**KEY, "User-Agent": CHROME})
        context = stored(config.data_dir)[0]["context"]
        assert context["userAgent"] == IPHONE
        assert context["os"]["name"] == "iOS" and context["device"]["type"] == "mobile"
        assert context["device"]["brand"] == "Apple" and context["device"]["model"] == "iPhone"

    async def test_duplicate_message_id_is_stored_once(self, client, config):
        message = {"userId": "u", "event": "E", "messageId": "dup-1"}
        for _ in range(3):
            answer = await client.post("/v1/track", json=message, headers=KEY)
            assert (await answer.json())["accepted"] == 1
        batch = {"batch": [{**message, "type": "track"}, {**message, "type": "track", "messageId": "dup-2"}] * 2}
        assert (await (await client.post("/v1/batch", json=batch, headers=KEY)).json())["accepted"] == 4
        assert sorted(line["messageId"] for line in stored(config.data_dir)) == ["dup-1", "dup-2"]

    async def test_a_retry_while_the_first_copy_is_in_flight_is_stored_once(self, aiohttp_client, config):
        """A retry arriving while its first copy is still being written waits for that write:
        one stored line, and both copies answered 200 only once it is committed."""
        app = create_app(config)
        order: list[tuple[str, str]] = []

        async def answered(request, response) -> None:
            order.append(("answered", request.headers.get("X-Copy", "")))

        app.on_response_prepare.append(answered)
        server = TestServer(app)
        await server.start_server(**SERVER_KWARGS)
        client = await aiohttp_client(server)
        state = app[STATE]

        gate, appends, write = asyncio.Event(), [], state.store.append

        def slow_append(lines, **kwargs):  # the first copy's commit is held until the test opens the gate
            appends.append(lines)
            written = write(lines, **kwargs)

            async def commit() -> None:
                await gate.wait()
                await written
                order.append(("committed", ""))

            return asyncio.ensure_future(commit())

        class InFlight(dict):  # records a retry finding its id in flight
            def get(self, key, default=None):
                found = super().get(key, default)
                if found is not None:
                    order.append(("waits", key))
                return found

        state.store.append, state.dedup.in_flight = slow_append, InFlight()
        message = {"userId": "u", "event": "E", "messageId": "in-flight-1"}

        def send(copy: str):
            return asyncio.create_task(client.post("/v1/track", json=message, headers={**KEY, "X-Copy": copy}))

        first = send("first")
        await eventually(lambda: appends, what="the first copy to reach the store")
        retry = send("retry")
        await eventually(lambda: ("waits", ("web", "in-flight-1")) in order or len(appends) > 1, what="the retry to arrive")
        assert len(appends) == 1, "the retry was written a second time instead of waiting for the first"
        assert not first.done() and not retry.done(), "answered before the first copy was committed"
        order.append(("gate opened", ""))
        gate.set()
        answers = [await first, await retry]
        assert [answer.status for answer in answers] == [200, 200]
        assert [(await answer.json())["accepted"] for answer in answers] == [1, 1]
        assert order[0] == ("waits", ("web", "in-flight-1"))
        assert [event for event in order if event[0] != "waits"] == [
            ("gate opened", ""), ("committed", ""), ("answered", "first"), ("answered", "retry"),
        ]  # fmt: skip
        assert [line["messageId"] for line in stored(config.data_dir)] == ["in-flight-1"]

    async def test_health_ready_metrics(self, client):
        await client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=KEY)
        await client.post("/v1/track", json={"userId": "u"}, headers=KEY)
        assert (await client.get("/healthz")).status == 200
        assert await (await client.get("/readyz")).json() == {"ready": True}
        text = await (await client.get("/metrics")).text()
        assert 'intilery_events_accepted_total{source="web"} 1.0' in text
        assert 'intilery_events_rejected_total{code="missing_event",source="web"} 1.0' in text
        assert 'intilery_http_requests_total{route="/v1/track",status="200"} 1.0' in text
        assert 'intilery_http_requests_total{route="/v1/track",status="400"} 1.0' in text
        assert "intilery_store_flush_seconds_count" in text and "intilery_store_queue_bytes 0.0" in text


class TestCors:
    async def test_preflight_is_answered(self, client):
        answer = await client.options(
            "/v1/batch",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"},
        )  # fmt: skip
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "POST" in answer.headers["Access-Control-Allow-Methods"]

    async def test_allowed_origin_is_echoed(self, client, config):
        answer = await client.post(
            "/v1/t", json={"userId": "u", "event": "E"}, headers={**KEY, "Origin": "https://shop.example"}
        )
        assert answer.status == 200
        assert answer.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert answer.headers["Access-Control-Expose-Headers"] == "Retry-After"

    async def test_other_origin_is_forbidden_and_nothing_stored(self, client, config):
        answer = await client.post(
            "/v1/t", json={"userId": "u", "event": "E"}, headers={**KEY, "Origin": "https://evil.example"}
        )
        assert answer.status == 403
        assert (await answer.json())["code"] == "origin_not_allowed"
        assert stored(config.data_dir) == []


class TestClientIp:
    @pytest.mark.parametrize(
        "peer_trusted, forwarded, expected",
        [
            pytest.param(True, "198.51.100.23", "198.51.100.0", id="behind-trusted-proxy"),
            pytest.param(True, "203.0.113.5, 198.51.100.23", "198.51.100.0", id="right-most-untrusted"),
            pytest.param(True, "198.51.100.23, 127.0.0.2", "198.51.100.0", id="skips-trusted-hops"),
            pytest.param(False, "198.51.100.23", "127.0.0.0", id="spoofed-header-ignored"),
            pytest.param(True, "2001:db8:abcd:12::1", "2001:db8:abcd::", id="ipv6-anonymised-to-48"),
        ],
    )
    async def test_trusted_proxy_rule(self, make_client, config, peer_trusted, forwarded, expected):
        client = await make_client(config, trusted_proxies=config.trusted_proxies if peer_trusted else ())
        await client.post("/v1/track", json={"userId": "u", "event": "E"}, headers={**KEY, "X-Forwarded-For": forwarded})
        assert stored(config.data_dir)[0]["context"]["ip"] == expected

    async def test_geo_lookup_uses_the_full_address_before_anonymising(self, client, config):
        await client.post("/v1/track", json={"userId": "u", "event": "E"}, headers={**KEY, "X-Forwarded-For": "2001:db8::7"})
        context = stored(config.data_dir)[0]["context"]
        assert context["ip"] == "2001:db8::" and context["location"]["city"] == "Berlin"

    async def test_client_ip_kept_only_for_trusted_server_sources(self, client, config):
        message = {"userId": "u", "event": "E", "context": {"ip": "198.51.100.9"}}
        await client.post("/v1/track", json=message, headers={"X-Write-Key": "wk_server"})
        await client.post("/v1/track", json=message, headers=KEY)
        server, web = stored(config.data_dir)
        assert server["context"]["ip"] == "198.51.100.9" and server["context"]["location"]["city"] == "Paris"
        assert web["context"]["ip"] == "127.0.0.0"

    async def test_drop_mode_keeps_no_ip(self, client, config):
        message = {"userId": "u", "event": "E", "context": {"ip": "198.51.100.9"}}
        await client.post("/v1/track", json=message, headers={"X-Write-Key": "wk_noip", "X-Forwarded-For": "203.0.113.1"})
        context = stored(config.data_dir)[0]["context"]
        assert "ip" not in context and context["location"]["city"] == "London"


async def test_the_tag_is_served_cacheable_and_gzipped(client):
    """GET /intilery.js: the shipped build, gzip on request, an ETag that answers 304."""
    from importlib import resources

    shipped = resources.files("collector").joinpath("static/intilery.js").read_bytes()
    answer = await client.get("/intilery.js", headers={"Accept-Encoding": "gzip"})
    assert answer.status == 200 and answer.headers["Content-Encoding"] == "gzip"
    assert answer.content_type == "application/javascript" and "max-age" in answer.headers["Cache-Control"]
    assert await answer.read() == shipped  # the client inflates it
    again = await client.get("/intilery.js", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status == 304


def test_the_written_out_answer_is_the_one_json_would_write():
    """The answer of a stored request is written out when nothing was rejected: byte for byte
    what serialising it gives, with or without CORS headers."""
    from collector.app import _accepted

    for accepted in (0, 1, 2_500):
        for headers in ({}, {"Access-Control-Allow-Origin": "https://shop.example"}):
            answer = _accepted(accepted, [], headers)
            assert answer.body == orjson.dumps({"success": True, "accepted": accepted, "rejected": []})
            assert answer.content_type == "application/json" and answer.status == 200
            assert all(answer.headers[name] == value for name, value in headers.items())
