"""First-party mode end to end: nginx serving a site and proxying /p/ to the collector, Chromium visiting.

nginx runs ``docs/first-party/nginx.conf`` itself, with the ports, paths and collector address
substituted, and connects to the collector from 127.0.0.2 (``proxy_bind``): the browser's
address, 127.0.0.1, reaches the stored event only through X-Forwarded-For from a trusted proxy.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from browser_launcher import launch


from collector.serve.snippet import snippet
from helpers import ChildProcess, CollectorProcess, free_port, read_events, wait_until
from tests.e2e.conftest import ROOT

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DOCUMENTED = ROOT / "docs" / "first-party" / "nginx.conf"
KEY = "wk_first_party"
SITE_HOST = "www.shop.example.com"
COOKIE_DOMAIN = "shop.example.com"
NGINX_ADDRESS = "127.0.0.2"  # nginx's address towards the collector; the browser's is 127.0.0.1
TIMEOUT = 30.0
DAYS_400 = 400 * 86400


class Nginx(ChildProcess):
    """Debian's nginx on free 127.0.0.1 ports, its prefix, pid file and logs under ``workdir``."""

    def __init__(self, workdir: Path, collector_port: int, site: Path, other_site: Path) -> None:
        if not os.access(NGINX, os.X_OK):  # a missing nginx fails the test: a Guarantees row rests on it
            pytest.fail("nginx is not installed: apt-get install nginx (Debian's package)", pytrace=False)
        self.workdir = workdir
        self.port, self.other_port = free_port(), free_port()
        self.log = workdir / "nginx.log"
        server = DOCUMENTED.read_text().split("\nserver {", 1)[1]
        substitutions = [
            ("listen 443 ssl;", f"listen 127.0.0.1:{self.port};"),
            ("root /var/www/shop;", f"root {site};"),
            ("proxy_pass http://127.0.0.1:8080/$1$is_args$args;",
             f"proxy_pass http://127.0.0.1:{collector_port}/$1$is_args$args;\n        proxy_bind {NGINX_ADDRESS};"),
        ]  # fmt: skip
        for old, new in substitutions:
            assert old in server, f"{DOCUMENTED} no longer has {old!r}"
            server = server.replace(old, new)
        temp = "".join(f"{kind}_temp_path {workdir}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = workdir / "nginx.conf"
        # As root, workers would run as nobody, who cannot read pytest's tmp directory (mode 0700).
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}pid {workdir}/nginx.pid;\nevents {{}}\nhttp {{\n{temp}access_log {workdir}/access.log;\n"
            "types { text/html html; application/javascript js; }\n"
            f"server {{{server}\n"
            f"server {{ listen 127.0.0.1:{self.other_port}; root {other_site}; }}\n}}\n"
        )

    def start(self) -> Nginx:
        self.spawn([NGINX, "-p", str(self.workdir), "-e", "stderr", "-c", str(self.conf), "-g", "daemon off; error_log stderr;"])
        wait_until(self._up, TIMEOUT, what=f"nginx on port {self.port} (log {self.log})")
        return self

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/p/intilery.js", timeout=2).close()
            return True
        except OSError:
            return False


def page(title: str, tag: str) -> str:
    return f"<!doctype html><html><head><title>{title}</title>{tag}</head><body><h1>{title}</h1></body></html>"


@pytest.fixture
def setup(tmp_path):
    """The collector (nginx trusted), nginx with the site and another site, all stopped afterwards."""
    site, other = tmp_path / "site", tmp_path / "other"
    site.mkdir()
    other.mkdir()
    collector = CollectorProcess(
        tmp_path,
        sources=[{"name": "shop", "write_key": KEY, "ip_mode": "full", "first_party": True, "cookie_domain": COOKIE_DOMAIN}],
        trusted_proxies=[f"{NGINX_ADDRESS}/32"],
    ).start()
    nginx = Nginx(tmp_path, collector.port, site, other)
    site_url = f"http://{SITE_HOST}:{nginx.port}"
    (site / "index.html").write_text(page("Shop", snippet(KEY, "/p", first_party=True)))
    oneline = f'<script async src="/p/intilery.js" data-write-key="{KEY}" data-first-party></script>'
    (site / "oneline.html").write_text(page("One line", oneline))
    # Another site (127.0.0.1 is not example.com) embedding the same collector by its full URL.
    (other / "index.html").write_text(page("Elsewhere", snippet(KEY, site_url + "/p", first_party=True)))
    nginx.start()
    yield collector, nginx, site_url
    nginx.stop()
    collector.stop()


@pytest.fixture(scope="module")
def browser(playwright_instance):
    launched = launch(playwright_instance, ("--host-resolver-rules=MAP *.example.com 127.0.0.1",))
    yield launched
    launched.close()


class Visit:
    """A browser context on one page: the answers to the tag's POST /p/v1/batch, the page's errors."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context()
        self.context.set_default_timeout(TIMEOUT * 1000)
        self.tab = self.context.new_page()
        self.answers: list[dict] = []  # {"status", "set_cookie": [header values]}
        self.errors: list[str] = []
        self.tab.on("response", self._seen)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))

    def _seen(self, response) -> None:
        if response.url.endswith("/v1/batch") and response.request.method == "POST":
            cookies = [h["value"] for h in response.headers_array() if h["name"].lower() == "set-cookie"]
            self.answers.append({"status": response.status, "set_cookie": cookies})

    def open(self, url: str | None = None) -> str:
        """Loads ``url`` (None: reloads), waits for the tag, and gives the anonymousId it uses."""
        self.tab.goto(url) if url else self.tab.reload()
        self.tab.wait_for_function("window.intilery && !Array.isArray(window.intilery)")
        return self.tab.evaluate("intilery.user().anonymousId()")

    def wait(self, count: int) -> list[dict]:
        """The answers, once there are ``count``."""

        def enough():
            self.tab.evaluate("0")  # the sync API delivers events during calls: make one
            return self.answers if len(self.answers) >= count else None

        return wait_until(enough, TIMEOUT, what=f"{count} batch answers")

    def cookies(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.context.cookies()}


@pytest.fixture
def visit(browser):
    visits: list[Visit] = []

    def make() -> Visit:
        visits.append(Visit(browser))
        return visits[-1]

    yield make
    for v in visits:
        assert v.errors == [], f"uncaught errors in the page: {v.errors}"
        v.context.close()


def events_of(collector: CollectorProcess, aid: str, count: int) -> list[dict]:
    def enough():
        found = [e for e in read_events(collector.data_dir) if e.get("anonymousId") == aid]
        return found if len(found) >= count else None

    return wait_until(enough, TIMEOUT, interval=0.2, what=f"{count} stored events of {aid}")


def test_the_server_set_id_outlives_script_storage(setup, visit):
    """Tag from the site's path; the client address through nginx; itl_aid set once, first-party, kept by a reload."""
    collector, nginx, site_url = setup
    v = visit()
    scripts = []
    v.tab.on("response", lambda r: scripts.append((r.url, r.status)) if r.url.endswith("/intilery.js") else None)
    v.tab.set_extra_http_headers({"X-Forwarded-For": "203.0.113.9"})  # a spoofed hop nginx appends to
    aid = v.open(site_url + "/")
    assert scripts == [(site_url + "/p/intilery.js", 200)]

    first = events_of(collector, aid, 1)[0]
    assert first["type"] == "page" and first["context"]["page"]["url"] == site_url + "/"
    assert first["context"]["ip"] == "127.0.0.1"  # the browser, not nginx (127.0.0.2) nor the spoofed hop

    set_cookie = v.wait(1)[0]["set_cookie"]
    assert any(c.startswith(f"itl_aid={aid};") for c in set_cookie), set_cookie
    jar = v.cookies()
    cookie = jar["itl_aid"]
    assert (cookie["value"], cookie["domain"], cookie["path"], cookie["sameSite"]) == (aid, "." + COOKIE_DOMAIN, "/", "Lax")
    assert (cookie["httpOnly"], cookie["secure"]) == (False, False)  # readable by the tag; plain HTTP here
    assert abs(cookie["expires"] - time.time() - DAYS_400) < 3600
    assert jar["itl_aid_fresh"]["httpOnly"] is True

    # More events: answered without a new Set-Cookie.
    v.tab.evaluate("() => { intilery.track('Viewed Mug'); intilery.track('Added Mug'); intilery.flush() }")
    events_of(collector, aid, 3)
    assert all(a["set_cookie"] == [] for a in v.wait(2)[1:])

    # What Safari's 7-day cap deletes: localStorage and every cookie a script can see, but itl_aid.
    v.tab.evaluate(
        """() => { localStorage.clear();
             for (const c of document.cookie.split('; ')) { const n = c.split('=')[0];
               if (n && n != 'itl_aid') for (const d of ['', '; domain=' + location.hostname, '; domain=.example.com',
                 '; domain=.shop.example.com']) document.cookie = n + '=; path=/; max-age=0' + d } }"""
    )
    assert v.tab.evaluate("() => document.cookie") == f"itl_aid={aid}"
    before = len(v.answers)
    assert v.open() == aid
    events_of(collector, aid, 4)
    assert all(a["status"] == 200 and a["set_cookie"] == [] for a in v.wait(before + 1)[before:])  # fresh: not re-sent
    assert sum(1 for a in v.answers if a["set_cookie"]) == 1

    # reset(): a new id, which the collector then sets.
    new = v.tab.evaluate("() => { intilery.reset(); intilery.track('Signed Out'); intilery.flush(); return intilery.user().anonymousId() }")
    assert new != aid
    events_of(collector, new, 1)
    wait_until(lambda: v.cookies().get("itl_aid", {}).get("value") == new, TIMEOUT, what="itl_aid set to the new id")
    assert v.open() == new


def test_another_site_embedding_the_tag_gets_no_cookie(setup, visit):
    """A page on another site posting to the collector is answered 200 without Set-Cookie; the tag sets none itself."""
    collector, nginx, site_url = setup
    v = visit()
    events_of(collector, v.open(f"http://127.0.0.1:{nginx.other_port}/"), 1)
    assert [(a["status"], a["set_cookie"]) for a in v.wait(1)] == [(200, [])]
    assert "itl_aid" not in v.cookies()  # nor did the tag write one


def test_the_one_line_tag_on_the_site_path_is_first_party(setup, visit):
    """<script src="/p/intilery.js" data-first-party>: the host is the tag's folder, and itl_aid is the collector's."""
    collector, nginx, site_url = setup
    v = visit()
    aid = v.open(site_url + "/oneline.html")
    events_of(collector, aid, 1)
    assert v.wait(1)[0]["status"] == 200
    cookie = v.cookies()["itl_aid"]
    assert (cookie["value"], cookie["domain"]) == (aid, "." + COOKIE_DOMAIN)  # set by the collector, not the tag


def test_the_shops_origin_publishes_only_the_tag_and_the_ingest_paths(setup):
    """The documented proxy (review P11): /p/intilery.js and the message paths reach the collector;
    its metrics, console, Profile API and privacy API are not on the shop's origin."""
    collector, nginx, _ = setup
    base = f"http://127.0.0.1:{nginx.port}/p"

    def status(path: str, body: bytes | None = None) -> int:
        request = urllib.request.Request(base + path, data=body, headers={"Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    assert status("/intilery.js") == 200
    batch = b'{"writeKey":"%s","batch":[{"type":"track","event":"E","anonymousId":"a1"}]}' % KEY.encode()
    assert status("/v1/batch", batch) == 200
    assert status("/v1/t", b'{"writeKey":"%s","event":"E","anonymousId":"a1"}' % KEY.encode()) == 200
    for path in ("/metrics", "/console", "/console/signin", "/healthz", "/v1/regulations", "/openapi.json",
                 "/v1/spaces/default/collections/users/profiles/anonymous_id:a1/traits"):  # fmt: skip
        assert status(path) == 404, path
