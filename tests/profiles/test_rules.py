"""Identity resolution, rule by rule (README: Profiles, the rules), on a real SQLite store."""

from __future__ import annotations

import pytest

from collector.profiles import views
from collector.profiles.builder import Builder
from collector.profiles.database import open_store
from collector.profiles.rules import Rules, node_id

from .conftest import at, ev


def people(store) -> list[set[str]]:
    """The partition: each profile's identifiers as ``type:value``, sorted for comparison."""
    found = []
    for pid in store.profile_ids():
        found.append({f"{i['type']}:{i['id']}" for i in views.external_ids(store, pid)})
    return sorted(found, key=sorted)


def profile(store, kind: str, value: str) -> dict:
    pid = store.find(kind, value)
    assert pid is not None, f"no profile for {kind}:{value}"
    return {"traits": views.traits(store, pid), "meta": views.metadata(store, pid), "ids": views.external_ids(store, pid)}


IDENTIFIERS = [
    pytest.param(ev(userId="u1", anonymousId="a1"), ["user_id:u1", "anonymous_id:a1"], id="userId-and-anonymousId"),
    pytest.param(ev("identify", userId="u1", traits={"email": "  Ann@Example.COM "}), ["user_id:u1", "email:ann@example.com"],
                 id="identify-email-trimmed-lowercased"),
    pytest.param(ev(anonymousId="a1", context={"traits": {"email": "b@x.io"}}), ["email:b@x.io", "anonymous_id:a1"],
                 id="context-traits-email"),
    pytest.param(ev("alias", userId="u2", previousId="a9"), ["user_id:u2", "anonymous_id:a9"], id="alias-previousId"),
    pytest.param(ev(userId=42, anonymousId="a1"), ["user_id:42", "anonymous_id:a1"], id="numeric-userId-as-text"),
    pytest.param(ev("track", userId="u1", traits={"email": "t@x.io"}), ["user_id:u1"],
                 id="track-traits-are-not-the-persons"),
] + [
    pytest.param(ev(userId=junk, anonymousId="a1"), ["anonymous_id:a1"], id=f"junk-{junk!r}")
    for junk in ("", "  ", "null", "NULL", "undefined", "0", "-1", "anonymous", "Guest", "[object Object]",
                 "00000000-0000-0000-0000-000000000000", None, True, {"id": 1}, ["u"], 0, -1)
]  # fmt: skip


@pytest.mark.parametrize("event, expected", IDENTIFIERS)
def test_identifiers_of_a_message(event, expected):
    """Which identifiers a message carries, highest priority first; junk values identify nobody."""
    assert [f"{k}:{v}" for k, v in Rules().identifiers(event)] == expected


def test_identifier_traits_and_blocked_values_are_configurable():
    """A trait listed in identifier_traits is an identifier; a configured blocked value is not."""
    rules = Rules(identifier_traits=("email", "phone"), blocked=frozenset({"qa-user"}))
    event = ev("identify", userId="qa-user", anonymousId="a1", traits={"phone": "+44 1", "email": "c@x.io"})
    assert [f"{k}:{v}" for k, v in rules.identifiers(event)] == ["email:c@x.io", "phone:+44 1", "anonymous_id:a1"]


LINKS = [
    pytest.param([ev(anonymousId="a1"), ev(userId="u1", anonymousId="a1")], [{"user_id:u1", "anonymous_id:a1"}],
                 id="anonymous-then-identified"),
    pytest.param([ev(anonymousId="a1"), ev(anonymousId="a2"), ev("alias", userId="u1", previousId="a1"),
                  ev(userId="u1", anonymousId="a2")], [{"user_id:u1", "anonymous_id:a1", "anonymous_id:a2"}],
                 id="alias-and-second-device"),
    pytest.param([ev("identify", anonymousId="a1", traits={"email": "e@x.io"}),
                  ev("identify", anonymousId="a2", traits={"email": "E@x.io"})],
                 [{"email:e@x.io", "anonymous_id:a1", "anonymous_id:a2"}], id="same-email-two-devices-merge"),
    pytest.param([ev(userId="u1", anonymousId="shared", timestamp=at(1)), ev(userId="u2", anonymousId="shared", timestamp=at(2))],
                 [{"user_id:u1", "anonymous_id:shared"}, {"user_id:u2"}], id="shared-device-second-user-refused"),
    pytest.param([ev("identify", userId="u1", traits={"email": "x@x.io"}, timestamp=at(1)),
                  ev("identify", userId="u2", traits={"email": "x@x.io"}, timestamp=at(2))],
                 [{"user_id:u1", "email:x@x.io"}, {"user_id:u2"}], id="shared-email-second-user-refused"),
    pytest.param([ev("alias", userId="u2", previousId="u1", timestamp=at(1)), ev(userId="u1", anonymousId="b", timestamp=at(2))],
                 [{"user_id:u1", "anonymous_id:b"}, {"user_id:u2", "anonymous_id:u1"}], id="alias-never-joins-two-user-ids"),
    pytest.param([ev(userId="anonymous", anonymousId="a1"), ev(userId="anonymous", anonymousId="a2")],
                 [{"anonymous_id:a1"}, {"anonymous_id:a2"}], id="junk-user-id-links-nothing"),
]  # fmt: skip


