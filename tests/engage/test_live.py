"""The live evaluation inside the profile builder: entered, exited on time alone, merges, a
definition added over history, a rebuild that announces nothing again."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from collector.engage.audiences.evaluate import epoch, iso
from collector.engage.audiences.live import Live
from collector.profiles.builder import Builder
from collector.profiles.database import open_store
from collector.profiles.rules import Rules
from tests.profiles.conftest import BACKENDS, Log, ev, postgres  # noqa: F401 (fixtures)

@pytest.fixture(params=BACKENDS)
def profiles_db(request, tmp_path) -> str:
    """A new profile database: SQLite, and PostgreSQL (the same queries)."""
    if request.param == "sqlite":
        return str(tmp_path / "profiles.db")
    return request.getfixturevalue("postgres").database()


NOW = epoch("2026-12-01T12:00:00Z")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def write(folder: Path, kind: str, name: str, text: str) -> None:
    (folder / kind).mkdir(parents=True, exist_ok=True)
    (folder / kind / f"{name}.yaml").write_text(text)


@pytest.fixture
def engage(tmp_path) -> Path:
    folder = tmp_path / "engage"
    write(folder, "audiences", "buyers", "name: Recent buyers\ncondition: {event: Order Completed, within: 7d}\n")
    write(folder, "audiences", "loyal", "condition:\n  all:\n    - audience: buyers\n    - trait: orders\n      op: gte\n      value: 2\n")
    write(folder, "traits", "orders", "kind: count\nevent: Order Completed\n")
    write(folder, "traits", "spent", "kind: sum\nevent: Order Completed\nproperty: properties.revenue\n")
    return folder


class Setup:
    def __init__(self, tmp_path: Path, folder: Path, target: str | None = None) -> None:
        self.data = tmp_path / "data"
        self.log = Log(self.data)
        self.clock = Clock()
        self.folder = folder
        self.store = open_store(target or tmp_path / "profiles.db", building=True)
        self.start()

    def start(self) -> None:
        rules = Rules()

        def reader(cursor):
            source = Builder(self.store, self.data, rules, batch=1000, checkpoint="engage-backfill")
            source.reader.cursor = cursor
            return source

        self.builder = Builder(self.store, self.data, rules)
        self.live = self.builder.engage = Live(self.store, folder=self.folder, reader=reader, clock=self.clock)

    def settle(self) -> None:
        """Fold everything, finish any backfill, re-evaluate whoever is due."""
        for _ in range(100):
            moved = self.builder.step()
            self.live.looked = 0.0
            self.live.refresh()
            while self.live.tick():
                moved = 1
            if not moved and (self.live.backfill is None or self.live.backfill.done):
                return
        raise AssertionError("did not settle")

    def rows(self, sql: str, *params) -> list[tuple]:
        return self.store._all(sql, params)

    def members(self, audience: str) -> set[str]:
        return {pid for (pid,) in self.rows("SELECT profile_id FROM engage_members WHERE audience = ?", audience)}

    def announced(self) -> list[tuple[str, str, str]]:
        out = []
        for (message,) in self.rows("SELECT message FROM engage_announce ORDER BY seq"):
            m = orjson.loads(message)
            out.append((m["event"], m["properties"]["audience_key"], m.get("userId") or m.get("anonymousId")))
        return out


def order(user: str, when: float, revenue: float = 10.0, **more) -> dict:
    return ev(event="Order Completed", ts=iso(when), userId=user, properties={"revenue": revenue}, **more)


def test_entered_then_exited_on_time_alone(tmp_path, engage, profiles_db):
    s = Setup(tmp_path, engage, profiles_db)
    s.log.write([order("ann", NOW - 3600, 30), order("ann", NOW - 1800, 12.5), order("bob", NOW - 6 * 86400)])
    s.settle()
    ann, bob = (s.rows("SELECT profile_id FROM identifiers WHERE value = ?", u)[0][0] for u in ("ann", "bob"))
    assert s.members("buyers") == {ann, bob}
    assert s.members("loyal") == {ann}
    assert orjson.loads(s.rows("SELECT traits FROM engage_computed WHERE profile_id = ?", ann)[0][0]) == {"orders": 2, "spent": 42.5}
    assert sorted(s.announced()) == [("Audience Entered", "buyers", "ann"), ("Audience Entered", "buyers", "bob"),
                                     ("Audience Entered", "loyal", "ann")]  # fmt: skip
    # Bob's one order leaves the 7-day window a day later; his next moment is then, and nobody else is looked at
    assert s.rows("SELECT due FROM engage_due WHERE profile_id = ?", bob)[0][0] == NOW + 86400
    s.clock.now = NOW + 86400 - 1
    assert s.live.tick() == 0
    s.clock.now = NOW + 86400
    assert s.live.tick() == 1
    assert s.members("buyers") == {ann}
    assert s.announced()[-1] == ("Audience Exited", "buyers", "bob")
    stays = s.rows("SELECT entered_at, exited_at FROM engage_history WHERE profile_id = ? AND audience = 'buyers'", bob)
    assert stays == [(NOW, NOW + 86400)]


def test_a_merge_keeps_the_stay_and_announces_nothing(tmp_path, engage, profiles_db):
    s = Setup(tmp_path, engage, profiles_db)
    s.log.write([ev(event="Order Completed", ts=iso(NOW - 60), anonymousId="a-1", properties={})])
    s.settle()
    assert s.announced() == [("Audience Entered", "buyers", "a-1")]
    s.log.write([ev("identify", ts=iso(NOW - 30), anonymousId="a-1", userId="carl")])
    s.clock.now += 10
    s.settle()
    carl = s.rows("SELECT profile_id FROM identifiers WHERE value = 'carl'")[0][0]
    assert s.members("buyers") == {carl}
    assert len(s.announced()) == 1
    assert s.rows("SELECT profile_id, entered_at, exited_at FROM engage_history") == [(carl, NOW, None)]


def test_a_definition_added_later_counts_the_history(tmp_path):
    folder = tmp_path / "engage"
    s = Setup(tmp_path, folder)
    s.log.write([order("dee", NOW - 100, 80), order("eve", NOW - 100, 20)])
    s.settle()
    assert s.rows("SELECT COUNT(*) FROM engage_hits") == [(0,)]
    write(folder, "audiences", "big", "condition: {event: Order Completed, where: {field: properties.revenue, op: gt, value: 50}}\n")
    s.settle()
    dee = s.rows("SELECT profile_id FROM identifiers WHERE value = 'dee'")[0][0]
    assert s.members("big") == {dee}
    assert s.announced() == [("Audience Entered", "big", "dee")]


def test_a_rebuild_announces_nobody_again(tmp_path, engage):
    s = Setup(tmp_path, engage)
    s.log.write([order("ann", NOW - 3600), order("ann", NOW - 1800), order("bob", NOW - 100)])
    s.settle()
    before = s.rows("SELECT id FROM engage_announce")
    assert len(before) == 3
    s.store.reset()
    s.start()
    s.settle()
    assert s.rows("SELECT id FROM engage_announce") == before
    assert len(s.members("buyers")) == 2


def test_an_erased_person_leaves_every_audience_without_a_trace(tmp_path, engage, profiles_db):
    """Ann and Bob: Ann erased leaves with no Audience Exited, no stay, no hit, no computed trait;
    Bob's rows stay."""
    from collector.profiles import forget
    from collector.profiles.person import Person

    s = Setup(tmp_path, engage, profiles_db)
    s.log.write([order("ann", NOW - 3600), order("ann", NOW - 1800), order("bob", NOW - 100)])
    s.settle()
    ann = s.rows("SELECT profile_id FROM identifiers WHERE value = 'ann'")[0][0]
    s.store._run("DELETE FROM engage_announce")  # appended to the log already (the log's erasure is the privacy job's)
    s.store.commit()
    forget.erase(s.store, Person([("user_id", "ann")]), Rules())
    s.settle()
    for table in ("engage_members", "engage_history", "engage_computed", "engage_due", "engage_announce"):
        assert s.rows(f"SELECT COUNT(*) FROM {table} WHERE profile_id = ?", ann) == [(0,)], table
    assert s.rows("SELECT COUNT(*) FROM engage_hits WHERE node_id = ?", ann) == [(0,)]
    assert s.announced() == []
    assert len(s.members("buyers")) == 1


