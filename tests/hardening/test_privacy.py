"""Privacy: in anonymize and drop mode no full IP lands in any file; bots can be dropped per source."""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import pytest

from helpers import CollectorProcess

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PROXIED_IP, CLIENT_SENT_IP, IPV6 = "198.51.100.77", "198.51.100.88", "2001:db8:1234:5678::9"


def post(url: str, body: dict | bytes, headers: dict) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def revealed(raw: bytes) -> list[str]:
    """What bytes can say: their text, and what base64 or gzip inside them unwraps to (partial gzip too)."""
    out = [raw.decode("utf-8", "replace")]
    if raw[:2] == b"\x1f\x8b":
        out += revealed(zlib.decompressobj(31).decompress(raw))
    return out


def unwrapped(value) -> list[str]:
    """Every string in a JSON value, and what each decodes to when it is base64 (standard or url-safe)."""
    if isinstance(value, dict):
        return [text for v in value.values() for text in unwrapped(v)]
    if isinstance(value, list):
        return [text for v in value for text in unwrapped(v)]
    if not isinstance(value, str):
        return []
    found = [value]
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            found += revealed(decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError):
            pass
    return found


def everything_written(data_dir: Path) -> str:
    text = []
    for path in data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
            text += revealed(raw)
            for line in raw.splitlines():
                try:
                    text += unwrapped(json.loads(line))
                except ValueError:
                    pass
    return "\n".join(text)


def get(url: str, headers: dict) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
        return answer.status


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("mode", ["anonymize", "drop", "full"])
def test_no_full_ip_in_any_file(tmp_path, mode):
    """Events, rejects and torn lines alike; in full mode the address is kept (so the check can fail)."""
    sources = [{"name": "web", "write_key": "wk", "ip_mode": mode}]
    with CollectorProcess(tmp_path, sources, trusted_proxies=["127.0.0.1/32"]) as collector:
        for forwarded in (PROXIED_IP, IPV6):
            headers = {"X-Write-Key": "wk", "X-Forwarded-For": forwarded}
            message = {"userId": "u", "event": "E", "context": {"ip": CLIENT_SENT_IP}}
            assert post(collector.url + "/v1/track", message, headers) == 200
            assert post(collector.url + "/v1/track", {**message, "event": 5}, headers) == 400
            batch = {"batch": [{**message, "type": "track"}, {**message, "type": "track", "event": None}]}
            assert post(collector.url + "/v1/batch", batch, headers) == 200
            assert post(collector.url + "/v1/track", b"{broken", headers) == 400
            # bodies kept as bytes today: not UTF-8, gzip that does not inflate, the pixel's base64
            leaky = f'{{"userId":"u","event":"E","context":{{"ip":"{CLIENT_SENT_IP}"}}'.encode()
            assert post(collector.url + "/v1/track", b"\xff" + leaky, headers) == 400
            gz = {**headers, "Content-Encoding": "gzip"}
            assert post(collector.url + "/v1/track", gzip.compress(leaky + b"}")[:-12], gz) == 400
            assert post(collector.url + "/v1/track", gzip.compress(b"\xff" + leaky), gz) == 400
            for data in (b64url(leaky), b64url(b"\xff" + leaky), b64url(leaky + b"}")):
                query = urllib.parse.urlencode({"writeKey": "wk", "data": data})
                assert get(f"{collector.url}/v1/pixel.gif?{query}", headers) == 200
    written = everything_written(tmp_path / "data")
    assert '"code":"invalid_field"' in written and '"code":"missing_event"' in written
    assert '"code":"invalid_gzip"' in written
    if mode == "full":
        assert PROXIED_IP in written and IPV6 in written
    else:
        for address in (PROXIED_IP, CLIENT_SENT_IP, IPV6):
            assert address not in written, f"{address} found in {mode} mode"
    if mode == "anonymize":
        assert "198.51.100.0" in written and "2001:db8:1234::" in written


async def test_drop_bots_per_source(make_client, config):
    """A source with drop_bots answers crawlers as accepted but stores nothing; others keep them flagged."""
    from dataclasses import replace

    from tests.conftest import stored

    dropping = replace(config.sources[0], drop_bots=True)
    client = await make_client(config, sources=(dropping, *config.sources[1:]))
    bot = {"User-Agent": GOOGLEBOT}
    answer = await client.post("/v1/page", json={"anonymousId": "a"}, headers={"X-Write-Key": "wk_web", **bot})
    assert (await answer.json())["accepted"] == 1
    await client.post("/v1/page", json={"anonymousId": "a"}, headers={"X-Write-Key": "wk_server", **bot})
    [kept] = stored(config.data_dir)
    assert kept["source"] == "server" and kept["context"]["bot"] is True
    assert 'intilery_events_bots_dropped_total{source="web"} 1.0' in await (await client.get("/metrics")).text()
