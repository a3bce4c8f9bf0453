"""The Profile API's reads: a profile found by an identifier, its events newest first."""

from __future__ import annotations

from typing import Iterator

from collector.profiles.sql import SqlBase


class ReadQueries(SqlBase):
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

    def node_profiles(self) -> Iterator[tuple[str, str]]:
        """``(node_id, profile_id)`` of every identifier, streamed: whose each node's events are (the
        audiences' batch evaluation, over millions)."""
        cursor = self.conn.cursor()
        cursor.execute("SELECT node_id, profile_id FROM identifiers")
        while rows := cursor.fetchmany(10_000):
            yield from rows

    def profile_count(self) -> int:
        return self._all("SELECT count(*) FROM profiles")[0][0]
