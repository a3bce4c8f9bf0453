"""Information exposure: answers carry a code and a sentence, rejected/ keeps no write key and
stays bounded, and the pixel passes the same checks as every other ingest path."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from tests.conftest import rejected, stored
from tests.core.test_store import unwritable

KEY = {"X-Write-Key": "wk_web"}
EVENT = {"userId": "u", "event": "E"}


def pixel_query(message: dict, key: str = "wk_web") -> str:
    data = base64.urlsafe_b64encode(json.dumps(message).encode()).decode().rstrip("=")
    return f"/v1/pixel.gif?writeKey={key}&data={data}"


class TestAnswers:
    async def test_503_and_readyz_name_no_path_and_no_exception_text(self, make_client, config):
        """The data directory and the OS's error text stay in the log; the answer is a code and a sentence."""
        client = await make_client(config)
        with unwritable(config.data_dir / "events"):
            answer = await client.post("/v1/track", json=EVENT, headers=KEY)
            ready = await client.get("/readyz")
            bodies = [await answer.text(), await ready.text()]
        assert answer.status == 503 and ready.status == 503
        body = await ready.json()
        assert body["code"] == "store_unavailable" and body["reason"]
        for text in bodies:
            assert str(config.data_dir) not in text and "/" not in json.loads(text).get("reason", "")
            assert "Errno" not in text and "Permission denied" not in text and "Operation not permitted" not in text


class TestRejectedKeepsNoKey:
    async def test_a_body_write_key_is_not_kept(self, client, config):
        """The tag puts its writeKey in the body: a rejected body is kept without it."""
        secret = "wk_web"
        as_json = {"Content-Type": "application/json"}
        await client.post("/v1/batch", data=json.dumps({"writeKey": secret, "batch": "not a list"}), headers=as_json)
        await client.post("/v1/track", data=b'{"writeKey": "wk_web", "userId": "u", broken', headers={**KEY, **as_json})
        await client.post("/v1/batch", json={"writeKey": secret, "batch": [{"type": "track", "userId": "u"}]})
        kept = rejected(config.data_dir)
        assert {r["code"] for r in kept} >= {"invalid_batch", "invalid_json", "missing_event"}
        assert all(secret not in json.dumps(r) for r in kept), kept


class TestPixel:
    async def test_the_pixel_obeys_the_origin_check(self, client, config):
        """A pixel sent from a page whose origin the source does not allow is not stored."""
        evil = {"Origin": "https://evil.example", "Referer": "https://evil.example/page"}
        assert (await client.get(pixel_query({**EVENT, "messageId": "evil"}), headers=evil)).status == 200
        referred = {"Referer": "https://evil.example/page"}  # an <img> sends no Origin, only a Referer
        assert (await client.get(pixel_query({**EVENT, "messageId": "evil2"}), headers=referred)).status == 200
        good = {"Referer": "https://shop.example/page"}
        assert (await client.get(pixel_query({**EVENT, "messageId": "good"}), headers=good)).status == 200
        assert [e["messageId"] for e in stored(config.data_dir)] == ["good"]

    async def test_the_pixel_obeys_the_rate_limits(self, make_client, config):
        """Past the per-IP burst a pixel is answered (a GIF, always) but not stored."""
        client = await make_client(config, ip_rate_limit=0.01, ip_rate_burst=2)
        for n in range(5):
            assert (await client.get(pixel_query({**EVENT, "messageId": f"p{n}"}))).status == 200
        assert sorted(e["messageId"] for e in stored(config.data_dir)) == ["p0", "p1"]

    async def test_the_pixel_obeys_the_source_rate_limit(self, make_client, config):
        limited = replace(config.sources[0], rate_limit=0.01, rate_burst=1)
        client = await make_client(config, sources=(limited, *config.sources[1:]))
        for n in range(3):
            assert (await client.get(pixel_query({**EVENT, "messageId": f"s{n}"}))).status == 200
        assert [e["messageId"] for e in stored(config.data_dir)] == ["s0"]
