"""Erasing one profile from the profile database (privacy requests), on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3

import orjson

from .conftest import at, ev


def everything(store) -> bytes:
    """Every row of every table, as text (what a person's identifiers must not be found in)."""
    rows = []
    for table in ("identifiers", "profiles", "links", "link_index", "events"):
        rows += store._all(f"SELECT * FROM {table}")
    store.commit()
    return orjson.dumps(rows, default=str).lower()


def test_erase_profile_removes_the_person_and_what_names_them(build):
    store = build([
        ev("page", at(1), anonymousId="a-ann"),
        ev("identify", at(2), anonymousId="a-ann", userId="u-ann", traits={"email": "Ann@Example.com"}),
        ev("track", at(3), userId="u-ann"),
        ev("identify", at(4), userId="u-other", traits={"email": "ann@example.com"}),  # refused: a second user id
        ev("track", at(5), userId="u-bob", anonymousId="a-bob"),
    ])  # fmt: skip
    ann = store.find("user_id", "u-ann")
    other = store.find("user_id", "u-other")
    assert ann and other and ann != other
    assert b"ann@example.com" in everything(store)

    counts = store.erase_profile(ann)
    store.scrub()

    assert counts == {"profiles": 1, "identifiers": 3, "events": 3}
    for kind, value in (("user_id", "u-ann"), ("anonymous_id", "a-ann"), ("email", "ann@example.com")):
        assert store.find(kind, value) is None
    assert store._all("SELECT COUNT(*) FROM events")[0][0] == 2  # u-other's identify and Bob's track
    store.commit()
    text = everything(store)
    assert b"u-ann" not in text and b"a-ann" not in text and b"ann@example.com" not in text
    assert store.find("user_id", "u-bob") == store.find("anonymous_id", "a-bob") is not None
    assert store.find("user_id", "u-other") == other  # the other profile stays, without the refusal naming her
    assert store.erase_profile(ann) == {"profiles": 0, "identifiers": 0, "events": 0}  # a job run again


def test_reposition_moves_the_index_of_a_rewritten_segment(build):
    store = build([ev("track", at(n), userId="u-1", messageId=f"m{n}") for n in range(3)])
    rows = store._all("SELECT message_id, segment, position FROM events ORDER BY position")
    segment = rows[0][1]
    store.reposition(segment, [("m1", 0), ("m2", 50)])
    moved = dict((m, p) for m, _, p in store._all("SELECT message_id, segment, position FROM events"))
    assert moved["m1"] == 0 and moved["m2"] == 50 and moved["m0"] == rows[0][2]



def test_an_erase_during_a_builder_batch_leaves_nothing_of_the_person(log, tmp_path):
    """SQLite: a batch's reads and writes are one transaction that an erase waits for. Were the reads
    outside it, an erase landing between the batch's reads and its writes would be undone in part:
    the batch writes back links naming the erased user id, and the privacy job's second look (by the
    person's identifiers, gone) finds nothing to erase again."""
    from collector.profiles.builder import Builder
    from collector.profiles.store import SqliteStore

    db = tmp_path / "profiles.db"
    log.write([ev("identify", at(1), anonymousId="a-ann", userId="u-ann", traits={"email": "ann@example.com"})])
    store = SqliteStore(db)
    Builder(store, log.data_dir).catch_up()
    ann = store.find("user_id", "u-ann")
    log.write([ev("track", at(2), userId="u-ann", anonymousId="a-ann-phone")])  # the batch in hand: a new link
    eraser = SqliteStore(db)
    eraser.conn.execute("PRAGMA busy_timeout = 0")
    outcome = []
    put_links = store.put_links  # a batch's first write

    def erase_then_write(links) -> None:  # the erase lands after the batch's reads, before its writes
        try:
            outcome.append(eraser.erase_profile(ann))
        except sqlite3.OperationalError as exc:  # the batch holds the database: the erase waits
            outcome.append(str(exc))
        put_links(links)

    store.put_links = erase_then_write
    Builder(store, log.data_dir).catch_up()
    store.put_links = put_links
    if outcome == ["database is locked"]:
        eraser.erase_profile(ann)  # what the waiting erase does once the batch is committed
    if any(eraser.find(kind, value) for kind, value in (("user_id", "u-ann"), ("anonymous_id", "a-ann"))):
        eraser.erase_profile(eraser.find("user_id", "u-ann") or ann)  # the privacy job's second look
    text = everything(eraser)
    assert b"u-ann" not in text and b"a-ann" not in text and b"ann@example.com" not in text, outcome
    store.close()
    eraser.close()
