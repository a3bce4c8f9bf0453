"""Helpers for tests and benchmarks: a real collector in a subprocess, a small geo database,
waiting for a condition with a deadline.

Example::

    with CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": "wk"}]) as collector:
        requests.post(collector.url + "/v1/track", ...)
    events = list(read_events(collector.data_dir))
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from collector.log.layout import EVENTS, LOGS
from collector.log.reader import DONE, Reader

# Networks of the test geo database: documentation ranges, so nothing real is implied.
GEO_NETWORKS: dict[str, dict[str, Any]] = {
    "203.0.113.0/24": {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "city": {"names": {"en": "London"}},
        "location": {"latitude": 51.5142, "longitude": -0.0931, "time_zone": "Europe/London"},
    },
    "198.51.100.0/24": {
        "country": {"iso_code": "FR", "names": {"en": "France"}},
        "subdivisions": [{"iso_code": "IDF", "names": {"en": "Île-de-France"}}],
        "city": {"names": {"en": "Paris"}},
        "location": {"latitude": 48.8566, "longitude": 2.3522, "time_zone": "Europe/Paris"},
    },
    "2001:db8::/32": {
        "country": {"iso_code": "DE", "names": {"en": "Germany"}},
        "city": {"names": {"en": "Berlin"}},
        "location": {"latitude": 52.52, "longitude": 13.405, "time_zone": "Europe/Berlin"},
    },
}


def build_geo_db(path: Path, networks: dict[str, dict[str, Any]] = GEO_NETWORKS) -> Path:
    """Write a GeoIP2-City-shaped .mmdb (IPv6 tree, IPv4 mapped) with mmdb-writer."""
    from mmdb_writer import MmdbF64, MMDBWriter
    from netaddr import IPSet

    def typed(value: Any) -> Any:
        if isinstance(value, float):
            return MmdbF64(value)
        if isinstance(value, dict):
            return {k: typed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [typed(v) for v in value]
        return value

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"])
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), typed(record))
    writer.to_db_file(str(path))
    return path


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    """Polls ``check()`` until it returns something truthy, and returns that; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


async def eventually(check: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "") -> Any:
    """``wait_until`` for async tests: awaits ``check()`` (sync or async) until it returns something
    truthy, and returns that.

    Fails (AssertionError) after ``timeout`` s with the last value seen; an exception raised
    by ``check`` (say, "the process died") ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}: last {last!r}")
        await asyncio.sleep(interval)


def assert_whole(data_dir: Path) -> None:
    """Every segment holds whole JSON lines (read through the log's reader); no temporary file is left."""
    data_dir = Path(data_dir)
    leftovers = [p for p in data_dir.glob("**/part-*") if p.name.endswith(".tmp")]
    assert not leftovers, f"left over: {leftovers}"
    for log_name in LOGS:
        reader = Reader(data_dir / log_name, log_name=log_name)
        for _record in reader.read():
            pass
        assert reader.quarantined == 0, f"{reader.quarantined} lines under {log_name}/ are not JSON objects"
        for segment, offset in reader.cursor.items():
            try:
                size = (data_dir / log_name / segment).stat().st_size if offset != DONE else offset
            except FileNotFoundError:  # compressed since it was read: the .gz is whole
                continue
            assert offset == size, f"torn line in {segment}"


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal a child and wait for it to exit; SIGKILL it when it takes longer than ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, sources: list[dict[str, Any]], **settings: Any) -> Path:
    """A minimal intilery.toml: top-level settings, then one [[source]] table per source."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"{k} = {value(v)}" for k, v in settings.items()]
    for source in sources:
        lines += ["", "[[source]]"] + [f"{k} = {value(v)}" for k, v in source.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class ChildProcess:
    """A ``python -m collector ...`` child writing its output to ``self.log``; ``stop`` or ``kill`` it."""

    proc: subprocess.Popen | None = None
    log: Path

    def spawn(self, cmd: list[str]) -> subprocess.Popen:
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self.proc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        stop_process(self.proc, sig, timeout)
        self._out.close()
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)


class CollectorProcess(ChildProcess):
    """``python -m collector serve`` on a free port, stopped (SIGTERM) on exit."""

    def __init__(
        self,
        workdir: Path,
        sources: list[dict[str, Any]] | None = None,
        args: list[str] = (),
        port: int | None = None,
        **settings: Any,
    ) -> None:
        self.workdir = Path(workdir)
        self.data_dir = Path(settings.pop("data_dir", self.workdir / "data"))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = write_config(
            self.workdir / "intilery.toml",
            sources if sources is not None else [{"name": "web", "write_key": "wk_test"}],
            **settings,
        )
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / f"collector-{self.port}.log"

    def start(self, timeout: float = 30) -> "CollectorProcess":
        cmd = [sys.executable, "-m", "collector", "serve", "--config", str(self.config), "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]  # fmt: skip
        self.spawn(cmd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"collector did not start within {timeout}s:\n{self.log.read_text()}")

    def __enter__(self) -> "CollectorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_events(data_dir: Path, root: str = EVENTS, newest_first: bool = False, since: str | None = None):
    """Every stored event under ``data_dir/root`` from partitions >= ``since`` (a one-off read)."""
    return Reader(Path(data_dir) / root, since=since, newest_first=newest_first, log_name=root).events()
