"""Erasing one profile from the profile database (privacy requests), on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3

import orjson

from collector.profiles import forget, views
from collector.profiles.builder import Builder
from collector.profiles.person import Person
from collector.profiles.rules import Rules

from .conftest import Log, at, ev
from .test_determinism import generated_log


def everything(store) -> bytes:
    """Every row of every table, as text (what a person's identifiers must not be found in)."""
    rows = []
    for table in ("identifiers", "profiles", "links", "link_index", "events"):
        rows += store._all(f"SELECT * FROM {table}")
    store.commit()
    return orjson.dumps(rows, default=str).lower()


def erase(store, events: list[dict], subject, rules: Rules = Rules()) -> tuple[dict, list[dict]]:
    """What the privacy job does to the profile database for the person holding ``subject``: their
    whole profile, their events found in the log (``Person.owns_line``, which gathers when their
    identifiers were seen in the events that stay), then ``forget.erase``; the counts, and the
    events that stay."""
    pid = store.find(*subject)
    person = Person(store.load_profile(pid)[1], rules)
    kept = [e for e in events if not person.owns_line(orjson.dumps(e))]
    counts = forget.erase(store, person, rules)
    store.scrub()
    return counts, kept


def test_erase_profile_removes_the_person_and_only_what_is_theirs(build, make_store, tmp_path):
    events = [
        ev("page", at(1), anonymousId="a-ann"),
        ev("identify", at(2), anonymousId="a-ann", userId="u-ann", traits={"email": "Ann@Example.com"}),
        ev("track", at(3), userId="u-ann", properties={"sku": "u-bob"}),
        ev("identify", at(4), userId="u-other", traits={"email": "ann@example.com"}),  # refused: a second user id
        ev("track", at(5), userId="u-bob", anonymousId="a-bob", properties={"sku": "u-ann"}),
        ev("identify", at(6), userId="u-bob", anonymousId="a-ann", traits={"email": "bob@example.com"}),  # her device
    ]  # fmt: skip
    store = build(events)
    ann, other, bob = (store.find("user_id", u) for u in ("u-ann", "u-other", "u-bob"))
    assert len({ann, other, bob}) == 3
    before = {pid: views.traits(store, pid)["event_count"] for pid in (other, bob)}

    counts, kept = erase(store, events, ("email", "ann@example.com"))

    assert counts == {"profiles": 1, "identifiers": 3, "events": 3}
    assert store.find("user_id", "u-ann") is None
    assert {pid: views.traits(store, pid)["event_count"] for pid in (other, bob)} == before  # nobody else loses one
    # what other people's events still say joins as a rebuild of the log without hers joins it
    assert store.find("email", "ann@example.com") == other and store.find("anonymous_id", "a-ann") == bob
    assert not any(r["identifier"].startswith("user_id:u-ann") for r in views.metadata(store, other)["refused_links"])
    rebuilt = Log(tmp_path / "rebuilt")
    rebuilt.write(kept)
    again = make_store("rebuilt.db")
    Builder(again, rebuilt.data_dir).catch_up()
    assert views.snapshot(store) == views.snapshot(again)
    assert forget.erase(store, Person([("user_id", "u-ann")]), Rules()) == {"profiles": 0, "identifiers": 0,
                                                                            "events": 0}  # a job run again  # fmt: skip


def test_a_rebuild_after_erasing_people_who_share_kiosks_equals_the_incremental_profiles(tmp_path, make_store):
    """The determinism test's generated shop (shared kiosks, shared emails, refusals, aliases): the
    profiles after erasing several people equal a rebuild of the log without their events."""
    events = generated_log(seed=29)
    rules = Rules(max_anonymous_ids=3)
    ordered = Log(tmp_path / "all")
    ordered.write(sorted(events, key=lambda e: (e["timestamp"], e["messageId"])))
    store = make_store("incremental.db")
    Builder(store, ordered.data_dir, rules).catch_up()
    kiosk_owners = {store.find("anonymous_id", f"kiosk-{n}") for n in range(3)} - {None}
    assert kiosk_owners, "the log gives no one a kiosk"
    erased = 0
    for pid in sorted(kiosk_owners)[:2] + sorted(views.snapshot(store))[:2]:
        loaded = store.load_profile(pid)
        if loaded is None:
            continue
        person = Person(loaded[1], rules)
        events = [e for e in events if not person.owns_line(orjson.dumps(e))]
        forget.erase(store, person, rules)
        erased += 1
    assert erased >= 3
    rebuilt = Log(tmp_path / "rebuilt")
    rebuilt.write(sorted(events, key=lambda e: (e["timestamp"], e["messageId"])))
    again = make_store("rebuilt.db")
    Builder(again, rebuilt.data_dir, rules).catch_up()
    assert views.snapshot(store) == views.snapshot(again)


def test_an_erase_during_a_builder_batch_leaves_nothing_of_the_person(log, tmp_path):
    """SQLite: a batch's reads and writes are one transaction that an erase waits for. Were the reads
    outside it, an erase landing between the batch's reads and its writes would be undone in part:
    the batch writes back links naming the erased user id, and the privacy job's second look (by the
    person's identifiers, gone) finds nothing to erase again."""
    from collector.profiles.store import SqliteStore

    db = tmp_path / "profiles.db"
    log.write([ev("identify", at(1), anonymousId="a-ann", userId="u-ann", traits={"email": "ann@example.com"})])
    store = SqliteStore(db)
    Builder(store, log.data_dir).catch_up()
    ann = Person(store.load_profile(store.find("user_id", "u-ann"))[1])
    log.write([ev("track", at(2), userId="u-ann", anonymousId="a-ann-phone")])  # the batch in hand: a new link
    eraser = SqliteStore(db)
    eraser.conn.execute("PRAGMA busy_timeout = 0")
    outcome = []
    put_links = store.put_links  # a batch's first write

    def erase_then_write(links) -> None:  # the erase lands after the batch's reads, before its writes
        try:
            outcome.append(forget.erase(eraser, ann, Rules()))
        except sqlite3.OperationalError as exc:  # the batch holds the database: the erase waits
            outcome.append(str(exc))
        put_links(links)

    store.put_links = erase_then_write
    Builder(store, log.data_dir).catch_up()
    store.put_links = put_links
    if outcome == ["database is locked"]:
        forget.erase(eraser, ann, Rules())  # what the waiting erase does once the batch is committed
    if forget.remains(eraser, ann):
        forget.erase(eraser, ann, Rules())  # the privacy job's second look
    text = everything(eraser)
    assert b"u-ann" not in text and b"a-ann" not in text and b"ann@example.com" not in text, outcome
    store.close()
    eraser.close()


def test_someone_who_joined_the_persons_profile_after_she_was_worked_out_keeps_everything(build, log):
    """Review H1: Carl identifies on Ann's kiosk after the job worked Ann out; her erasure takes her
    identifiers out of the profile they share, Carl keeps his identifiers, events and traits."""
    store = build([
        ev("track", at(1), userId="ann", anonymousId="kiosk"),
        ev("identify", at(2), anonymousId="c1", traits={"email": "carl@x.com", "name": "Carl"}),
        ev("track", at(3), anonymousId="c1"),
    ])  # fmt: skip
    ann = Person(store.load_profile(store.find("user_id", "ann"))[1])
    build([ev("identify", at(4), anonymousId="kiosk", traits={"email": "carl@x.com"})], store=store)
    assert store.find("email", "carl@x.com") == store.find("user_id", "ann")  # one profile now
    counts = forget.erase(store, ann, Rules())
    carl = store.find("email", "carl@x.com")
    assert counts["identifiers"] == 2 and store.find("user_id", "ann") is None
    traits = views.traits(store, carl)
    assert traits["event_count"] == 3 and traits["name"] == "Carl"  # his identify, track, and his kiosk identify
    assert store.find("anonymous_id", "c1") == carl


def test_the_person_is_found_in_a_profile_whose_anchor_is_no_longer_hers(build):
    """Review H2: Ann was worked out from her email and device; she then signed in, after the
    erasure's rotation (a DELETE_ONLY: that event stays), and a user id became her profile's anchor:
    what her erased events made goes from that profile too; what the event that stays says remains."""
    store = build([ev("identify", at(1), anonymousId="ann-dev", traits={"email": "ann@x.com", "plan": "pro"})])
    ann = Person(store.load_profile(store.find("email", "ann@x.com"))[1])
    build([ev("identify", at(2), anonymousId="ann-dev", userId="u-ann", traits={"email": "ann@x.com"})], store=store)
    counts = forget.erase(store, ann, Rules())
    assert counts["identifiers"] == 2 and counts["events"] == 1
    traits = views.traits(store, store.find("user_id", "u-ann"))
    assert "plan" not in traits and traits["event_count"] == 1  # the signed-in identify alone
    assert forget.remains(store, ann) is False
