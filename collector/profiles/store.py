"""The profile database on SQLite (``data/profiles.db``, WAL): no setup.

Tables::

    identifiers  (type, value) → node id, profile, first/last seen, source, the node's state
    profiles     profile id → latest link key, refused links, profiles merged into it
    links        each distinct set of identifiers seen together, with the earliest key it was seen
                 at, and link_index by member: what ``replay`` re-applies after a late link
    events       messageId → home node, key, segment and offset in the log (the duplicate filter
                 and the index the events endpoint reads the log by)
    checkpoint   the builder's reader cursor and event count, written in the same transaction
                 as what those events changed, so a kill at any point loses or repeats nothing

``SqlStore`` is the schema and the queries, each job's in its module: the builder's
(``sql_builder.py``), the Profile API's reads (``sql_reads.py``), the privacy erasure's
(``sql_erase.py``), on ``sql.py``'s connection helpers; ``SqliteStore`` is its connection. The
PostgreSQL back end (``postgres.py``) is the same queries on another connection.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from collector.engage.audiences import tables as audiences
from collector.profiles.sql_builder import BuilderQueries
from collector.profiles.sql_erase import EraseQueries
from collector.profiles.sql_reads import ReadQueries

# {text}: TEXT, compared byte by byte (PostgreSQL says COLLATE "C": keys must sort as Python sorts them)
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS identifiers (type TEXT NOT NULL, value TEXT NOT NULL, node_id TEXT NOT NULL,
        profile_id TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, source TEXT NOT NULL,
        state TEXT NOT NULL, PRIMARY KEY (type, value))""",
    "CREATE INDEX IF NOT EXISTS identifiers_profile ON identifiers (profile_id)",
    "CREATE INDEX IF NOT EXISTS identifiers_node ON identifiers (node_id)",
    """CREATE TABLE IF NOT EXISTS profiles (profile_id TEXT PRIMARY KEY, max_key {text} NOT NULL,
        refused TEXT NOT NULL, merged TEXT NOT NULL){clustered}""",
    "CREATE TABLE IF NOT EXISTS links (members TEXT PRIMARY KEY, mkey {text} NOT NULL){clustered}",
    """CREATE TABLE IF NOT EXISTS link_index (type TEXT NOT NULL, value TEXT NOT NULL, members TEXT NOT NULL,
        PRIMARY KEY (type, value, members)){clustered}""",
    """CREATE TABLE IF NOT EXISTS events (source TEXT NOT NULL, message_id TEXT NOT NULL, node_id TEXT NOT NULL,
        key {text} NOT NULL, segment TEXT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (message_id, source)){clustered}""",
    "CREATE INDEX IF NOT EXISTS events_node ON events (node_id, key)",
    "CREATE TABLE IF NOT EXISTS checkpoint (name TEXT PRIMARY KEY, cursor TEXT NOT NULL, events BIGINT NOT NULL)",
    *audiences.SCHEMA,  # what engage/ derives from the profiles, rebuilt with them
)
TABLES = ("identifiers", "profiles", "links", "link_index", "events", "checkpoint", *audiences.TABLES)
# The tables' shape: a database of another version is emptied at start and built again from the
# log (the log is the truth; profiles are derived). 2: events keyed by (messageId, source); 3: on
# SQLite, the events table is its key's tree; 4: so are profiles, links and link_index (SQLite
# only: PostgreSQL's tables did not change, so its databases stay at 3 and are not emptied). The
# audiences' tables (engage/audiences/tables.py) are added to a database without emptying it: what
# they hold is counted over the log by a backfill (engage/audiences/backfill.py).
VERSION = 4
# What a rebuild keeps: the checkpoints (moved to each log's start), and who is in which audience
# with the changes not yet announced (the rebuilt answers are compared with them: no one enters again)
KEPT = ("checkpoint", "engage_members", "engage_history", "engage_announce")

log = logging.getLogger("intilery.profiles")


