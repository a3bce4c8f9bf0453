"""Real-browser tests of intilery.js: headless Chromium (Playwright) against a real collector.

Local servers, all on 127.0.0.1 and stopped by these fixtures:

- the collector (``python -m collector serve``) that serves the tag and stores what it sends;
- a small page server on another port (so another origin) for the test pages in ``pages/``;
- per test when asked, a recording front for the collector and collectors to stop and start;
- Chromium, one per test module, with a fresh context (cookies, storage) per test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_launcher import launch
from harness import HOST_RULES, TIMEOUT, Collector, Front, PageServer, Tab


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium against a real collector")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def collector(tmp_path_factory):
    c = Collector(tmp_path_factory.mktemp("collector")).start()
    yield c
    c.stop()


@pytest.fixture
def make_collector(tmp_path):
    """Collectors a test starts and stops itself (down/up scenarios); all stopped afterwards."""
    made: list[Collector] = []

    def make() -> Collector:
        made.append(Collector(Path(tmp_path) / f"collector{len(made)}"))
        return made[-1]

    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="session")
def site(collector):
    s = PageServer(collector.url)
    yield s
    s.close()


@pytest.fixture
def front(collector):
    f = Front(collector.url)
    yield f
    f.close()


# Module scope, not session: the sync API leaves its asyncio loop marked as running in this
# thread while Playwright is started, which breaks any asyncio test (pytest-aiohttp) that runs
# after it. Ending Playwright with each module leaves later tests a clean thread.
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw, HOST_RULES)
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context()
    ctx.set_default_timeout(TIMEOUT * 1000)
    yield ctx
    ctx.close()


@pytest.fixture
def tab(context):
    """A fresh page; the test fails if the tag (or anything) threw into it."""
    t = Tab(context.new_page())
    yield t
    assert not t.errors, f"uncaught errors in the page: {t.errors}"
