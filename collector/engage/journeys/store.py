"""Runs, timers and versions, in the profile database beside the outbox (one connection, so a
run's move, the deliveries and events it puts out, and the log cursor are one transaction)::

    journey_runs      id (derived from the journey and the entering event: a replayed event enters
                      no run twice), journey, version, person (the entering event's home identifier),
                      instance, state (active | ended), pc (the step it stands at), next_at (its
                      timer; NULL: none), entered_at, updated, outcome (completed | exited |
                      converted | erased | suppressed), entry (the entering event, JSON)
    journey_who       ident, run: every identifier of the entering event, so that the person's
                      later events find their runs (an anonymous cart, then the signed-in order)
    journey_versions  journey, version, definition (JSON), created: every version a run started on

The due runs are found with the index on ``(next_at)`` (only active runs have a timer): one
indexed query per look, never a scan of every run; PostgreSQL claims them ``FOR UPDATE SKIP
LOCKED`` so that hosts sharing the database never fire the same timer. A ``track`` step's event
is an ``engage_announce`` row (the audiences' table: the collector appends it to the log exactly
once, ``audiences/announce.py``).
"""

from __future__ import annotations

from pathlib import Path

from collector.engage.outbox.store import PostgresOutbox, SqliteOutbox

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS journey_runs (id TEXT PRIMARY KEY, journey TEXT NOT NULL, version TEXT NOT NULL,
        person TEXT NOT NULL, instance TEXT NOT NULL, state TEXT NOT NULL, pc INTEGER, next_at DOUBLE PRECISION,
        entered_at DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, outcome TEXT, entry TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS journey_runs_due ON journey_runs (next_at)",
    "CREATE INDEX IF NOT EXISTS journey_runs_person ON journey_runs (journey, person, instance)",
    "CREATE INDEX IF NOT EXISTS journey_runs_state ON journey_runs (journey, state, version, pc)",
    "CREATE TABLE IF NOT EXISTS journey_who (ident TEXT NOT NULL, run TEXT NOT NULL, PRIMARY KEY (ident, run))",
    """CREATE TABLE IF NOT EXISTS journey_versions (journey TEXT NOT NULL, version TEXT NOT NULL, definition TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, PRIMARY KEY (journey, version))""",
    # the audiences' table (audiences/tables.py), for a track step's events, when the builder has not made it yet
    """CREATE TABLE IF NOT EXISTS engage_announce (id TEXT PRIMARY KEY, seq BIGINT NOT NULL, profile_id TEXT NOT NULL,
        message TEXT NOT NULL){clustered}""",
)
TABLES = ("journey_runs", "journey_who", "journey_versions")
COLUMNS = ("id", "journey", "version", "person", "instance", "state", "pc", "next_at", "entered_at", "updated", "outcome", "entry")


