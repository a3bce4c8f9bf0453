"""What every query of the profile database stands on: a DB-API connection whose placeholder
is ``P`` (``?`` on SQLite, ``%s`` on PostgreSQL), its transactions, and JSON text."""

from __future__ import annotations

from typing import Iterable

import orjson

CHUNK = 500  # parameters per IN (...) query


def dumps(value) -> str:
    """JSON text (also the key of a set of identifiers: ``members``)."""
    return orjson.dumps(value).decode()


class SqlBase:
    """A DB-API connection whose placeholder is ``P``; the queries are the mixins' (``store.SqlStore``)."""

    P = "?"
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

    def _chunked(self, sql: str, values: list, *first) -> Iterable[list[tuple]]:
        """``sql`` with its ``IN ({})`` over ``values``, a chunk at a time (after the parameters ``first``)."""
        for i in range(0, len(values), CHUNK):
            chunk = values[i : i + CHUNK]
            yield self._all(sql.format(",".join("?" * len(chunk))), [*first, *chunk])

    def begin(self) -> None:
        """Start a batch: builders sharing one database take turns (PostgreSQL locks; SQLite has one writer)."""

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()
