"""Shared fixtures: a configured collector app on a temporary data directory."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from collector.app import SERVER_KWARGS, create_app
from collector.config import Config, Source

from guarantees import Gate
from helpers import build_geo_db, read_events

WEB = Source(name="web", write_key="wk_web", allowed_origins=("https://shop.example",))
SERVER = Source(name="server", write_key="wk_server", ip_mode="full", trust_client_ip=True)
NOIP = Source(name="noip", write_key="wk_noip", ip_mode="drop")


# The Guarantees table (docs/guarantees.md, linked from the README) is checked by every run (``guarantees.Gate``).
README = Path(__file__).resolve().parents[1] / "docs" / "guarantees.md"


def pytest_configure(config):
    config.pluginmanager.register(Gate(README), "guarantees")


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
