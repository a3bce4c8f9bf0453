"""Fixtures for the NATS tests: servers, collectors and archive processes, always stopped.

Helpers live in ``natsprocs`` (test modules import them from there, not from here).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from natsprocs import SOURCES, ArchiveProcess, NatsServer, require_nats_server


@pytest.fixture
def nats_server(tmp_path):
    """A single JetStream server."""
    require_nats_server()
    server = NatsServer(tmp_path).start()
    yield server
    server.kill()


@pytest.fixture
def nats_cluster(tmp_path):
    """Three clustered JetStream servers (routes between all of them)."""
    require_nats_server()
    servers: list[NatsServer] = []
    for i in range(3):
        servers.append(NatsServer(tmp_path, f"n{i + 1}", cluster=servers))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


@pytest.fixture
def archives(tmp_path):
    """``await archives(data_dir, url, *args)`` starts one; each is stopped (SIGKILL if it hangs) at the end."""
    started: list[ArchiveProcess] = []

    async def start(data_dir: Path, nats_url: str, *args: str, name: str = "archive") -> ArchiveProcess:
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        archive = ArchiveProcess(workdir, data_dir, nats_url, *args)
        started.append(archive)
        return await asyncio.to_thread(archive.start)

    yield start
    for archive in started:
        archive.stop(timeout=10)


@pytest.fixture
def collectors(tmp_path):
    """``await collectors(name, *args, **settings)`` starts a ``helpers.CollectorProcess``."""
    from helpers import CollectorProcess

    started: list[Any] = []

    async def start(name: str, *args: str, **settings: Any):
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        collector = CollectorProcess(workdir, settings.pop("sources", SOURCES), args=list(args), **settings)
        started.append(collector)
        return await asyncio.to_thread(collector.start)

    yield start
    for collector in started:
        collector.stop(timeout=15)


@pytest.fixture
async def publisher(nats_server):
    """A NATS store (the collector's publisher) on ``nats_server``, started and closed."""
    from collector.config import Config
    from collector.log.nats import NatsStore

    store = NatsStore(Config(store="nats", nats_url=nats_server.url))
    await store.start()
    yield store
    await store.close()
