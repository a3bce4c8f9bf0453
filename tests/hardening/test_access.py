"""Access: keys, origins, metrics, errors and logs reveal nothing that is not the caller's."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from helpers import CollectorProcess, free_port

SOURCES = [
    {"name": "web", "write_key": "wk_web_secret_1", "allowed_origins": ["https://shop.example"]},
    {"name": "backend", "write_key": "wk_backend_secret_2", "ip_mode": "full"},
]


def request(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


class TestMetricsAccess:
    async def test_metrics_token(self, make_client, config):
        client = await make_client(config, metrics_token="s3cret")
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer nope"})).status == 401
        answer = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert answer.status == 200 and "intilery_http_requests_total" in await answer.text()

    def test_metrics_on_a_private_address(self, tmp_path):
        metrics_port = free_port()
        with CollectorProcess(tmp_path, SOURCES, metrics_address=f"127.0.0.1:{metrics_port}") as collector:
            assert request(collector.url + "/metrics")[0] == 404
            status, body, _ = request(f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200 and b"intilery_store_ready 1.0" in body


def test_errors_and_logs_reveal_no_secret_and_echo_no_input(tmp_path):
    """No answer names another source or key; no log line holds a write key or a full client IP."""
    with CollectorProcess(tmp_path, SOURCES, trusted_proxies=["127.0.0.1/32"], args=["--log-format", "json"]) as c:
        hostile = "<script>alert(1)</script>"
        answers = [
            request(c.url + "/v1/track", b'{"userId":"u","event":"E"}', {"X-Write-Key": "wk_web_secret_X"}),
            request(c.url + "/v1/track", b'{"userId":"u","event":"E"}', {"X-Write-Key": "wk_web_secret_1",
                                                                         "Origin": "https://evil.example"}),
            request(c.url + "/v1/track", b'{"userId":"u","event":"E"}', {"X-Write-Key": "wk_web_secret_1",
                                                                         "Content-Type": hostile}),
            request(c.url + "/v1/track", json.dumps({"userId": "u", "event": "E", "timestamp": hostile}).encode(),
                    {"X-Write-Key": "wk_web_secret_1", "Content-Type": "application/json"}),
            request(c.url + "/v1/track", b'{"userId":"u","event":"E"}', {"X-Write-Key": "wk_web_secret_1",
                    "Content-Type": "application/json", "X-Forwarded-For": "198.51.100.200"}),
            request(c.url + "/readyz"),
            request(c.url + "/healthz"),
        ]  # fmt: skip
        assert [a[0] for a in answers] == [401, 403, 415, 400, 200, 200, 200]
    for status, body, headers in answers:
        for secret in (b"wk_web_secret_1", b"wk_backend_secret_2", b"backend", b"<script>"):
            assert secret not in body, (status, body)
    log = (tmp_path / f"collector-{c.port}.log").read_text()
    assert "wk_web_secret" not in log and "wk_backend_secret" not in log
    assert "198.51.100.200" not in log
    logged = [json.loads(line) for line in log.splitlines() if line.startswith("{")]  # the banner is for people
    assert any(entry["message"] == "file store open" for entry in logged)


@pytest.mark.parametrize("key", ["wk_web_secret_1", "wk_web_secret_", "wk_web_secret_12", "", "x" * 5000])
async def test_only_the_exact_key_authenticates(make_client, config, key):
    """Keys are compared in full (constant time): prefixes and extensions are unknown keys."""
    from dataclasses import replace

    client = await make_client(config, sources=(replace(config.sources[0], write_key="wk_web_secret_1"),))
    answer = await client.post("/v1/track", json={"userId": "u", "event": "E"}, headers={"X-Write-Key": key} if key else {})
    assert answer.status == (200 if key == "wk_web_secret_1" else 401)