def test_with_two_logs_in_one_database_a_definition_takes_over_once_both_are_counted(tmp_path, profiles_db):
    """Two hosts' builders share one database (PostgreSQL), each with its own log: a new audience
    waits until each builder has counted its own log, then holds people of both."""
    folder = tmp_path / "engage"
    one = Setup(tmp_path / "one", folder, profiles_db)
    other_data = tmp_path / "two" / "data"
    Log(other_data).write([order("zed", NOW - 100, 90)])

    def reader(cursor):
        source = Builder(one.store, other_data, Rules(), batch=1000, checkpoint="engage-backfill")
        source.reader.cursor = cursor
        return source

    two = Builder(one.store, other_data, Rules(), checkpoint="events@two")
    two.engage = Live(one.store, folder=folder, reader=reader, checkpoint="events@two", clock=one.clock)
    one.log.write([order("dee", NOW - 100, 80)])
    one.settle()
    two.catch_up()
    write(folder, "audiences", "big", "condition: {event: Order Completed, where: {field: properties.revenue, op: gt, value: 50}}\n")
    one.settle()
    assert one.members("big") == set() and one.live.pending is not None, "in force before the other log was counted"
    two.engage.looked = 0.0
    two.engage.refresh()
    while two.engage.backfill is not None:
        two.engage.refresh()
    one.settle()
    ids = {u: one.rows("SELECT profile_id FROM identifiers WHERE value = ?", u)[0][0] for u in ("dee", "zed")}
    assert one.members("big") == set(ids.values())
