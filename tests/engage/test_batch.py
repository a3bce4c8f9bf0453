"""The batch evaluation (``engage/audiences/batch.py``): hits and answers straight from the log, on a
small history whose every answer is computed here by hand; and ``intilery audiences preview``."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from collector.config import Config
from collector.engage import definitions
from collector.engage.audiences import batch
from collector.engage.audiences.evaluate import Hit
from collector.profiles.builder import Builder
from collector.profiles.rules import Rules, node_id
from collector.profiles.store import SqliteStore

DAY = 86400.0
NOW = batch.key_epoch("2026-11-28T12:00:00.000Z")

TRAITS = {
    "orders.yaml": "kind: count\nevent: Order Completed\n",
    "spent_30d.yaml": "kind: sum\nevent: Order Completed\nproperty: properties.revenue\nwithin: 30d\n",
}
AUDIENCES = {
    # two orders or more in the last 7 days
    "buyers.yaml": "name: Buyers\ncondition:\n  event: Order Completed\n  count: {op: gte, value: 2}\n  within: 7d\n",
    # a buyer on the pro plan (a nested audience and a trait)
    "vip.yaml": "condition:\n  all:\n    - audience: buyers\n    - trait: plan\n      value: pro\n",
    # never signed in (people with no counted event at all are in it)
    "quiet.yaml": "condition:\n  not:\n    event: Signed In\n",
    # spent more than 100 in 30 days (a computed trait in a condition)
    "big.yaml": "condition:\n  trait: spent_30d\n  op: gt\n  value: 100\n",
}


def ts(days_ago: float, hour: int = 0) -> str:
    """A timestamp ``days_ago`` days before NOW (and ``hour`` hours later)."""
    from collector.log.layout import iso_ms

    return iso_ms(NOW - days_ago * DAY + hour * 3600)


def ev(message_id: str, when: str, kind: str = "track", **fields) -> dict:
    event = {"type": kind, "messageId": message_id, "timestamp": when, "receivedAt": when, "source": "web", **fields}
    return event


def order(message_id: str, when: str, revenue, **who) -> dict:
    return ev(message_id, when, event="Order Completed", properties={"revenue": revenue}, **who)


def write(data_dir: Path, partition: str, name: str, events: list, raw: bytes = b"") -> None:
    directory = data_dir / "events" / partition
    directory.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(e) + b"\n" for e in events) + raw
    if name.endswith(".gz"):
        (directory / name).write_bytes(gzip.compress(data))
    else:
        (directory / name).write_bytes(data)


def define(root: Path) -> definitions.Definitions:
    for kind, files in (("traits", TRAITS), ("audiences", AUDIENCES)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (root / kind / name).write_text(text)
    return definitions.load(root)


@pytest.fixture
def history(tmp_path):
    """Ann (anonymous, then signed in, plan pro), Bob, Carl (pages only), Dan (signed in), and lines
    that count for no one. Returns the config, the definitions and the store the builder filled."""
    data = tmp_path / "data"
    ann = {"userId": "ann"}
    write(data, "dt=2026-11-20/hr=09", "part-w0-000001.ndjson.gz", [
        ev("a-1", ts(8), "page", anonymousId="anon-ann"),
        order("a-2", ts(8, 1), 40, anonymousId="anon-ann"),  # her anonymous node, 8 days ago: in 30d, not in 7d
        ev("a-3", ts(8, 2), "identify", anonymousId="anon-ann", userId="ann", traits={"plan": "pro", "email": "Ann@X.io"}),
        order("b-1", ts(40), 500, userId="bob"),  # 40 days ago: counted ever, in no window
    ])  # fmt: skip
    write(data, "dt=2026-11-28/hr=10", "part-w0-000002.ndjson", [
        order("a-4", ts(2), 30, **ann),
        order("a-4", ts(2), 30, **ann),  # a duplicate line (the same source and messageId): counts once
        {**order("a-4", ts(2, 1), 30, **ann), "source": "server"},  # another source's a-4, at another time: another event
        ev("a-5", ts(1), event="Signed In", **ann),
        order("b-2", ts(3), 20, userId="bob"),
        ev("c-1", ts(1), "page", userId="carl"),
        {k: v for k, v in order("x-1", ts(1), 99, userId="dan").items() if k != "messageId"},  # no messageId: no one's
        order("x-2", ts(1), 99),  # no identifier: no one's
        ev("d-1", ts(1), event="Signed In", userId="dan"),
    ], raw=b"not json\n" + b" " * 40 + b"\n")  # fmt: skip
    # a late event (an old timestamp, received now) in a later segment
    write(data, "dt=2026-11-28/hr=11", "part-w0-000003.ndjson", [order("b-3", ts(6), 70, userId="bob")])
    config = Config(data_dir=data, profiles_db=str(tmp_path / "profiles.db"), engage_dir=tmp_path / "engage")
    store = SqliteStore(Path(config.profiles_db))
    Builder(store, data).catch_up()
    yield config, define(tmp_path / "engage"), store
    store.close()


def nid(kind: str, value: str) -> str:
    return node_id((kind, value))


class TestHits:
    def test_every_counted_event_once_under_its_home_node_with_its_key_time_and_value(self, history):
        """Duplicates count once (per source), the anonymous order stays under the anonymous node,
        and lines without a messageId, an identifier or JSON count for no one."""
        config, defs, _ = history
        found = sorted(batch.hits(config, defs.tallies()))
        count = defs.traits["orders"].tally.id
        spent = defs.traits["spent_30d"].tally.id
        from collector.engage.conditions import events_of

        buyers = events_of(defs.audiences["buyers"].condition)[0].tally.id
        signed = events_of(defs.audiences["quiet"].condition)[0].tally.id
        assert buyers == count  # the same tally (event, no where): counted once, shared

        def hit(message_id, days_ago, hours=0, value=None):
            when = ts(days_ago, hours)
            return Hit(batch.key_epoch(when), f"{when}|{message_id}", value)

        ann, anon, bob, dan = nid("user_id", "ann"), nid("anonymous_id", "anon-ann"), nid("user_id", "bob"), nid("user_id", "dan")
        want = [
            (anon, count, hit("a-2", 8, 1)), (anon, spent, hit("a-2", 8, 1, 40)),
            (bob, count, hit("b-1", 40)), (bob, spent, hit("b-1", 40, 0, 500)),
            (ann, count, hit("a-4", 2)), (ann, spent, hit("a-4", 2, 0, 30)),
            (ann, count, hit("a-4", 2, 1)), (ann, spent, hit("a-4", 2, 1, 30)),  # source server's a-4
            (ann, signed, hit("a-5", 1)),
            (bob, count, hit("b-2", 3)), (bob, spent, hit("b-2", 3, 0, 20)),
            (dan, signed, hit("d-1", 1)),
            (bob, count, hit("b-3", 6)), (bob, spent, hit("b-3", 6, 0, 70)),
        ]  # fmt: skip
        assert found == sorted(want)

    def test_another_sources_copy_at_the_same_key_counts_once_under_the_same_home(self, tmp_path):
        """As the live evaluation's table keys hits (node, tally, key): the same messageId at the same
        time from another source adds nothing under the same home, and counts under another."""
        from collector.engage.conditions import tally

        data = tmp_path / "data"
        write(data, "dt=2026-11-28/hr=10", "part-w0-000001.ndjson", [
            order("m-1", ts(1), 10, userId="u"), {**order("m-1", ts(1), 99, userId="u"), "source": "server"},
            {**order("m-1", ts(1), 20, userId="v"), "source": "ios"}, {**order("m-1", ts(1), 30, userId="u"), "source": "web"},
        ])  # fmt: skip
        values = tally("Order Completed", None, "properties.revenue")
        found = sorted((n, h.value) for n, _, h in batch.hits(Config(data_dir=data), [values]))
        assert found == sorted([(nid("user_id", "u"), 10), (nid("user_id", "v"), 20)])

    def test_only_the_tallies_asked_for(self, history):
        config, defs, _ = history
        signed = [t for t in defs.tallies().values() if t.event == "Signed In"]
        assert {n for n, _, _ in batch.hits(config, signed)} == {nid("user_id", "ann"), nid("user_id", "dan")}

    def test_a_where_and_a_property_are_the_condition_modules(self, history):
        """``where`` (revenue > 35) and a property that must exist are tested by ``Tally.matches``."""
        from collector.engage.conditions import tally

        config, _, _ = history
        rich = tally("Order Completed", {"field": "properties.revenue", "op": "gt", "value": 35}, "properties.revenue")
        assert sorted((n, h.value) for n, _, h in batch.hits(config, [rich])) == sorted(
            [(nid("anonymous_id", "anon-ann"), 40), (nid("user_id", "bob"), 500), (nid("user_id", "bob"), 70)])

    def test_the_nats_store_is_refused_with_a_sentence(self, history):
        from dataclasses import replace

        config, defs, _ = history
        with pytest.raises(batch.BatchError, match="file log.*intilery archive"):
            list(batch.hits(replace(config, store="nats"), defs.tallies()))

    def test_no_log_yet_is_no_hits(self, tmp_path):
        from collector.engage.conditions import tally

        assert list(batch.hits(Config(data_dir=tmp_path / "none"), [tally("Order Completed")])) == []


class TestEvaluateAll:
    def test_answers_by_hand(self, history):
        """Ann's profile holds both her nodes; Carl and Dan have no order; Carl never signed in."""
        config, defs, store = history
        answers = batch.evaluate_all(config, defs, NOW)
        ann, bob = store.find("user_id", "ann"), store.find("user_id", "bob")
        carl, dan = store.find("user_id", "carl"), store.find("user_id", "dan")
        assert store.find("anonymous_id", "anon-ann") == ann
        got = {pid: (sorted(a.members), a.computed) for pid, a in answers.items()}
        assert got == {
            # orders 8 (anonymous), 2, 2 (server's) days ago: two in 7 days; 40 + 30 + 30 in 30 days
            ann: (["buyers", "vip"], {"orders": 3, "spent_30d": 100}),
            # orders 40, 3 and (late) 6 days ago: two in 7 days; 20 + 70 in 30 days; never signed in
            bob: (["buyers", "quiet"], {"orders": 3, "spent_30d": 90}),
            carl: (["quiet"], {"orders": 0}),
            dan: ([], {"orders": 0}),
        }
        # Ann's window: the order 2 days ago leaves the 7 days first (5 days from now)
        assert answers[ann].next_change == pytest.approx(batch.key_epoch(ts(2)) + 7 * DAY)

    def test_later_the_windows_have_passed(self, history):
        config, defs, store = history
        answers = batch.evaluate_all(config, defs, NOW + 31 * DAY)
        ann, bob = store.find("user_id", "ann"), store.find("user_id", "bob")
        assert (answers[ann].members, answers[ann].computed) == (set(), {"orders": 3})
        assert (answers[bob].members, answers[bob].computed) == ({"quiet"}, {"orders": 3})

    def test_people_without_hits_are_evaluated_once_per_distinct_traits(self, history, monkeypatch):
        config, defs, store = history
        calls = []
        real = batch.evaluate
        monkeypatch.setattr(batch, "evaluate", lambda d, t, h, n: calls.append(dict(h)) or real(d, t, h, n))
        batch.evaluate_all(config, defs, NOW)
        # Ann, Bob, Dan have hits (3 evaluations); Carl has none, and is the only one: one more
        assert sorted(len(h) > 0 for h in calls) == [False, True, True, True]

    def test_traits_are_loaded_only_when_a_condition_reads_one(self, history, monkeypatch):
        """``big`` reads ``spent_30d``, a sum: with no value the person's own trait of that name would
        show, so it is loaded; a count always has one."""
        config, defs, _ = history
        assert batch.traits_read(defs) == {"plan", "spent_30d"}
        defs.audiences.pop("vip"), defs.audiences.pop("big")
        defs.audiences["counted"] = definitions.AudienceDef("counted", "counted", definitions.parse(
            {"trait": "orders", "op": "gt", "value": 2}, fields=False))
        monkeypatch.setattr(batch, "_traits", lambda *a: pytest.fail("traits loaded"))
        assert batch.evaluate_all(config, defs, NOW)

    def test_a_not_audience_holds_people_without_any_counted_event(self, history):
        """With no trait read, a person with no hit is evaluated once for all: Carl never signed in."""
        config, defs, store = history
        only = definitions.Definitions(audiences={"quiet": defs.audiences["quiet"]})
        answers = batch.evaluate_all(config, only, NOW)
        assert {pid for pid, a in answers.items() if a.members == {"quiet"}} == {
            store.find("user_id", "carl"), store.find("user_id", "bob")}
        only = definitions.Definitions(audiences={"buyers": defs.audiences["buyers"]})
        assert set(batch.evaluate_all(config, only, NOW)) == {store.find("user_id", "ann"), store.find("user_id", "bob")}

    def test_the_same_answers_from_a_postgresql_profile_database(self, history, tmp_path, postgres):
        """The node map is streamed from PostgreSQL too (preview against a shared database)."""
        from dataclasses import replace

        from collector.engage.audiences import cli
        from collector.profiles.database import open_store

        config, defs, _ = history
        pg = replace(config, profiles_db=postgres.database())
        store = open_store(pg.profiles_db)
        Builder(store, config.data_dir).catch_up()
        store.close()
        on_pg = batch.evaluate_all(pg, defs, NOW)
        on_sqlite = batch.evaluate_all(config, defs, NOW)
        assert len(on_pg) == 4
        assert {p: (a.members, a.computed) for p, a in on_pg.items()} == {p: (a.members, a.computed) for p, a in on_sqlite.items()}
        draft = tmp_path / "draft.yaml"
        draft.write_text("condition:\n  audience: buyers\n")
        assert cli.preview(pg, draft, NOW).size == 2

    def test_no_profile_database_is_a_sentence(self, tmp_path):
        with pytest.raises(batch.BatchError, match="no profile database"):
            batch.evaluate_all(Config(data_dir=tmp_path), definitions.Definitions(), NOW)