class Journeys:
    """The journeys' queries (a mixin of the outbox's connection)."""

    FOR_UPDATE = ""
    CLUSTERED = ""

    def create(self) -> None:
        super().create()
        self.begin()
        for statement in SCHEMA:
            self._run(statement.replace("{clustered}", self.CLUSTERED))
        self.commit()

    def runs_of(self, idents: list[str], journeys: list[str] | None = None) -> list[tuple]:
        """The active runs of the people those identifiers are (rows of ``COLUMNS``)."""
        if not idents:
            return []
        marks = ",".join("?" * len(idents))
        cols = ", ".join(f"r.{c}" for c in COLUMNS)
        rows = self._all(f"SELECT {cols} FROM journey_who w JOIN journey_runs r ON r.id = w.run WHERE w.ident IN "
                         f"({marks}) AND r.state = 'active' ORDER BY r.entered_at, r.id{self.FOR_UPDATE}", idents)  # fmt: skip
        return list(dict.fromkeys(rows))  # a run found by two of the identifiers, once

    def latest(self, journey: str, person: str, instance: str) -> tuple | None:
        """``(entered_at, active)`` of the person's last run of that journey and instance."""
        rows = self._all("SELECT entered_at, state FROM journey_runs WHERE journey = ? AND person = ? AND instance = ? "
                         "ORDER BY entered_at DESC LIMIT 1", (journey, person, instance))  # fmt: skip
        return rows[0] if rows else None

    def has_active(self, journey: str, person: str, instance: str) -> bool:
        return bool(self._all("SELECT 1 FROM journey_runs WHERE journey = ? AND person = ? AND instance = ? AND state = 'active' "
                              "LIMIT 1", (journey, person, instance)))  # fmt: skip

    def exists(self, run_id: str) -> bool:
        return bool(self._all("SELECT 1 FROM journey_runs WHERE id = ?", (run_id,)))

    def insert_run(self, row: dict, idents: list[str]) -> bool:
        """A new run; False when its id exists (another host applied the same event first)."""
        cur = self.conn.cursor()
        cur.execute(self._q(f"INSERT INTO journey_runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
                            "ON CONFLICT (id) DO NOTHING"), [row[c] for c in COLUMNS])  # fmt: skip
        if cur.rowcount == 0:
            return False
        self._many("INSERT INTO journey_who (ident, run) VALUES (?, ?) ON CONFLICT DO NOTHING", [(i, row["id"]) for i in idents])
        return True

    def save_run(self, row: dict) -> None:
        self._run("UPDATE journey_runs SET state = ?, pc = ?, next_at = ?, updated = ?, outcome = ? WHERE id = ?",
                  (row["state"], row["pc"], row["next_at"], row["updated"], row["outcome"], row["id"]))  # fmt: skip

    def due(self, now: float, limit: int) -> list[tuple]:
        """Active runs whose timer fell due, the earliest first (PostgreSQL: locked, skipped by other hosts)."""
        cols = ", ".join(COLUMNS)
        return self._all(f"SELECT {cols} FROM journey_runs WHERE next_at <= ? ORDER BY next_at LIMIT ?{self.SKIP_LOCKED}",
                         (now, limit))  # fmt: skip

    def next_due(self) -> float | None:
        rows = self._all("SELECT MIN(next_at) FROM journey_runs WHERE next_at IS NOT NULL")
        return rows[0][0] if rows else None

    def keep_version(self, key: str, version: str, definition: str, now: float) -> None:
        self._run("INSERT INTO journey_versions (journey, version, definition, created) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (journey, version) DO NOTHING", (key, version, definition, now))  # fmt: skip

    def versions(self) -> dict[tuple[str, str], tuple[str, float]]:
        rows = self._all("SELECT journey, version, definition, created FROM journey_versions")
        return {(j, v): (d, c) for j, v, d, c in rows}

    def announce(self, rows: list[tuple]) -> None:
        """``(id, seq, person, message)`` rows for the log (a track step)."""
        self._many("INSERT INTO engage_announce (id, seq, profile_id, message) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", rows)

    # --- reading ------------------------------------------------------------------------------------
    def tally(self) -> list[tuple]:
        """``(journey, version, state, outcome, pc, timer?, count)``: what ``/v1/journeys`` shows."""
        rows = self._all("SELECT journey, version, state, outcome, pc, next_at IS NOT NULL, COUNT(*) FROM journey_runs "
                         "GROUP BY journey, version, state, outcome, pc, next_at IS NOT NULL")  # fmt: skip
        self.commit()
        return rows

    def person_runs(self, journey: str | None, idents: list[str]) -> list[dict]:
        """The runs of ``journey`` (None: of every journey) of the person having any of ``idents``."""
        if not idents:
            return []
        marks = ",".join("?" * len(idents))
        cols = ", ".join(f"r.{c}" for c in COLUMNS)
        which, params = ("", idents) if journey is None else (" AND r.journey = ?", [*idents, journey])
        rows = self._all(f"SELECT DISTINCT {cols} FROM journey_who w JOIN journey_runs r ON r.id = w.run WHERE w.ident IN "
                         f"({marks}){which} ORDER BY r.entered_at, r.id", params)  # fmt: skip
        self.commit()
        return [dict(zip(COLUMNS, row)) for row in rows]

    def end_for(self, idents: list[str], outcome: str, now: float) -> int:
        """End the active runs of a person (erased, suppressed), in the caller's transaction; how many."""
        if not idents:
            return 0
        marks = ",".join("?" * len(idents))
        ids = [r for (r,) in self._all(f"SELECT DISTINCT r.id FROM journey_who w JOIN journey_runs r ON r.id = w.run "
                                       f"WHERE w.ident IN ({marks}) AND r.state = 'active'", idents)]  # fmt: skip
        self._many("UPDATE journey_runs SET state = 'ended', next_at = NULL, outcome = ?, updated = ? WHERE id = ?",
                   [(outcome, now, i) for i in ids])  # fmt: skip
        return len(ids)


class SqliteJourneys(Journeys, SqliteOutbox):
    CLUSTERED = " WITHOUT ROWID"


class PostgresJourneys(Journeys, PostgresOutbox):
    FOR_UPDATE = " FOR UPDATE OF r"


def open_journeys(target: str | Path) -> Journeys:
    if str(target).startswith(("postgresql://", "postgres://")):
        return PostgresJourneys(str(target))
    return SqliteJourneys(Path(target))
