"""Engage fixtures: definitions written as files, and the profile database on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

_ids = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (a database per test)."""
    from profiles.pg import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def profiles_db(request, tmp_path) -> str:
    """A new empty profile database of each backend: its ``--profiles-db``."""
    if request.param == "sqlite":
        return str(tmp_path / f"profiles-{next(_ids)}.db")
    return request.getfixturevalue("postgres").database()


def write_definitions(root: Path, files: dict[str, str]) -> Path:
    """``files`` (``audiences/high_value.yaml`` -> YAML text) under ``root``; returns ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