@pytest.mark.parametrize("events, expected", LINKS)
def test_links_make_one_profile_per_person(build, events, expected):
    """Linked identifiers are one profile; links that would give a profile two user ids are refused."""
    assert people(build(events)) == sorted(expected, key=sorted)


def test_a_refused_link_is_recorded_on_both_profiles(build):
    """The shared device's second user keeps its own profile, and both profiles' metadata say why."""
    store = build([ev(userId="u1", anonymousId="shared", timestamp=at(1)),
                   ev(userId="u2", anonymousId="shared", timestamp=at(2), messageId="m-refused")])  # fmt: skip
    for user in ("u1", "u2"):
        refused = profile(store, "user_id", user)["meta"]["refused_links"]
        assert refused == [{"reason": "second_user_id", "identifier": "anonymous_id:shared", "with": "user_id:u2",
                            "messageId": "m-refused", "timestamp": at(2)}]  # fmt: skip


def test_caps_per_type_refuse_the_identifier_over_the_cap(build):
    """With at most 3 anonymous ids per profile, the fourth device stays a profile of its own."""
    events = [ev(userId="u1", anonymousId=f"a{n}", timestamp=at(n)) for n in range(4)]
    store = build(events, Rules(max_anonymous_ids=3))
    assert people(store) == sorted([{"user_id:u1", "anonymous_id:a0", "anonymous_id:a1", "anonymous_id:a2"},
                                    {"anonymous_id:a3"}], key=sorted)  # fmt: skip
    assert profile(store, "user_id", "u1")["meta"]["refused_links"][0]["reason"] == "too_many_anonymous_id"


def test_anonymous_history_belongs_to_the_profile_once_linked(build):
    """Events sent before the identify count in the person's profile, with their first touch."""
    store = build([
        ev("page", anonymousId="a1", timestamp=at(1), context={"page": {"url": "https://s/land", "referrer": "https://g"},
                                                               "campaign": {"source": "news"}}),
        ev(anonymousId="a1", event="Product Viewed", timestamp=at(2)),
        ev("identify", userId="u1", anonymousId="a1", timestamp=at(3), traits={"name": "Ann"}),
        ev(userId="u1", event="Order Completed", timestamp=at(4), properties={"revenue": 10.1, "currency": "gbp"}),
        ev(userId="u1", event="Order Completed", timestamp=at(5), properties={"revenue": "0.2", "currency": "GBP"}),
        ev(userId="u1", event="Order Completed", timestamp=at(6), properties={"total": 5}),
    ])  # fmt: skip
    traits = profile(store, "anonymous_id", "a1")["traits"]
    assert traits["first_seen"] == at(1) and traits["last_seen"] == at(6)
    assert traits["counts_by_type"] == {"identify": 1, "page": 1, "track": 4}
    assert traits["counts_by_event"] == {"Order Completed": 3, "Product Viewed": 1}
    assert traits["first_touch"] == {"campaign": {"source": "news"}, "referrer": "https://g", "landing_page": "https://s/land"}
    assert traits["revenue"] == {"GBP": 10.3, "USD": 5.0}
    assert traits["name"] == "Ann"


TRAIT_ORDERS = [
    pytest.param([1, 2, 3], id="in-order"),
    pytest.param([3, 1, 2], id="latest-first"),
    pytest.param([2, 3, 1, 3], id="with-a-duplicate"),
]


@pytest.mark.parametrize("order", TRAIT_ORDERS)
def test_each_trait_takes_the_value_of_the_latest_timestamp(build, order):
    """Late and replayed events never overwrite newer values; null clears a trait."""
    messages = {
        1: ev("identify", userId="u1", timestamp=at(1), messageId="t1", traits={"plan": "free", "city": "Leeds", "vip": True}),
        2: ev("identify", userId="u1", timestamp=at(2), messageId="t2", traits={"plan": "pro", "vip": None}),
        3: ev("identify", userId="u1", timestamp=at(3), messageId="t3", traits={"city": "York"}),
    }  # fmt: skip
    store = build([messages[n] for n in order])
    traits = profile(store, "user_id", "u1")["traits"]
    assert (traits["plan"], traits["city"], "vip" in traits) == ("pro", "York", False)
    assert traits["counts_by_type"] == {"identify": 3}


