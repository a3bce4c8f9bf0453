"""The profile database on PostgreSQL (``--profiles-db postgresql://...``): the same queries as
SQLite (``store.SqlStore``), for profiles shared by several machines or processes.

Builders on several machines may share one database: each batch takes a transaction-scoped
advisory lock first, so batches never interleave, and each log keeps its own checkpoint
(``database.checkpoint_name``). Needs the ``profiles-pg`` extra (psycopg 3).
"""

from __future__ import annotations

from collector.profiles.store import SqlStore

BUILDER_LOCK = 0x1D7E_1E27  # pg_advisory_xact_lock key of the builders' batches


class PostgresStore(SqlStore):
    P = "%s"
    TEXT = 'TEXT COLLATE "C"'
    CLUSTERED = ""
    VERSION = 3  # store.VERSION 4 changed only SQLite's tables

    def __init__(self, url: str, *, reads_only: bool = False, migrate: bool | None = None) -> None:
        import psycopg

        self.url = url
        self.conn = psycopg.connect(url)
        self.create(migrate=not reads_only if migrate is None else migrate)  # in a transaction, under the builders' lock
        self.conn.autocommit = reads_only  # a reader holds no transaction open

    def _has_tables(self) -> bool:
        return bool(self._all("SELECT 1 FROM information_schema.tables WHERE table_name = 'identifiers'"))

    def begin(self) -> None:
        self._run("SELECT pg_advisory_xact_lock(?)", (BUILDER_LOCK,))

    def close(self) -> None:
        self.conn.close()
