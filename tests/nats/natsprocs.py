"""Helpers for the NATS tests: real nats-server processes, archive processes, output readers.

Every server binds 127.0.0.1 on free ports and keeps JetStream under the test's tmp_path.
(The module has a name no other test directory uses, because test directories are not
packages here: ``tests/nats`` must stay without ``__init__.py``, or as a package named
``nats`` it would shadow the nats-py client.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from collector.log.reader import Reader
from helpers import ChildProcess, assert_whole, free_port, stop_process

NATS_SERVER = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
SOURCES = [{"name": "web", "write_key": "wk_test"}]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class NatsServer:
    """One nats-server with JetStream; ``kill`` (SIGKILL) and ``start`` again keep its store."""

    def __init__(
        self, workdir: Path, name: str = "n1", cluster: list[NatsServer] | None = None, auth: tuple[str, str] | None = None,
        config: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir) / name
        self.auth = auth  # (user, password) that clients must give
        self.config = config  # a nats-server configuration file (users and their permissions), read at each start
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.cluster_port = free_port() if cluster is not None else None
        self.peers = cluster
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [NATS_SERVER, "-js", "-sd", str(self.workdir / "store"), "-a", "127.0.0.1", "-p", str(self.port),
               "-n", self.name]  # fmt: skip
        if self.config is not None:
            cmd += ["-c", str(self.config)]
        if self.auth is not None:
            cmd += ["--user", self.auth[0], "--pass", self.auth[1]]
        if self.peers is not None:
            routes = ",".join(f"nats://127.0.0.1:{p.cluster_port}" for p in self.peers if p is not self)
            cmd += ["--cluster_name", "intilery-test", "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                    "--routes", routes]  # fmt: skip
        return cmd

    def start(self, timeout: float = 20) -> NatsServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if _port_open(self.port):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"nats-server {self.name} did not listen within {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, sig, 15)
        self.proc = None


def require_nats_server() -> None:
    if NATS_SERVER is None:
        pytest.fail(
            "nats-server is not installed, and the NATS tests start real servers: "
            "install it (Debian/Ubuntu: apt-get install nats-server) or put it on PATH",
            pytrace=False,
        )


def cluster_url(servers: list[NatsServer]) -> str:
    return ",".join(s.url for s in servers)


class ArchiveProcess(ChildProcess):
    """``python -m collector archive`` writing into ``data_dir``."""

    def __init__(self, workdir: Path, data_dir: Path, nats_url: str, *args: str) -> None:
        self.workdir, self.data_dir, self.nats_url, self.args = Path(workdir), Path(data_dir), nats_url, list(args)
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "archive.log"

    def start(self, timeout: float = 30) -> ArchiveProcess:
        cmd = [sys.executable, "-m", "collector", "archive", "--data-dir", str(self.data_dir),
               "--nats-url", self.nats_url, *self.args]  # fmt: skip
        with open(self.log, "ab") as out:
            out.write(b"--- start\n")
        self.spawn(cmd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"archive exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if b"intilery archive: stream" in self.log.read_bytes().rsplit(b"--- start\n", 1)[-1]:
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"archive did not start within {timeout}s:\n{self.log.read_text()}")


async def consumer_drained(nats_url: str, stream: str = "INTILERY", consumer: str = "intilery-archive") -> bool:
    """Whether the archive consumer has acknowledged the stream up to its last message.

    The consumer's own counts are not enough: a consumer led by a replica still catching up
    (a node just restarted) sees fewer messages than the stream holds and reports nothing
    pending; the stream's last sequence comes from the stream's leader.
    """
    import nats

    nc = await nats.connect(nats_url.split(","), connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = nc.jetstream(timeout=3)
        info = await js.consumer_info(stream, consumer)
        last = (await js.stream_info(stream)).state.last_seq
        return info.num_pending == 0 and info.num_ack_pending == 0 and info.ack_floor.stream_seq >= last
    except Exception:
        return False
    finally:
        await nc.close()


def output_segments(data_dir: Path, log_name: str = "events") -> dict[Path, bytes]:
    """Every segment under ``data_dir/log_name`` with its (decompressed) content."""
    import gzip

    found = {}
    for path in sorted((Path(data_dir) / log_name).glob("**/part-*")):
        if path.name.endswith(".gz"):
            found[path] = gzip.decompress(path.read_bytes())
        else:
            found[path] = path.read_bytes()
    return found


def output_lines(data_dir: Path, log_name: str = "events") -> list[bytes]:
    """Every line of the output, through the log's reader; fails on a torn line or a leftover temporary file."""
    assert_whole(data_dir)
    return [record.line for record in Reader(Path(data_dir) / log_name, log_name=log_name).read()]


def output_ids(data_dir: Path) -> list[str]:
    import orjson

    return [orjson.loads(line)["messageId"] for line in output_lines(data_dir)]


def track(message_id: str, **fields: Any) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": message_id, **fields}


async def post_batch(session: Any, url: str, events: list[dict], key: str = "wk_test") -> tuple[int | None, dict, Any]:
    """POST /v1/batch; (status, body, headers), or (None, {}, {}) when the collector did not answer."""
    import aiohttp

    try:
        async with session.post(url + "/v1/batch", json={"batch": events}, headers={"X-Write-Key": key}) as answer:
            return answer.status, await answer.json(content_type=None), answer.headers
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None, {}, {}


async def get_json(session: Any, url: str) -> tuple[int, dict]:
    async with session.get(url) as answer:
        return answer.status, await answer.json(content_type=None)


async def stream_messages(nats_url: str, stream: str = "INTILERY") -> list[Any]:
    """Every message in the stream (subject, headers, data), oldest first; for small streams."""
    import nats
    import nats.js.errors

    nc = await nats.connect(nats_url.split(","), connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = nc.jetstream(timeout=5)
        state = (await js.stream_info(stream)).state
        if state.messages == 0:
            return []
        found = []
        for seq in range(state.first_seq, state.last_seq + 1):
            try:
                found.append(await js.get_msg(stream, seq))
            except nats.js.errors.NotFoundError:  # deleted (an erasure): a gap
                continue
        return found
    finally:
        await nc.close()


def metric(text: str, name: str) -> float:
    """A metric's value in Prometheus text (the sum over its labels), 0 when absent."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
