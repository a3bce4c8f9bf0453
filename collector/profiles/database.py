"""The profile database a configuration names: opened (SQLite or PostgreSQL), the builder's
checkpoint name, the host's builder lock. For the builder, the Profile API and privacy jobs."""

from __future__ import annotations

import socket
from pathlib import Path

from collector.profiles.builder import CHECKPOINT
from collector.profiles.store import SqliteStore

LOCK = "profiles"  # .locks/profiles.lock, beside the store's instance locks


def open_store(target: str | Path, *, reads_only: bool = False, building: bool = False, migrate: bool | None = None):
    """The store a ``--profiles-db`` names: a ``postgresql://`` URL, or a SQLite file path
    (``building``: the builder's, with SQLite's larger page cache; ``migrate=False``: a database
    of another version is left as it is, ``outdated``, for the builder: privacy jobs open it so)."""
    if str(target).startswith(("postgresql://", "postgres://")):
        from collector.profiles.postgres import PostgresStore

        return PostgresStore(str(target), reads_only=reads_only, migrate=migrate)
    return SqliteStore(Path(target), reads_only=reads_only, building=building, migrate=migrate)


def db_target(config) -> str:
    """Where the profiles are: ``profiles_db``, else ``<data_dir>/profiles.db``."""
    return config.profiles_db or str(Path(config.data_dir) / "profiles.db")


def checkpoint_name(config) -> str:
    """The builder's checkpoint: one per log when a database is shared (PostgreSQL); the NATS
    stream is one log for every collector and host."""
    if config.store == "nats":
        return f"{CHECKPOINT}@nats:{config.nats_stream}"
    if not config.profiles_db.startswith(("postgresql://", "postgres://")):
        return CHECKPOINT
    return f"{CHECKPOINT}@{socket.gethostname()}:{Path(config.data_dir).resolve()}"


def take_lock(data_dir: Path) -> int | None:
    """The host's builder lock, ``<data_dir>/.locks/profiles.lock`` (a file descriptor held
    open), or None when another process has it."""
    from collector.serve.companions import take_lock as take

    return take(data_dir, LOCK)