class SqlStore(BuilderQueries, ReadQueries, EraseQueries):
    """The schema and every query, on a DB-API connection whose placeholder is ``P``."""

    TEXT = "TEXT"
    VERSION = VERSION
    CLUSTERED = " WITHOUT ROWID"  # SQLite: a table of small rows is its primary key's tree (one tree less to write)

    # --- the schema --------------------------------------------------------------------------
    outdated = False  # the database is of another VERSION, left for the builder to make anew

    def create(self, migrate: bool = True) -> None:
        """The tables. A database of another ``VERSION`` (or of none: older) is emptied and made
        anew when ``migrate`` (the builder, holding the host's lock), else left as it is and
        ``outdated`` (readers: the Profile API answers 503 until the builder has made it anew)."""
        self.begin()
        self._run("CREATE TABLE IF NOT EXISTS schema (version INTEGER NOT NULL)")
        rows = self._all("SELECT version FROM schema")
        if not rows or rows[0][0] != self.VERSION:
            if self._all("SELECT 1 FROM schema") or self._has_tables():
                if not migrate:
                    self.outdated = True
                    self.commit()
                    return
                log.warning("the profile database has another shape: it is emptied and built again from the log")
            for table in TABLES:
                self._run(f"DROP TABLE IF EXISTS {table}")
            self._run("DELETE FROM schema")
            self._run("INSERT INTO schema (version) VALUES (?)", (self.VERSION,))
        for statement in SCHEMA:
            self._run(statement.replace("{text}", self.TEXT).replace("{clustered}", self.CLUSTERED))
        self.commit()

    def _has_tables(self) -> bool:
        return bool(self._all("SELECT 1 FROM sqlite_master WHERE name = 'identifiers'"))

    def reset(self) -> None:
        """Empty the profiles for ``intilery profiles --rebuild``, between the builders' batches
        (``begin``: PostgreSQL's lock). Every log's checkpoint goes back to its start, its row kept:
        a builder of another log sharing the database (another host's) finds it moved, takes it
        up (``Builder.step``) and reads its own log again, as this one does."""
        self.begin()
        for table in TABLES:
            if table not in KEPT:
                self._run(f"DELETE FROM {table}")
        self._run("UPDATE checkpoint SET cursor = ?, events = 0", ("{}",))
        self.commit()

class SqliteStore(SqlStore):
    def __init__(self, path: Path, *, reads_only: bool = False, building: bool = False, migrate: bool | None = None) -> None:
        self.path, self.reads_only = Path(path), reads_only
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a process kill; a power cut can
        # lose the last ones, and the checkpoint with them, so the builder reads them again.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        if building:  # the builder (readers and the privacy job, in the collector's process, keep SQLite's 2 MB)
            # A batch touches pages all over the identifiers' and events' trees (node ids are
            # hashes): a page cache of 64 MB keeps them in memory across batches.
            self.conn.execute("PRAGMA cache_size=-65536")
            # The WAL is copied into the database (with an fsync) once it holds 16,000 pages (64 MB;
            # the default is 1,000, several times a batch): a page a batch changes again is copied once.
            self.conn.execute("PRAGMA wal_autocheckpoint=16000")
        self.create(migrate=not reads_only if migrate is None else migrate)

    def begin(self) -> None:
        """Start a batch (or an erase) as one write transaction, reads included: Python's sqlite3
        would begin it only at the first write, and an erase committed between a batch's reads and
        its writes would be partly written back by the batch (links naming the erased identifiers).
        A reader's store takes no lock."""
        if not self.reads_only and not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        self.conn.close()

    def scrub(self) -> None:
        """Deleted rows out of the files: VACUUM rewrites the database without free pages or
        leftover cells, and a TRUNCATE checkpoint empties the WAL (which held the old pages)."""
        self.conn.commit()
        self.conn.execute("VACUUM")
        busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise sqlite3.OperationalError("the WAL could not be emptied: a reader holds it (retried)")
