"""Abuse limits: rate limits, slow clients, oversize headers, too many connections."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest

from helpers import CollectorProcess, wait_until
from tests.conftest import stored

EVENT = {"userId": "u", "event": "E"}


class TestRateLimits:
    async def test_per_ip_token_bucket_answers_429_with_retry_after(self, make_client, config):
        """A client IP past its burst gets 429 + Retry-After; another IP is not affected."""
        client = await make_client(config, ip_rate_limit=0.5, ip_rate_burst=2)
        headers = {"X-Write-Key": "wk_web", "X-Forwarded-For": "198.51.100.1"}
        assert [(await client.post("/v1/track", json=EVENT, headers=headers)).status for _ in range(2)] == [200, 200]
        limited = await client.post("/v1/track", json=EVENT, headers=headers)
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
        assert (await limited.json())["code"] == "rate_limited"
        other = await client.post("/v1/track", json=EVENT, headers={**headers, "X-Forwarded-For": "198.51.100.2"})
        assert other.status == 200

    async def test_per_source_limit(self, make_client, config):
        limited_web = replace(config.sources[0], rate_limit=0.1, rate_burst=1)
        client = await make_client(config, sources=(limited_web, *config.sources[1:]))
        assert (await client.post("/v1/track", json=EVENT, headers={"X-Write-Key": "wk_web"})).status == 200
        assert (await client.post("/v1/track", json=EVENT, headers={"X-Write-Key": "wk_web"})).status == 429
        body_keyed = await client.post("/v1/track", json={**EVENT, "writeKey": "wk_web"})
        assert body_keyed.status == 429
        assert (await client.post("/v1/track", json=EVENT, headers={"X-Write-Key": "wk_server"})).status == 200

    async def test_rate_limited_payloads_are_not_kept_as_rejected(self, make_client, config):
        """Past the burst, even an invalid body is answered 429 unread: nothing of it stored or kept."""
        client = await make_client(config, ip_rate_limit=0.01, ip_rate_burst=1)  # the next token in 100 s
        first = await client.post("/v1/track", json=EVENT, headers={"X-Write-Key": "wk_web"})
        invalid = {"userId": "u"}  # no event: a 400 kept in rejected/, were it read
        limited = [await client.post("/v1/track", json=invalid, headers={"X-Write-Key": "wk_web"}) for _ in range(2)]
        assert [first.status] + [answer.status for answer in limited] == [200, 429, 429]
        assert [(await answer.json())["code"] for answer in limited] == ["rate_limited"] * 2
        assert len(stored(config.data_dir)) == 1
        assert not (config.data_dir / "rejected").exists()


@pytest.fixture
def collector(tmp_path):
    with CollectorProcess(tmp_path, client_timeout=1.5, max_connections=8) as running:
        yield running


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Trickle bytes once a second; the time at which the server closed the connection, or None."""
    started = time.monotonic()
    sock.settimeout(1)
    while time.monotonic() - started < seconds:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    return None


class TestSlowAndLargeClients:
    def test_slowloris_is_cut_off_without_starving_others(self, collector):
        """Headers sent one line a second: the connection is closed; a normal client is served meanwhile."""
        slow = _connect(collector.port)
        slow.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
        with socket.create_connection(("127.0.0.1", collector.port)) as normal:
            normal.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"200 OK" in normal.recv(4096)
        assert _closed_within(slow, 15, trickle=b"X-Slow: 1\r\n") is not None
        slow.close()

    def test_a_body_sent_too_slowly_gets_408(self, collector):
        slow = _connect(collector.port)
        slow.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Write-Key: wk_test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
        slow.settimeout(30)
        answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
        slow.close()

    @pytest.mark.parametrize(
        "request_bytes",
        [
            pytest.param(b"GET /healthz?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="request-line"),
            pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", id="header"),
            pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 300 + b"\r\n", id="header-count"),
        ],
    )
    def test_oversize_request_heads_get_a_4xx(self, collector, request_bytes):
        with _connect(collector.port) as sock:
            sock.sendall(request_bytes)
            status = sock.recv(4096).split(b" ", 2)[1]
        assert status.startswith(b"4"), status
        assert collector.proc.poll() is None

    def test_connections_over_the_cap_get_503_and_service_resumes(self, collector):
        """Eight connections, each known to the server by an answer on it, fill the cap: the ninth gets a 503.
        Once they close, a new connection is served (waited for: the server sees the closes when it sees them)."""
        idle = [_connect(collector.port) for _ in range(8)]
        for sock in idle:  # answered: the server holds this connection (kept alive, idle)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        with _connect(collector.port) as extra:
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        for sock in idle:
            sock.close()

        def served() -> bool:
            with _connect(collector.port) as again:
                try:
                    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = again.recv(4096)
                except (ConnectionResetError, BrokenPipeError):  # refused (503 and closed) before the send
                    return False
            assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")), answer
            return answer.startswith(b"HTTP/1.1 200")

        wait_until(served, timeout=30, what="a connection served after the idle ones closed")
