"""What the browser tests drive: the collector process, the page server, a recording front, a tab.

Every server binds 127.0.0.1 only; the fixtures in conftest.py start and stop them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from collector.serve.snippet import snippet
from helpers import free_port, read_events, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).parent / "pages"
# The real Segment and RudderStack browser SDKs (pinned in sdks/package.json, installed by `npm ci`
# there), served by the page server as /sdk/<name>.js to the pages that load them.
SDKS = Path(__file__).parent / "sdks" / "node_modules"
SDK_FILES = {
    "segment": SDKS / "@segment/analytics-next/dist/umd/index.js",
    "rudderstack": SDKS / "@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js",
}
WRITE_KEY = "wk_test"
# Lets a test open http://www.shop.example.com:PORT/ (our page server) to check the cookie domain;
# the names resolve to loopback inside this browser only, nothing leaves the machine.
HOST_RULES = ("--host-resolver-rules=MAP *.example.com 127.0.0.1",)
CONFIG = f"""
[[source]]
name = "web"
write_key = "{WRITE_KEY}"
allowed_origins = ["*"]
ip_mode = "anonymize"
"""
TIMEOUT = 30.0  # seconds: generous ceiling for anything to arrive; polls return as soon as it does


class Collector:
    """A collector subprocess on a fixed port and data directory; can stop and start again."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.config = workdir / "intilery.toml"
        self.config.write_text(CONFIG)
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "collector.log"

    def start(self) -> Collector:
        cmd = [sys.executable, "-m", "collector", "serve", "--config", str(self.config), "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(self.data_dir)]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._healthy, what=f"the collector on {self.url} (log: {self.log})")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the collector exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, as an operator would: the collector closes (and gzips) its segments."""
        if self.proc:
            stop_process(self.proc)
        self.proc = None

    def events(self) -> list[dict]:
        """Every stored event so far (open and closed segments)."""
        for _ in range(5):
            try:
                return list(read_events(self.data_dir))
            except (EOFError, OSError, ValueError):  # a segment being compressed right now
                time.sleep(0.1)
        return list(read_events(self.data_dir))

    def wait_for(self, select, count: int = 1, timeout: float = TIMEOUT, poke=None) -> list[dict]:
        """Waits until at least ``count`` stored events match ``select`` and returns them all.

        ``poke`` (optional) runs on every poll, e.g. to call ``intilery.flush()`` in the page.
        """

        def check():
            if poke:
                poke()
            found = [e for e in self.events() if select(e)]
            return found if len(found) >= count else None

        return wait_until(check, timeout, interval=0.2, what=f"{count} stored event(s) in {self.data_dir}")


class PageServer:
    """Serves ``pages/*.html`` from another origin than the collector, filling in placeholders.

    ``{{COLLECTOR}}`` the collector URL the tag is loaded from; ``{{KEY}}`` the write key;
    ``{{ATTRS}}`` extra attributes of the one-line script tag from the query (``host`` gives
    ``data-host``, ``consent`` gives ``data-consent``); ``{{SNIPPET}}`` the stub snippet
    (pointing at ``host`` or the collector). ``?csp=1`` adds a strict Content-Security-Policy.
    """

    def __init__(self, collector_url: str):
        collector = collector_url

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                file = PAGES / url.path.lstrip("/")
                sdk = SDK_FILES.get(url.path[len("/sdk/"):-len(".js")]) if url.path.startswith("/sdk/") else None
                if sdk is not None:
                    self._send(200, "text/javascript", sdk.read_bytes()) if sdk.is_file() else self.send_error(404)
                    return
                if url.path.startswith("/spa/") or url.path.startswith("/stub/"):
                    file = PAGES / "blank.html"  # single-page routes answer with a page on reload
                if not file.is_file() or file.suffix != ".html":
                    self.send_error(404)
                    return
                host = query.get("host", collector)
                attrs = "".join(
                    f' data-{name}="{query[name]}"' for name in ("host", "consent") if name in query
                )
                html = (
                    file.read_text()
                    .replace("{{SNIPPET}}", snippet(WRITE_KEY, host))
                    .replace("{{COLLECTOR}}", collector)
                    .replace("{{KEY}}", WRITE_KEY)
                    .replace("{{ATTRS}}", attrs)
                )
                csp = query.get("csp") and (
                    f"default-src 'none'; script-src {collector}; connect-src {host}; "
                    "require-trusted-types-for 'script'; base-uri 'none'; form-action 'none'"
                )
                self._send(200, "text/html; charset=utf-8", html.encode(), csp)

            def _send(self, status, content_type, body, csp=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if csp:
                    self.send_header("Content-Security-Policy", csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Front:
    """A recording front for the collector, on its own port: what the tag sent, as the server saw it.

    Forwards every ``POST /v1/batch`` to the collector and records it (time, content type,
    body, status). A rule added with ``fail`` answers a matching request itself instead, the way
    a collector under trouble would (400, 503 + Retry-After), so retry behaviour is observable
    without intercepting requests inside the browser.
    """

    def __init__(self, collector_url: str):
        front = self
        self.records: list[dict] = []
        self.rules: list[dict] = []
        self.lock = threading.Lock()

        class Handler(SimpleHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                status, headers, answer = front._answer(self.path, raw, body, self.headers)
                with front.lock:
                    front.records.append({"time": time.monotonic(), "content_type": self.headers.get("Content-Type"),
                                          "body": body, "status": status})  # fmt: skip
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
                self.send_header("Access-Control-Expose-Headers", "Retry-After")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.collector_url = collector_url
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, match, status: int, retry_after: int | None = None, times: int = 1) -> None:
        """Answers ``status`` to the next ``times`` batches for which ``match(message)`` holds."""
        self.rules.append({"match": match, "status": status, "retry_after": retry_after, "left": times})

    def _answer(self, path, raw, body, headers):
        messages = body.get("batch", []) if isinstance(body, dict) else []
        with self.lock:
            for rule in self.rules:
                if rule["left"] and any(rule["match"](m) for m in messages):
                    rule["left"] -= 1
                    extra = {"Retry-After": str(rule["retry_after"])} if rule["retry_after"] is not None else {}
                    answer = {"success": False, "code": "scripted", "message": f"scripted {rule['status']}"}
                    return rule["status"], extra, json.dumps(answer).encode()
        request = urllib.request.Request(
            self.collector_url + path, data=raw, method="POST",
            headers={"Content-Type": headers.get("Content-Type") or "text/plain", "Origin": headers.get("Origin") or ""},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
                return r.status, {}, r.read()
        except urllib.error.HTTPError as e:
            extra = {"Retry-After": e.headers["Retry-After"]} if e.headers.get("Retry-After") else {}
            return e.code, extra, e.read()

    def requests_with(self, match) -> list[dict]:
        """The recorded requests carrying a message for which ``match(message)`` holds."""
        with self.lock:
            return [r for r in self.records if r["body"] and any(match(m) for m in r["body"].get("batch", []))]

    def wait_for(self, match, count: int = 1, timeout: float = TIMEOUT) -> list[dict]:
        """Waits until at least ``count`` recorded requests carry a match, and returns them all. A
        request is recorded once the collector has answered it, so after the collector has stored
        its event: a test that saw the event waits here for the record."""
        return wait_until(lambda: (found := self.requests_with(match)) and len(found) >= count and found,
                          timeout, interval=0.05, what=f"{count} request(s) recorded by the front")  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Tab:
    """A Playwright page plus what the tests check on it: batches sent, console, page errors."""

    def __init__(self, page):
        self.page = page
        self.sent: list[dict] = []  # every request to /v1/batch: {"url", "type", "body"}
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)

    def _request(self, request) -> None:
        if "/v1/batch" in request.url:
            try:
                body = json.loads(request.post_data or "null")
            except ValueError:
                body = None
            self.sent.append({"url": request.url, "type": request.resource_type, "body": body})

    def open(self, url: str, **kwargs) -> Tab:
        """Navigates and waits until the tag has replaced the stub (or the one-line load ran)."""
        self.page.goto(url, **kwargs)
        self.wait_loaded()
        return self

    def wait_loaded(self) -> None:
        self.page.wait_for_function("window.intilery && !Array.isArray(window.intilery)", timeout=TIMEOUT * 1000)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def anonymous_id(self) -> str:
        return self.js("intilery.user().anonymousId()")

    def sent_messages(self) -> list[dict]:
        """Every message the page sent by fetch (the sync API delivers events during calls: pump first)."""
        self.js("0")
        return [m for req in self.sent if req["body"] for m in req["body"].get("batch", [])]

    def storage(self) -> dict:
        """The tag's localStorage entries (itl_*), or {} when storage is unavailable."""
        return self.js(
            """() => { try { return Object.fromEntries(Object.entries(localStorage)
                 .filter(([k]) => k.startsWith('itl_'))) } catch (e) { return {} } }"""
        )

    def queued(self) -> list[dict]:
        """Messages in this origin's persisted tab queues (itl_q.*)."""
        return [m for k, v in self.storage().items() if k.startswith("itl_q.") for m in json.loads(v)["q"]]

    def cookies(self) -> dict:
        return {c["name"]: c for c in self.page.context.cookies() if c["name"].startswith("itl_")}

    def settle(self) -> None:
        """Lets the tag's zero-delay timers run: the automatic page on navigation, then the queue save it schedules."""
        self.js("() => new Promise(r => setTimeout(() => setTimeout(r)))")


def event_named(name: str, anonymous_id: str | None = None):
    return lambda e: e.get("event") == name and (anonymous_id is None or e.get("anonymousId") == anonymous_id)


def of_visitor(anonymous_id: str):
    return lambda e: e.get("anonymousId") == anonymous_id
