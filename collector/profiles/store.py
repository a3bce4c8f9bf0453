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

``SqlStore`` holds every query; ``SqliteStore`` is its connection. The PostgreSQL back end
(``postgres.py``) is the same queries on another connection.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import orjson

from collector.profiles.graph import Graph, Ident, Node, Profile
from collector.profiles.rules import node_id

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
)
TABLES = ("identifiers", "profiles", "links", "link_index", "events", "checkpoint")
# The tables' shape: a database of another version is emptied at start and built again from the
# log (the log is the truth; profiles are derived). 2: events keyed by (messageId, source); 3: on
# SQLite, the events table is its key's tree; 4: so are profiles, links and link_index (SQLite
# only: PostgreSQL's tables did not change, so its databases stay at 3 and are not emptied).
VERSION = 4
CHUNK = 500  # parameters per IN (...) query

log = logging.getLogger("intilery.profiles")


def _dumps(value) -> str:
    """JSON text (also the key of a set of identifiers: ``members``)."""
    return orjson.dumps(value).decode()


class SqlStore:
    """The queries, on a DB-API connection whose placeholder is ``P``."""

    P = "?"
    TEXT = "TEXT"
    VERSION = VERSION
    CLUSTERED = " WITHOUT ROWID"  # SQLite: a table of small rows is its primary key's tree (one tree less to write)
    conn: object

    def _q(self, sql: str) -> str:
        return sql if self.P == "?" else sql.replace("?", self.P)

    def _all(self, sql: str, params: Iterable = ()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(self._q(sql), tuple(params))
        return cur.fetchall()

    def _run(self, sql: str, params: Iterable = ()) -> None:
        self.conn.cursor().execute(self._q(sql), tuple(params))

    def _many(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self.conn.cursor().executemany(self._q(sql), rows)

    # --- transactions ------------------------------------------------------------------------
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
            if table != "checkpoint":
                self._run(f"DELETE FROM {table}")
        self._run("UPDATE checkpoint SET cursor = ?, events = 0", ("{}",))
        self.commit()

    def begin(self) -> None:
        """Start a batch: builders sharing one database take turns (PostgreSQL locks; SQLite has one writer)."""

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    # --- the builder's reads ------------------------------------------------------------------
    def load_profiles_of(self, idents: Iterable[Ident]) -> dict[str, tuple[Profile, dict[Ident, Node]]]:
        """The whole profiles (by id) of those of ``idents`` that are known."""
        by_kind: dict[str, list[str]] = defaultdict(list)
        for kind, value in idents:
            by_kind[kind].append(value)
        pids: set[str] = set()
        for kind, values in sorted(by_kind.items()):
            for rows in self._chunked("SELECT profile_id FROM identifiers WHERE type = ? AND value IN ({})", values, kind):
                pids.update(r[0] for r in rows)
        return self.load_profiles(sorted(pids))

    def load_profile(self, pid: str) -> tuple[Profile, dict[Ident, Node]] | None:
        return self.load_profiles([pid]).get(pid)

    def load_profiles(self, pids: list[str]) -> dict[str, tuple[Profile, dict[Ident, Node]]]:
        nodes: dict[str, dict[Ident, Node]] = defaultdict(dict)
        sql = ("SELECT profile_id, type, value, first_seen, last_seen, source, state, node_id FROM identifiers "
               "WHERE profile_id IN ({})")  # fmt: skip
        for rows in self._chunked(sql, pids):
            for pid, kind, value, first, last, source, state, nid in rows:
                nodes[pid][(kind, value)] = Node(pid, first, last, source, orjson.loads(state), False, nid)
        loaded = {}
        for rows in self._chunked("SELECT profile_id, max_key, refused, merged FROM profiles WHERE profile_id IN ({})", pids):
            for pid, max_key, refused, merged in rows:
                members = nodes.get(pid, {})
                loaded[pid] = Profile(pid, set(members), max_key, orjson.loads(refused), orjson.loads(merged)), members
        return loaded

    def _chunked(self, sql: str, values: list, *first) -> Iterable[list[tuple]]:
        """``sql`` with its ``IN ({})`` over ``values``, a chunk at a time (after the parameters ``first``)."""
        for i in range(0, len(values), CHUNK):
            chunk = values[i : i + CHUNK]
            yield self._all(sql.format(",".join("?" * len(chunk))), [*first, *chunk])

    def seen(self, keys: list[tuple[str, str] | None]) -> set[tuple[str, str]]:
        """Which of these ``(source, messageId)`` are stored already."""
        by_id: dict[str, set[str]] = defaultdict(set)
        for key in keys:
            if key is not None:
                by_id[key[1]].add(key[0])
        found: set[tuple[str, str]] = set()
        for rows in self._chunked("SELECT source, message_id FROM events WHERE message_id IN ({})", sorted(by_id)):
            found.update((source, message_id) for source, message_id in rows if source in by_id[message_id])
        return found

    def link_keys(self, sets: list[str]) -> dict[str, str]:
        """The earliest key each set of identifiers (``members``, as JSON) was linked at, when ever."""
        found: dict[str, str] = {}
        for rows in self._chunked("SELECT members, mkey FROM links WHERE members IN ({})", sets):
            found.update(rows)
        return found

    def put_links(self, links: dict[str, tuple[list[Ident], str, bool]]) -> None:
        """Store sets of identifiers (``members`` → idents, earliest key, new) seen by a batch."""
        self._many("INSERT INTO links (members, mkey) VALUES (?, ?)", [(m, k) for m, (_, k, new) in links.items() if new])
        self._many("INSERT INTO link_index (type, value, members) VALUES (?, ?, ?)",
                   [(kind, value, m) for m, (idents, _, new) in links.items() if new for kind, value in idents])
        self._many("UPDATE links SET mkey = ? WHERE members = ?", [(k, m) for m, (_, k, new) in links.items() if not new])

    def component(self, start: list[Ident]) -> tuple[set[Ident], list[tuple[str, list[Ident], str]]]:
        """Every identifier reachable from ``start`` through stored links, and those links."""
        seen, frontier, links = set(start), list(start), {}
        while frontier:
            ident = frontier.pop()
            for (members,) in self._all("SELECT members FROM link_index WHERE type = ? AND value = ?", ident):
                if members in links:
                    continue
                mkey = self._all("SELECT mkey FROM links WHERE members = ?", (members,))[0][0]
                idents = [tuple(m) for m in orjson.loads(members)]
                links[members] = (mkey, idents, mkey.split("|", 1)[1])
                for member in idents:
                    if member not in seen:
                        seen.add(member)
                        frontier.append(member)
        return seen, list(links.values())

    # --- the builder's writes -----------------------------------------------------------------
    def write(self, graph: Graph) -> None:
        """Everything the batch changed."""
        removed = sorted((graph.removed & graph.stored) - set(graph.profiles))  # (not those made and merged here)
        self._many("DELETE FROM profiles WHERE profile_id = ?", [(pid,) for pid in removed])
        graph.stored.difference_update(removed)
        self._many(
            "INSERT INTO profiles (profile_id, max_key, refused, merged) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (profile_id) DO UPDATE SET max_key = excluded.max_key, refused = excluded.refused, "
            "merged = excluded.merged",
            [(p.pid, p.max_key, _dumps(p.refused), _dumps(p.merged))
             for p in (graph.profiles[pid] for pid in sorted(graph.dirty_profiles) if pid in graph.profiles)],
        )  # fmt: skip
        graph.stored.update(pid for pid in graph.dirty_profiles if pid in graph.profiles)
        added, changed = [], []
        for ident in sorted(graph.dirty_nodes):
            node = graph.nodes[ident]
            state = _dumps(node.state) if node.state else "{}"
            if node.new:
                added.append((*ident, node.nid or node_id(ident), node.profile, node.first_seen, node.last_seen,
                              node.source, state))  # fmt: skip
                node.new = False  # written: a later write in the batch updates it
            else:
                changed.append((node.profile, node.first_seen, node.last_seen, node.source, state, *ident))
        self._many("INSERT INTO identifiers (type, value, node_id, profile_id, first_seen, last_seen, source, state) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", added)  # fmt: skip
        self._many("UPDATE identifiers SET profile_id = ?, first_seen = ?, last_seen = ?, source = ?, state = ? "
                   "WHERE type = ? AND value = ?", changed)  # fmt: skip

    def add_events(self, rows: list[tuple[str, str, str, str, str, int]]) -> None:
        """``(source, messageId, node id, key, segment, position)`` of each event a batch counted."""
        self._many("INSERT INTO events (source, message_id, node_id, key, segment, position) VALUES (?, ?, ?, ?, ?, ?)",
                   rows)  # fmt: skip

    def checkpoint(self, name: str) -> tuple[dict, int]:
        row = self.checkpoint_row(name)
        self.commit()  # a read opens a transaction on PostgreSQL: end it
        return row or ({}, 0)

    def checkpoint_row(self, name: str) -> tuple[dict, int] | None:
        """The checkpoint as the current transaction sees it (None before the first)."""
        rows = self._all("SELECT cursor, events FROM checkpoint WHERE name = ?", (name,))
        return (orjson.loads(rows[0][0]), rows[0][1]) if rows else None

    def save_checkpoint(self, name: str, cursor: dict, events: int) -> None:
        self._run(
            "INSERT INTO checkpoint (name, cursor, events) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, events = excluded.events",
            (name, _dumps(cursor), events),
        )

    # --- the API's reads -----------------------------------------------------------------------
    def find(self, kind: str, value: str) -> str | None:
        """The profile id of an identifier, or of a profile id (also one merged away)."""
        if kind == "profile_id":
            if self._all("SELECT 1 FROM profiles WHERE profile_id = ?", (value,)):
                return value
            rows = self._all("SELECT profile_id FROM identifiers WHERE node_id = ?", (value,))
        else:
            rows = self._all("SELECT profile_id FROM identifiers WHERE type = ? AND value = ?", (kind, value))
        return rows[0][0] if rows else None

    def events(self, pid: str, limit: int, before: str | None) -> list[tuple[str, str, str, int]]:
        """``(key, messageId, segment, position)`` of a profile's events, newest first, keys before ``before``."""
        nodes = [r[0] for r in self._all("SELECT node_id FROM identifiers WHERE profile_id = ?", (pid,))]
        if not nodes:  # erased meanwhile (and IN () is not SQL PostgreSQL takes)
            return []
        marks = ",".join("?" * len(nodes))
        sql = f"SELECT key, message_id, segment, position FROM events WHERE node_id IN ({marks})"
        params: list = list(nodes)
        if before:
            sql += " AND key < ?"
            params.append(before)
        return self._all(sql + " ORDER BY key DESC LIMIT ?", [*params, limit])

    def profile_ids(self) -> list[str]:
        return [r[0] for r in self._all("SELECT profile_id FROM profiles ORDER BY profile_id")]


    # --- privacy requests (collector/privacy/erase.py) -------------------------------------------
    def erase_profile(self, pid: str, mine) -> tuple[dict[str, int], dict[str, list[Ident]], list[Ident]]:
        """Delete from one profile what is the person's, in the transaction the caller began: the
        identifiers for which ``mine(ident)`` holds, their events index, the sets of identifiers whose
        first member (the home of the events that made them) is theirs, the refusals that name them.
        Sets that other people's events made stay, even when they name an identifier of the person's
        (Bob signed in on Ann's kiosk), and so do the profile's other identifiers (someone who joined
        it after the person was worked out): ``forget.rejoin`` resolves them again. Counts of what
        went, the sets that stay (``members`` -> identifiers) and the profile's other identifiers."""
        rows = self._all("SELECT type, value, node_id FROM identifiers WHERE profile_id = ?", (pid,))
        idents = [(kind, value, node) for kind, value, node in rows if mine((kind, value))]
        others = [(kind, value) for kind, value, _ in rows if not mine((kind, value))]
        names = {f"{kind}:{value}" for kind, value, _ in idents}
        gone, kept = set(), {}
        for kind, value, _ in idents:
            for (members,) in self._all("SELECT members FROM link_index WHERE type = ? AND value = ?", (kind, value)):
                members_idents = [tuple(m) for m in orjson.loads(members)]
                if mine(members_idents[0]):
                    gone.add(members)
                else:
                    kept[members] = members_idents
        events = 0
        for kind, value, node in idents:
            events += self._all("SELECT COUNT(*) FROM events WHERE node_id = ?", (node,))[0][0]
            self._run("DELETE FROM events WHERE node_id = ?", (node,))
            self._run("DELETE FROM identifiers WHERE type = ? AND value = ?", (kind, value))
        self._many("DELETE FROM link_index WHERE members = ?", [(m,) for m in sorted(gone)])
        self._many("DELETE FROM links WHERE members = ?", [(m,) for m in sorted(gone)])
        for kind, value, node, state in self._all(
            "SELECT type, value, node_id, state FROM identifiers WHERE profile_id = ?", (pid,)
        ):  # an identifier only the person's own events named (a device she was seen on meanwhile) goes too
            if state in ("{}", "") and not self._all("SELECT 1 FROM link_index WHERE type = ? AND value = ?", (kind, value)) \
                    and not self._all("SELECT 1 FROM events WHERE node_id = ?", (node,)):  # fmt: skip
                self._run("DELETE FROM identifiers WHERE type = ? AND value = ?", (kind, value))
                others.remove((kind, value))
                idents.append((kind, value, node))
        if not others:  # else the profile's row stays until the replay of its other identifiers rewrites it
            self._run("DELETE FROM profiles WHERE profile_id = ?", (pid,))
        for other, refused in self._all("SELECT profile_id, refused FROM profiles WHERE refused <> '[]'"):
            kept_refusals = [r for r in orjson.loads(refused) if r.get("identifier") not in names and r.get("with") not in names]
            if len(kept_refusals) != len(orjson.loads(refused)):
                self._run("UPDATE profiles SET refused = ? WHERE profile_id = ?", (_dumps(kept_refusals), other))
        return {"identifiers": len(idents), "events": events}, kept, others

    def indexed(self, idents: list[Ident]) -> bool:
        """Whether an event is indexed under one of these identifiers' nodes."""
        for kind, value in idents:
            if self._all("SELECT 1 FROM events WHERE node_id = ? LIMIT 1", (node_id((kind, value)),)):
                return True
        return False

    def link_key(self, members: str) -> str | None:
        rows = self._all("SELECT mkey FROM links WHERE members = ?", (members,))
        return rows[0][0] if rows else None

    def scrub(self) -> None:
        """Leave no copy of deleted rows in the database's files (SQLite: below; PostgreSQL: its
        VACUUM is the operator's, see README "Privacy requests")."""


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
