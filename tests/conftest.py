"""Shared fixtures: a configured collector app on a temporary data directory."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from collector.app import SERVER_KWARGS, create_app
from collector.config import Config, Source
from collector.log.reader import read_events
from helpers import build_geo_db

WEB = Source(name="web", write_key="wk_web", allowed_origins=("https://shop.example",))
SERVER = Source(name="server", write_key="wk_server", ip_mode="full", trust_client_ip=True)
NOIP = Source(name="noip", write_key="wk_noip", ip_mode="drop")


# A run in which a test behind a Guarantees row (docs/guarantees.md, linked from the README) skipped
# fails; in a full run, a row that names a test that does not exist fails too.
README = Path(__file__).resolve().parents[1] / "docs" / "guarantees.md"


def guarantee_tests(readme: Path = README) -> list[str]:
    """The node ids (or file paths) the Guarantees table of docs/guarantees.md cites, as pytest spells them (``tests/...``)."""
    table = readme.read_text().split("\n## Guarantees", 1)[1].split("\n## ", 1)[0]
    cited = []
    for row in table.splitlines():
        if not row.startswith("|"):
            continue
        previous = None
        for ref in re.findall(r"`([^`]*(?:\.py|::)[^`]*)`", row.rsplit("|", 2)[-2]):
            ref = ref.split(" ", 1)[0]
            if ref.startswith("...::") and previous:  # `...::test` is a sibling of the one before
                ref = previous.rsplit("::", 1)[0] + ref[3:]
            previous = ref
            cited.append("tests/" + ref)
    return cited


def _covers(ref: str, nodeid: str) -> bool:
    return nodeid == ref or nodeid.startswith((ref + "::", ref + "["))


COLLECTED = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[COLLECTED] = []


def pytest_itemcollected(item):
    item.config.stash[COLLECTED].append(item.nodeid)


def pytest_sessionfinish(session):
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    cited = guarantee_tests()
    skipped = [r.nodeid for r in reporter.stats.get("skipped", [])] if reporter else []
    problems = [f"{nodeid} skipped, and a README Guarantees row rests on it"
                for nodeid in dict.fromkeys(skipped) if any(_covers(ref, nodeid) for ref in cited)]
    if config.args == config.getini("testpaths"):  # the whole suite: every cited test must exist
        collected = config.stash[COLLECTED]
        problems += [f"the README Guarantees table cites {ref}, which is not a test"
                     for ref in cited if not any(_covers(ref, nodeid) for nodeid in collected)]
    for problem in problems:
        if reporter:
            reporter.write_line(f"GUARANTEE NOT PROVEN: {problem}", red=True, bold=True)
    if problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def geo_db(tmp_path_factory) -> Path:
    return build_geo_db(tmp_path_factory.mktemp("geo") / "test-city.mmdb")


@pytest.fixture
def config(tmp_path, geo_db) -> Config:
    return Config(
        data_dir=tmp_path / "data",
        sources=(WEB, SERVER, NOIP),
        geoip=geo_db,
        trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
    )


@pytest.fixture
def make_client(aiohttp_client):
    """Start the collector app for a config (``replace``-style overrides allowed)."""

    async def start(config: Config, **changes):
        server = TestServer(create_app(replace(config, **changes)))
        await server.start_server(**SERVER_KWARGS)
        return await aiohttp_client(server)

    return start


@pytest.fixture
async def client(make_client, config):
    return await make_client(config)


def stored(data_dir: Path) -> list[dict]:
    return list(read_events(data_dir))


def rejected(data_dir: Path) -> list[dict]:
    return list(read_events(data_dir, "rejected"))