def test_last_location_device_and_groups(build):
    """The latest location and device win, whatever order they arrive in; groups keep their traits."""
    chrome = {"browser": {"name": "Chrome"}, "os": {"name": "Linux"}, "device": {"type": "desktop"}}
    safari = {"browser": {"name": "Safari"}, "os": {"name": "iOS"}, "device": {"type": "mobile"}}
    store = build([
        ev(userId="u1", timestamp=at(9), context={**safari, "location": {"city": "Paris"}}),
        ev(userId="u1", timestamp=at(1), context={**chrome, "location": {"city": "London"}}),
        ev("group", userId="u1", groupId="acme", timestamp=at(2), traits={"plan": "gold"}),
        ev("group", userId="u1", groupId="acme", timestamp=at(3), traits={"seats": 5}),
    ])  # fmt: skip
    traits = profile(store, "user_id", "u1")["traits"]
    assert traits["last_location"] == {"city": "Paris"}
    assert (traits["last_browser"], traits["last_os"], traits["last_device"]) == ({"name": "Safari"}, {"name": "iOS"}, {"type": "mobile"})
    assert traits["groups"] == {"acme": {"plan": "gold", "seats": 5}}


def test_a_late_link_is_resolved_as_if_it_had_come_in_order(build, log, make_store):
    """The shared device: u2's link arrives first, u1's (earlier) later: u1 keeps the device, as in order."""
    store = make_store()
    build([ev(userId="u2", anonymousId="shared", timestamp=at(2), messageId="late-2")], store=store)
    build([ev(userId="u1", anonymousId="shared", timestamp=at(1), messageId="late-1")], store=store)
    in_order = build([ev(userId="u1", anonymousId="shared", timestamp=at(1), messageId="late-1"),
                      ev(userId="u2", anonymousId="shared", timestamp=at(2), messageId="late-2")],
                     store=make_store("in-order.db"))  # fmt: skip
    assert people(store) == [{"anonymous_id:shared", "user_id:u1"}, {"user_id:u2"}]
    assert views.snapshot(store) == views.snapshot(in_order)


def test_a_batch_writes_only_the_identifier_rows_that_moved(build, make_store):
    """An event between an identifier's first and last seen changes nothing of it: only its home
    identifier's row (the state it folds into) is written again, not every identifier it names."""
    store = make_store()
    build([ev(userId="u1", anonymousId="a1", timestamp=at(1)), ev(userId="u1", anonymousId="a1", timestamp=at(9))],
          store=store)  # fmt: skip
    written: list[tuple] = []
    many = store._many

    def counting(sql: str, rows: list[tuple]) -> None:  # the real statement, its rows counted
        if "identifiers" in sql:
            written.extend(rows)
        many(sql, rows)

    store._many = counting
    build([ev(userId="u1", anonymousId="a1", timestamp=at(5))], store=store)
    assert len(written) == 1 and "u1" in written[0] and "a1" not in written[0]
    assert profile(store, "user_id", "u1")["traits"]["event_count"] == 3
    assert profile(store, "anonymous_id", "a1")["traits"]["last_seen"] == at(9)


def test_a_duplicate_message_id_counts_once(build):
    """The same messageId twice in the log (a retry through two workers) counts once."""
    store = build([ev(userId="u1", messageId="dup"), ev(userId="u1", messageId="dup"), ev(userId="u1")])
    assert profile(store, "user_id", "u1")["traits"]["event_count"] == 2


def test_a_message_id_is_a_repeat_only_within_its_source(build):
    """The collector keys repeats by (source, messageId): two sources may use one messageId
    (their own counters), and both events count; a repeat within one source still counts once."""
    store = build([ev(userId="u1", messageId="m-1", source="web"), ev(userId="u1", messageId="m-1", source="ios"),
                   ev(userId="u1", messageId="m-1", source="ios")])  # fmt: skip
    assert profile(store, "user_id", "u1")["traits"]["event_count"] == 2


def outdated(profiles_db: str) -> None:
    """Make the database at ``profiles_db`` look written by an older version: a counted event,
    then the schema version taken away."""
    store = open_store(profiles_db)
    store._run("INSERT INTO checkpoint (name, cursor, events) VALUES ('events', '{}', 7)")
    store._run("DELETE FROM schema")
    store.commit()
    store.close()