def intilery(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


class TestPreview:
    def test_a_draft_naming_published_audiences_and_traits_is_counted_and_shown(self, history, tmp_path):
        """The draft (a file named for no key) is evaluated with what it names, and nothing is published."""
        config, _, store = history
        draft = tmp_path / "draft.yaml"
        draft.write_text("key: loyal\nname: Loyal buyers\ncondition:\n  all:\n    - audience: buyers\n"
                         "    - trait: orders\n      op: gte\n      value: 3\n")  # fmt: skip
        flags = ["--data-dir", str(config.data_dir), "--profiles-db", config.profiles_db]
        env_dir = tmp_path  # engage/ beside no configuration file: the current directory's
        done = intilery("audiences", "preview", str(draft), *flags, cwd=env_dir)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        # Ann and Bob are buyers with 3 orders each (at the present time, not NOW: see the JSON below)
        shown = intilery("audiences", "preview", str(draft), "--json", *flags, cwd=env_dir)
        answer = orjson.loads(shown.stdout)
        ann, bob = store.find("user_id", "ann"), store.find("user_id", "bob")
        assert answer["key"] == "loyal" and answer["people"] == 4
        assert lines[0].startswith(f"loyal (Loyal buyers): {answer['size']} of 4 people match now")
        assert answer["size"] == len(answer["sample"]) == len(lines) - 1
        assert {p["profile_id"] for p in answer["sample"]} <= {ann, bob}
        assert not (tmp_path / "engage" / "audiences" / "loyal.yaml").exists()

    def test_the_draft_at_a_moment_by_hand(self, history, tmp_path):
        from collector.engage.audiences import cli

        config, _, store = history
        draft = tmp_path / "draft.yaml"
        draft.write_text("key: loyal\ncondition:\n  all:\n    - audience: buyers\n    - trait: orders\n      op: gte\n"
                         "      value: 3\n")  # fmt: skip
        shown = cli.preview(config, draft, NOW)
        ann, bob = store.find("user_id", "ann"), store.find("user_id", "bob")
        assert (shown.key, shown.size, shown.people) == ("loyal", 2, 4)
        assert shown.sample == sorted([{"profile_id": ann, "user_id": "ann", "email": "ann@x.io"},
                                       {"profile_id": bob, "user_id": "bob", "email": None}], key=lambda p: p["profile_id"])
        # a draft with a published key stands in for it: "buyers" as one order in 7 days
        draft.write_text("key: buyers\ncondition:\n  event: Order Completed\n  within: 7d\n")
        assert cli.preview(config, draft, NOW).size == 2
        draft.write_text("key: buyers\ncondition:\n  event: Order Completed\n  within: 1d\n")
        assert cli.preview(config, draft, NOW).size == 0

    @pytest.mark.parametrize("text, said", [
        pytest.param("condition:\n  audience: nobody\n", "draft.yaml: the condition names audience 'nobody', and there is none",
                     id="unknown-audience"),
        pytest.param("key: buyers\ncondition:\n  audience: vip\n", "draft.yaml: the draft names itself", id="circle"),
        pytest.param("condition:\n  event: Order Completed\n  within: 7 weeks\n", "draft.yaml:3: '7 weeks' is not a duration",
                     id="bad-duration"),
        pytest.param("condition: [1\n", "draft.yaml:2: not valid YAML", id="not-yaml"),
    ])  # fmt: skip
    def test_a_mistake_in_the_draft_is_file_line_and_reason(self, history, tmp_path, text, said):
        config, _, _ = history
        draft = tmp_path / "draft.yaml"
        draft.write_text(text)
        done = intilery("audiences", "preview", str(draft), "--data-dir", str(config.data_dir), "--profiles-db",
                        config.profiles_db, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 1 and said in done.stderr and "Traceback" not in done.stderr, done.stderr

    def test_with_the_nats_store_it_reads_the_archives_files_when_told(self, history, tmp_path):
        """A configuration of the NATS store is a sentence; ``--store file`` reads the files at --data-dir."""
        config, _, _ = history
        toml = tmp_path / "intilery.toml"
        toml.write_text(f'store = "nats"\ndata_dir = "{config.data_dir}"\nprofiles_db = "{config.profiles_db}"\n')
        draft = tmp_path / "draft.yaml"
        draft.write_text("condition:\n  event: Order Completed\n")
        done = intilery("audiences", "preview", str(draft), "--config", str(toml), cwd=tmp_path)
        assert done.returncode == 1 and "--store file --data-dir" in done.stderr, done.stderr
        done = intilery("audiences", "preview", str(draft), "--config", str(toml), "--store", "file", "--json", cwd=tmp_path)
        assert done.returncode == 0 and orjson.loads(done.stdout)["size"] == 2, done.stderr  # Ann and Bob ordered

    def test_no_profile_database_or_no_file_is_a_sentence(self, tmp_path):
        draft = tmp_path / "draft.yaml"
        draft.write_text("condition:\n  event: Order Completed\n")
        done = intilery("audiences", "preview", str(draft), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
        assert done.returncode == 1 and "no profile database at" in done.stderr, done.stderr
        done = intilery("audiences", "preview", str(tmp_path / "missing.yaml"), cwd=tmp_path)
        assert done.returncode == 2 and "no file" in done.stderr


class TestWindowsOnly:
    def test_a_tally_counted_only_in_windows_needs_nothing_older_than_its_longest(self, history):
        """``spent_30d`` is counted in 30 days only; Order Completed (ever) and Signed In (ever) in no window."""
        _, defs, _ = history
        assert batch.oldest_needed(defs, NOW) == {defs.traits["spent_30d"].tally.id: NOW - 30 * DAY}

    def test_hits_after_a_moment_leave_out_what_is_at_or_before_it_in_any_time_form(self, tmp_path):
        """The lines DuckDB leaves out (the collector's time form, at or before the moment) and those
        Python does (any other form) are exactly the events at or before it; a partition whose hour
        ended before the moment is not opened (a corrupt file there would fail the read)."""
        from collector.engage.conditions import tally

        data = tmp_path / "data"
        moment = batch.key_epoch("2026-11-28T12:00:00.000Z")
        forms = {
            "at": "2026-11-28T12:00:00.000Z", "just-after": "2026-11-28T12:00:00.001Z",
            "at-no-millis": "2026-11-28T12:00:00Z", "at-offset": "2026-11-28T13:00:00.000+01:00",
            "after-offset": "2026-11-28T13:00:01.000+01:00", "before-offset": "2026-11-28T12:59:59.000+01:00",
        }  # fmt: skip
        events = [order(name, when, 1, userId="u") for name, when in forms.items()]
        events += [{**order("received-after", "", 1, userId="u"), "receivedAt": "2026-11-28T12:00:01.000Z"},
                   {**order("received-at", "", 1, userId="u"), "receivedAt": "2026-11-28T12:00:00.000Z"}]  # fmt: skip
        write(data, "dt=2026-11-28/hr=12", "part-w0-000002.ndjson", events)
        (data / "events" / "dt=2026-11-28/hr=11").mkdir(parents=True)
        (data / "events" / "dt=2026-11-28/hr=11" / "part-w0-000001.ndjson.gz").write_bytes(b"\x1f\x8b not gzip")
        config = Config(data_dir=data)
        orders = tally("Order Completed")
        kept = {h.key.split("|")[1] for _, _, h in batch.hits(config, [orders], after={orders.id: moment})}
        assert kept == {"just-after", "after-offset", "received-after"}
        with pytest.raises(batch.BatchError, match="cannot read the log under .*events"):  # without a moment: every partition
            list(batch.hits(config, [orders]))
