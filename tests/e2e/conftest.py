"""End-to-end: ``intilery demo`` in a subprocess (collector and shop on two origins), real Chromium.

The geo database built for these tests maps loopback to London, so the browser's own
requests (fetch and sendBeacon alike) come from a mapped address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser_launcher import launch


from helpers import GEO_NETWORKS, build_geo_db, free_port, read_events, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


class Demo:
    """``python -m collector demo`` on free ports with a test geo database."""

    def __init__(self, workdir: Path, geo: Path) -> None:
        self.workdir = workdir
        self.port, self.site_port = free_port(), free_port()
        self.collector = f"http://127.0.0.1:{self.port}"
        self.site = f"http://127.0.0.1:{self.site_port}"
        self.data_dir = workdir / "data"
        self.log = workdir / "demo.log"
        cmd = [sys.executable, "-m", "collector", "demo", "--port", str(self.port), "--site-port", str(self.site_port),
               "--data-dir", str(self.data_dir), "--geoip", str(geo)]  # fmt: skip
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        wait_until(self._up, what=f"intilery demo (log {self.log})")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"intilery demo exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            for url in (self.collector + "/healthz", self.site + "/"):
                urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGINT) -> int:
        stop_process(self.proc, sig, 30)
        self._log.close()
        return self.proc.returncode

    def events(self, platform: bool = False) -> list[dict]:
        """The visitors' stored events; ``platform``: the platform's own instead (source ``intilery``:
        the demo's audiences' ``Audience Entered/Exited``)."""
        for _ in range(5):
            try:
                return [e for e in read_events(self.data_dir) if (e.get("source") == "intilery") == platform]
            except (EOFError, OSError, ValueError):  # a segment being compressed at this moment
                time.sleep(0.1)
        return [e for e in read_events(self.data_dir) if (e.get("source") == "intilery") == platform]

    def wait_for(self, count: int, select=lambda e: True, what: str = "", platform: bool = False) -> list[dict]:
        def enough():
            found = [e for e in self.events(platform) if select(e)]
            return found if len(found) >= count else None

        return wait_until(enough, what=f"{count} stored events {what}")


@pytest.fixture(scope="session")
def e2e_geo(tmp_path_factory) -> Path:
    london = GEO_NETWORKS["203.0.113.0/24"]
    return build_geo_db(tmp_path_factory.mktemp("e2e-geo") / "city.mmdb", {**GEO_NETWORKS, "127.0.0.0/8": london})


@pytest.fixture
def demo(tmp_path, e2e_geo):
    running = Demo(tmp_path, e2e_geo)
    yield running
    running.stop()


# Module scope: the sync Playwright API keeps an event loop running in this thread while it
# lives, which would stop asyncio tests collected after this directory from running.
@pytest.fixture(scope="module")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_instance):
    launched = launch(playwright_instance)
    yield launched
    launched.close()


class ConsoleWatch:
    """Collects page errors and console errors of every page in a context."""

    def __init__(self, context) -> None:
        self.errors: list[str] = []
        context.on("page", self.watch)
        context.on("weberror", lambda error: self.errors.append(f"pageerror: {error.error}"))

    def watch(self, page) -> None:
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text} ({(m.location or {}).get('url', '')})")
                if m.type == "error" else None)  # fmt: skip
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture
def new_context(browser):
    contexts = []

    def make(**options):
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        context.console = ConsoleWatch(context)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
