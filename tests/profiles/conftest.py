"""Profiles fixtures: a log written as segments, a profile store, a builder over them."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from collector.profiles.builder import Builder
from collector.profiles.rules import Rules
from collector.profiles.database import open_store
from collector.profiles.store import SqliteStore

PARTITION = "dt=2026-11-28/hr=10"
_ids = itertools.count()


def ev(kind: str = "track", ts: str = "2026-11-28T10:00:00.000Z", **fields) -> dict:
    """A stored event as the collector writes it (a unique messageId unless one is given)."""
    event = {"type": kind, "timestamp": ts, "receivedAt": ts, "messageId": fields.pop("messageId", f"m-{next(_ids)}"),
             "source": "web"}  # fmt: skip
    if kind == "track":
        event["event"] = fields.pop("event", "Clicked")
    event.update(fields)
    return event


def at(second: int) -> str:
    """A timestamp ``second`` seconds into the test hour."""
    return f"2026-11-28T10:{second // 60:02d}:{second % 60:02d}.000Z"


class Log:
    """The events/ directory of a data directory, written one segment per ``write``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.segments = 0

    def write(self, events: list[dict], partition: str = PARTITION) -> None:
        directory = self.data_dir / "events" / partition
        directory.mkdir(parents=True, exist_ok=True)
        self.segments += 1
        path = directory / f"part-test_0-{self.segments:06d}.ndjson"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


@pytest.fixture
def log(tmp_path) -> Log:
    return Log(tmp_path / "data")


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (a database per store)."""
    from .pg import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql")]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def profiles_db(backend, tmp_path, request) -> str:
    """A new empty profile database of the backend under test: its ``--profiles-db``."""
    if backend == "sqlite":
        return str(tmp_path / f"profiles-{next(_ids)}.db")
    return request.getfixturevalue("postgres").database()


@pytest.fixture
def make_store(backend, tmp_path, request):
    """New empty stores of the backend under test (each test runs on SQLite and on PostgreSQL)."""
    made = []

    def make(name: str = "profiles.db"):
        if backend == "sqlite":
            store = SqliteStore(tmp_path / name)
        else:
            store = open_store(request.getfixturevalue("postgres").database())
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def build(log, make_store):
    """Write events to the log and build profiles from all of it; returns the store."""

    def run(events: list[dict], rules: Rules = Rules(), store=None):
        if events:
            log.write(events)
        store = store or make_store()
        Builder(store, log.data_dir, rules).catch_up()
        return store

    return run