def test_a_database_of_an_older_shape_is_built_again_from_the_log(log, profiles_db):
    """A profile database written by an older version (no schema version) is emptied at start by
    the builder, with a warning, and built again from the log: the log is the truth."""
    outdated(profiles_db)
    store = open_store(profiles_db)
    try:
        assert store.checkpoint("events") == ({}, 0)
        log.write([ev(userId="u1", source="web"), ev(userId="u1", source="ios")])
        Builder(store, log.data_dir).catch_up()
        assert profile(store, "user_id", "u1")["traits"]["event_count"] == 2
    finally:
        store.close()


def test_a_postgresql_database_of_the_last_release_is_kept(log, postgres):
    """Schema 4 changed SQLite's tables only: a PostgreSQL database the last release made (version 3)
    keeps its profiles and checkpoint when a builder of this one opens it (emptying it would make
    builders on other hosts, still running, lose what they had counted)."""
    target = postgres.database()
    log.write([ev(userId="u1")])
    store = open_store(target)
    Builder(store, log.data_dir).catch_up()
    store._run("UPDATE schema SET version = 3")
    store.commit()
    store.close()
    store = open_store(target)
    try:
        assert store.checkpoint("events")[1] == 1 and profile(store, "user_id", "u1")["traits"]["event_count"] == 1
    finally:
        store.close()


def test_a_reader_never_empties_a_database_it_leaves_that_to_the_builder(log, profiles_db, tmp_path):
    """The Profile API and ``profile show`` only read: a database of another version is left as it
    is (a reader on a new host must not empty a database builders elsewhere share), and the API
    answers 503 ``profiles_unavailable`` until the builder has made it anew."""
    from collector.config import Config
    from collector.errors import Unavailable
    from collector.profiles.api import ProfileAPI

    outdated(profiles_db)
    reader = open_store(profiles_db, reads_only=True)
    try:
        assert reader.outdated
        assert reader._all("SELECT events FROM checkpoint") == [(7,)], "a reader emptied the database"
    finally:
        reader.close()
    api = ProfileAPI(Config(data_dir=tmp_path / "data", profiles_db=profiles_db), lambda: open_store(profiles_db, reads_only=True))
    with pytest.raises(Unavailable) as refused:
        api.db()
    assert refused.value.code == "profiles_unavailable"
    builder = open_store(profiles_db)
    builder.close()
    assert not api.db().outdated, "the API did not take up the database the builder made anew"
    api.close_store()


def test_catch_up_stops_when_told(log, make_store):
    """``intilery profiles --once`` stops at SIGTERM between batches (a long rebuild can be interrupted)."""
    log.write([ev(userId="u1"), ev(userId="u2")])
    builder = Builder(make_store(), log.data_dir, batch=1)
    calls = []
    assert builder.catch_up(keep_going=lambda: calls.append(1) or len(calls) <= 1) == 1


def test_external_ids_and_metadata(build):
    """Each identifier with its type, first and last seen and source; the profile's id and dates."""
    store = build([ev(anonymousId="a1", timestamp=at(1)), ev(userId="u1", anonymousId="a1", timestamp=at(5))])
    found = profile(store, "user_id", "u1")
    assert [(i["type"], i["id"], i["first_seen"], i["last_seen"], i["source"]) for i in found["ids"]] == [
        ("anonymous_id", "a1", at(1), at(5), "web"), ("user_id", "u1", at(5), at(5), "web")]  # fmt: skip
    assert found["meta"]["created_at"] == at(1) and found["meta"]["updated_at"] == at(5)
    assert found["meta"]["merged_from"] == [node_id(("anonymous_id", "a1"))], "a1's profile was merged into u1's"
    assert store.find("profile_id", node_id(("anonymous_id", "a1"))) == found["meta"]["profile_id"]
    assert store.find("profile_id", found["meta"]["profile_id"]) == found["meta"]["profile_id"]


def test_a_failed_batch_is_read_again_not_skipped(log, make_store, backend):
    """A batch whose commit fails (here: a table gone) is rolled back, and the next step reads it again."""
    from collector.profiles.builder import Builder

    store = make_store()
    builder = Builder(store, log.data_dir)
    log.write([ev(userId="u1"), ev(userId="u1")])
    store._run("ALTER TABLE events RENAME TO events_away")
    store.commit()
    with pytest.raises(Exception):
        builder.step()
    store.rollback()
    store._run("ALTER TABLE events_away RENAME TO events")
    store.commit()
    assert builder.step() == 2
    assert profile(store, "user_id", "u1")["traits"]["event_count"] == 2
