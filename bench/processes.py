"""A real collector in a subprocess (``python -m collector serve`` on a free port), for tests and
benchmarks: its ``intilery.toml`` written, started, stopped.

Example::

    with CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": "wk"}]) as collector:
        requests.post(collector.url + "/v1/track", ...)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


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
