"""The condition language (``collector/engage/conditions.py``): every operator against present,
missing, null and wrong-typed values, dotted paths, all/any/not, ``event`` with where/count/within
at the edges of its window, ``next_change``, and every refusal with its sentence and its line."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from collector.engage.conditions import (
    OPS,
    All,
    ConditionError,
    Event,
    Subject,
    Tally,
    audiences_of,
    duration,
    events_of,
    holds,
    next_change,
    parse,
    tally,
    traits_of,
)
from collector.engage.definitions import load_yaml

MISSING = object()  # the field is absent (null is the same: no value)

# (op, value, what the person/event has, holds?)
TABLE = [
    # eq: numbers by value (1 == 1.0, true is not 1), else by type and value; null equals only no value
    ("eq", 50, 50, True),
    ("eq", 50, 50.0, True),
    ("eq", 50.5, 50.5, True),
    ("eq", 50, 51, False),
    ("eq", 50, "50", False),
    ("eq", "50", 50, False),
    ("eq", 1, True, False),
    ("eq", True, 1, False),
    ("eq", 0, False, False),
    ("eq", True, True, True),
    ("eq", False, False, True),
    ("eq", False, MISSING, False),
    ("eq", "pro", "pro", True),
    ("eq", "pro", "Pro", False),
    ("eq", "pro", ["pro"], False),
    ("eq", "pro", MISSING, False),
    ("eq", "pro", None, False),
    ("eq", None, MISSING, True),
    ("eq", None, None, True),
    ("eq", None, 0, False),
    ("eq", None, "", False),
    ("eq", None, False, False),
    ("eq", [1, 2], [1, 2], True),
    ("eq", [1, 2], [1.0, 2], True),
    ("eq", [1, 2], [2, 1], False),
    ("eq", [1, 2], 1, False),
    # ne: the opposite of eq, so it holds for a missing value (it equals nothing)
    ("ne", 50, 51, True),
    ("ne", 50, 50, False),
    ("ne", 50, 50.0, False),
    ("ne", 50, "50", True),
    ("ne", 1, True, True),
    ("ne", "pro", "free", True),
    ("ne", "pro", "pro", False),
    ("ne", "pro", MISSING, True),
    ("ne", "pro", None, True),
    ("ne", None, MISSING, False),
    ("ne", None, None, False),
    ("ne", None, 0, True),
    # gt gte lt lte: both numbers or both strings; anything else (missing, null, bool, list) is false
    ("gt", 50, 51, True),
    ("gt", 50, 50.5, True),
    ("gt", 50, 50, False),
    ("gt", 50, 49, False),
    ("gt", 50, "51", False),
    ("gt", 0, True, False),
    ("gt", 50, [60], False),
    ("gt", 50, {"v": 60}, False),
    ("gt", 50, MISSING, False),
    ("gt", 50, None, False),
    ("gt", "2026-01-01", "2026-02-01T00:00:00Z", True),
    ("gt", "2026-01-01", "2025-12-31T23:59:59Z", False),
    ("gt", "10", "9", True),  # text order, character by character: "9" > "1"
    ("gt", "b", "a", False),
    ("gt", "a", 1, False),
    ("gte", 50, 50, True),
    ("gte", 50, 50.0, True),
    ("gte", 50, 49.99, False),
    ("gte", 50, "50", False),
    ("gte", 50, MISSING, False),
    ("gte", 50, None, False),
    ("gte", "b", "b", True),
    ("lt", 50, 49, True),
    ("lt", 50, -1, True),
    ("lt", 50, 50, False),
    ("lt", 50, "4", False),
    ("lt", 1, False, False),
    ("lt", 50, MISSING, False),
    ("lt", 50, None, False),
    ("lt", "b", "a", True),
    ("lte", 50, 50, True),
    ("lte", 50, 50.0, True),
    ("lte", 50, 51, False),
    ("lte", 50, MISSING, False),
    ("lte", 50, None, False),
    ("lte", 50, [50], False),
    # in / not_in: equal (as eq) to one of the list
    ("in", ["GB", "FR"], "GB", True),
    ("in", ["GB", "FR"], "DE", False),
    ("in", ["GB", "FR"], "gb", False),
    ("in", ["GB", "FR"], ["GB"], False),  # a list is not one of the items
    ("in", ["GB", "FR"], MISSING, False),
    ("in", ["GB", "FR"], None, False),
    ("in", [1, 2], 2.0, True),
    ("in", [1, 2], "1", False),
    ("in", [1, 2], True, False),
    ("in", [None, "GB"], MISSING, True),
    ("in", [[1, 2], 3], [1, 2], True),
    ("in", [], "GB", False),
    ("not_in", ["GB", "FR"], "DE", True),
    ("not_in", ["GB", "FR"], "GB", False),
    ("not_in", ["GB", "FR"], MISSING, True),
    ("not_in", ["GB", "FR"], None, True),
    ("not_in", [1], 1.0, False),
    ("not_in", [1], "1", True),
    ("not_in", [1], True, True),
    ("not_in", [None], MISSING, False),
    ("not_in", [], "GB", True),
    # contains: a string holding the text (case matters), or a list holding an equal item
    ("contains", "lamp", "desk lamp", True),
    ("contains", "lamp", "lamp", True),
    ("contains", "Lamp", "desk lamp", False),
    ("contains", "lamp", "desk", False),
    ("contains", "lamp", ["lamp", "desk"], True),
    ("contains", "lamp", ["lamps"], False),
    ("contains", 2, [1, 2.0], True),
    ("contains", 2, [True, "2"], False),
    ("contains", True, [1], False),
    ("contains", 2, "123", False),
    ("contains", "1", [1], False),
    ("contains", "1", 123, False),
    ("contains", "x", {"x": 1}, False),  # a mapping holds no text or items
    ("contains", "x", MISSING, False),
    ("contains", "x", None, False),
    ("contains", "x", True, False),
    # starts_with: a string starting with the text
    ("starts_with", "/blog", "/blog/post", True),
    ("starts_with", "/blog", "/blog", True),
    ("starts_with", "/blog", "/about", False),
    ("starts_with", "/blog", "/Blog/post", False),
    ("starts_with", "/blog", ["/blog/x"], False),
    ("starts_with", "1", 123, False),
    ("starts_with", "/blog", MISSING, False),
    ("starts_with", "/blog", None, False),
    ("starts_with", "", "anything", True),
    # exists: has a value (any: 0, false, "" and [] are values); value false: has none
    ("exists", True, "x", True),
    ("exists", True, 0, True),
    ("exists", True, False, True),
    ("exists", True, "", True),
    ("exists", True, [], True),
    ("exists", True, {}, True),
    ("exists", True, MISSING, False),
    ("exists", True, None, False),
    ("exists", False, MISSING, True),
    ("exists", False, None, True),
    ("exists", False, 0, False),
    ("exists", False, "", False),
]


def _id(row) -> str:
    op, value, got, expected = row
    return f"{op}-{value!r}-{'missing' if got is MISSING else repr(got)}-{expected}"


def _event(got) -> dict:
    return {"type": "track", "event": "Order Completed", "properties": {} if got is MISSING else {"x": got}}


def test_the_table_covers_every_operator_against_missing_and_null():
    for op in OPS:
        gots = [got for o, _, got, _ in TABLE if o == op]
        assert MISSING in gots and None in gots, op
        assert any(got is not MISSING and got is not None for got in gots), op
        assert {True, False} == {e for o, _, _, e in TABLE if o == op}, op


@pytest.mark.parametrize("row", TABLE, ids=[_id(r) for r in TABLE])
def test_every_operator_on_a_field_of_the_event(row):
    op, value, got, expected = row
    condition = parse({"field": "properties.x", "op": op, "value": value})
    assert holds(condition, Subject(event=_event(got))) is expected


@pytest.mark.parametrize("row", TABLE, ids=[_id(r) for r in TABLE])
def test_every_operator_on_a_trait_of_the_person(row):
    op, value, got, expected = row
    condition = parse({"trait": "x", "op": op, "value": value})
    assert holds(condition, Subject(traits={} if got is MISSING else {"x": got})) is expected


@pytest.mark.parametrize("row", TABLE, ids=[_id(r) for r in TABLE])
def test_not_of_every_operator_is_its_opposite_for_missing_values_too(row):
    op, value, got, expected = row
    condition = parse({"not": {"field": "properties.x", "op": op, "value": value}})
    assert holds(condition, Subject(event=_event(got))) is (not expected)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
VALUES = {"eq": JSON, "ne": JSON, "gt": st.integers() | st.text(max_size=3), "gte": st.floats(allow_nan=False),
          "lt": st.text(max_size=3), "lte": st.integers(), "in": st.lists(JSON, max_size=3),
          "not_in": st.lists(JSON, max_size=3), "contains": st.none() | st.booleans() | st.integers() | st.text(max_size=3),
          "starts_with": st.text(max_size=3), "exists": st.booleans()}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(OPS), data=st.data(), got=JSON)
def test_no_operator_fails_on_any_json_value(op, data, got):
    """Whatever an event carries, a valid condition answers true or false (never an exception)."""
    value = data.draw(VALUES[op])
    condition = parse({"field": "properties.x", "op": op, "value": value})
    assert holds(condition, Subject(event=_event(got))) in (True, False)
    assert holds(condition, Subject(event={"properties": got})) in (True, False)  # the path through any value


def test_op_defaults_to_eq_and_exists_to_true():
    assert parse({"trait": "plan", "value": "pro"}) == parse({"trait": "plan", "op": "eq", "value": "pro"})
    assert parse({"trait": "plan", "op": "exists"}) == parse({"trait": "plan", "op": "exists", "value": True})
    assert holds(parse({"trait": "plan", "op": "exists"}), Subject(traits={"plan": "pro"}))
    assert not holds(parse({"trait": "plan", "op": "exists"}), Subject(traits={}))


# --- dotted paths ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "event, expected",
    [
        ({"context": {"page": {"path": "/cart"}}}, True),
        ({"context": {"page": {"path": "/home"}}}, False),
        ({"context": {"page": {}}}, False),
        ({"context": {"page": None}}, False),
        ({"context": {"page": "/cart"}}, False),  # a text has no fields
        ({"context": {"page": [{"path": "/cart"}]}}, False),  # nor has a list
        ({"context": {"page.path": "/cart"}}, False),  # a dot always goes one level down
        ({"context": None}, False),
        ({}, False),
    ],
)
def test_a_dotted_path_goes_down_mappings_only(event, expected):
    condition = parse({"field": "context.page.path", "value": "/cart"})
    assert holds(condition, Subject(event=event)) is expected
    missing = not expected and event.get("context", {}) != {"page": {"path": "/home"}}
    assert holds(parse({"field": "context.page.path", "op": "exists", "value": False}), Subject(event=event)) is missing


def test_top_level_fields_and_trait_paths():
    event = {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"revenue": 0}}
    assert holds(parse({"field": "type", "value": "track"}), Subject(event=event))
    assert holds(parse({"field": "event", "op": "starts_with", "value": "Order"}), Subject(event=event))
    assert holds(parse({"field": "properties.revenue", "op": "exists"}), Subject(event=event))  # 0 is a value
    assert holds(parse({"field": "properties.revenue", "op": "lte", "value": 0}), Subject(event=event))
    person = Subject(traits={"address": {"city": "Leeds"}, "plan": "pro"})
    assert holds(parse({"trait": "address.city", "value": "Leeds"}), person)
    assert not holds(parse({"trait": "address.country", "op": "exists"}), person)
    assert traits_of(parse({"all": [{"trait": "address.city", "value": "Leeds"}, {"trait": "plan", "value": "x"}]})) == {"address", "plan"}


def test_a_field_with_no_event_at_hand_has_no_value():
    assert holds(parse({"field": "properties.x", "op": "exists", "value": False}), Subject())
    assert not holds(parse({"field": "properties.x", "op": "ne", "value": None}), Subject())
    assert holds(parse({"field": "properties.x", "op": "ne", "value": 1}), Subject())


# --- all, any, not, audience ------------------------------------------------------------------------
def test_all_any_not_and_audience():
    pro = {"trait": "plan", "value": "pro"}
    leeds = {"trait": "city", "value": "Leeds"}
    vip = {"audience": "vip"}
    cases = [
        ({"all": [pro, leeds]}, {"plan": "pro", "city": "Leeds"}, set(), True),
        ({"all": [pro, leeds]}, {"plan": "pro"}, set(), False),
        ({"all": [pro]}, {"plan": "pro"}, set(), True),
        ({"any": [pro, leeds]}, {"city": "Leeds"}, set(), True),
        ({"any": [pro, leeds]}, {"city": "York"}, set(), False),
        ({"not": pro}, {"plan": "free"}, set(), True),
        ({"not": pro}, {}, set(), True),
        ({"not": {"not": pro}}, {"plan": "pro"}, set(), True),
        ({"any": [{"all": [pro, {"not": vip}]}, vip]}, {"plan": "pro"}, set(), True),
        ({"any": [{"all": [pro, {"not": vip}]}, vip]}, {"plan": "free"}, {"vip"}, True),
        ({"any": [{"all": [pro, {"not": vip}]}, vip]}, {"plan": "free"}, set(), False),
        (vip, {}, {"vip"}, True),
        (vip, {}, {"other"}, False),
    ]
    for data, traits, audiences, expected in cases:
        subject = Subject(traits=traits, member=audiences.__contains__)
        assert holds(parse(data), subject) is expected, (data, traits, audiences)
    assert audiences_of(parse({"any": [vip, {"not": {"audience": "churned"}}, pro]})) == {"vip", "churned"}


def test_not_differs_from_the_opposite_operator_on_a_missing_value():
    """``not: {gt: 50}`` holds for someone with no value; ``lte: 50`` does not (docs/engage.md says so)."""
    nothing = Subject(traits={})
    assert holds(parse({"not": {"trait": "ltv", "op": "gt", "value": 50}}), nothing)
    assert not holds(parse({"trait": "ltv", "op": "lte", "value": 50}), nothing)


# --- event: where, count, within ---------------------------------------------------------------------
NOW = 1_000_000.0
DAY = 86400.0


def _person(times_by_event: dict[str, list[float]], now: float = NOW) -> Subject:
    return Subject(history=lambda t: times_by_event.get(t.event, []), now=now)


def test_event_counts_ever_by_default_at_least_one():
    condition = parse({"event": "Order Completed"})
    assert condition == Event(tally("Order Completed"), within=None)
    assert not holds(condition, _person({}))
    assert not holds(condition, _person({"Product Viewed": [NOW - 1]}))
    assert holds(condition, _person({"Order Completed": [1.0]}))  # ever: the first moment of time counts


@pytest.mark.parametrize(
    "count, n, expected",
    [({"op": "gte", "value": 2}, 1, False), ({"op": "gte", "value": 2}, 2, True), ({"op": "gt", "value": 2}, 2, False),
     ({"op": "eq", "value": 0}, 0, True), ({"op": "eq", "value": 0}, 1, False), ({"value": 3}, 3, True),
     ({"value": 3}, 4, False), ({"op": "ne", "value": 1}, 0, True), ({"op": "lt", "value": 2}, 1, True),
     ({"op": "lte", "value": 2}, 3, False)],
)  # fmt: skip
def test_event_count(count, n, expected):
    condition = parse({"event": "Order Completed", "count": count})
    assert holds(condition, _person({"Order Completed": [NOW - i for i in range(n)]})) is expected


@pytest.mark.parametrize(
    "age, inside",
    [(0.0, True), (1.0, True), (7 * DAY - 0.001, True), (7 * DAY, False), (7 * DAY + 1, False), (-DAY, True)],
)
def test_within_counts_events_after_now_minus_the_window(age, inside):
    """An event at ``now - 7d`` has just left "within 7d"; one a millisecond younger is in it."""
    condition = parse({"event": "Order Completed", "within": "7d"})
    assert holds(condition, _person({"Order Completed": [NOW - age]})) is inside
    none_in_window = parse({"event": "Order Completed", "within": "7d", "count": {"op": "eq", "value": 0}})
    assert holds(none_in_window, _person({"Order Completed": [NOW - age]})) is (not inside)


def test_within_and_count_together():
    condition = parse({"event": "Order Completed", "within": "30d", "count": {"op": "gte", "value": 2}})
    assert holds(condition, _person({"Order Completed": [NOW - DAY, NOW - 29 * DAY]}))
    assert not holds(condition, _person({"Order Completed": [NOW - DAY, NOW - 30 * DAY]}))
    assert not holds(condition, _person({"Order Completed": [NOW - DAY, NOW - 31 * DAY, NOW - 40 * DAY]}))


@pytest.mark.parametrize("text, seconds", [("10s", 10), ("15m", 900), ("2h", 7200), ("30d", 30 * 86400), (" 7 d ", 7 * 86400), ("1s", 1)])
def test_durations(text, seconds):
    assert duration(text) == seconds


def test_where_picks_the_events_that_count():
    big = tally("Order Completed", {"field": "properties.revenue", "op": "gt", "value": 50})
    assert big.matches({"event": "Order Completed", "properties": {"revenue": 60}})
    assert not big.matches({"event": "Order Completed", "properties": {"revenue": 50}})
    assert not big.matches({"event": "Order Completed", "properties": {"revenue": "60"}})
    assert not big.matches({"event": "Order Completed", "properties": {}})
    assert not big.matches({"event": "Product Viewed", "properties": {"revenue": 60}})
    assert tally("Order Completed").matches({"event": "Order Completed"})
    nested = tally("Order Completed", {"any": [{"field": "properties.coupon", "op": "exists"},
                                               {"not": {"field": "context.page.path", "op": "starts_with", "value": "/shop"}}]})  # fmt: skip
    assert nested.matches({"event": "Order Completed", "properties": {"coupon": "X"}, "context": {"page": {"path": "/shop/1"}}})
    assert nested.matches({"event": "Order Completed", "properties": {}})
    assert not nested.matches({"event": "Order Completed", "properties": {}, "context": {"page": {"path": "/shop/1"}}})
    valued = tally("Order Completed", prop="properties.category")
    assert valued.matches({"event": "Order Completed", "properties": {"category": "lamps"}})
    assert valued.value({"event": "Order Completed", "properties": {"category": "lamps"}}) == "lamps"
    assert not valued.matches({"event": "Order Completed", "properties": {"category": None}})  # no value: not counted


def test_a_tally_is_named_by_what_it_counts():
    where = {"field": "properties.revenue", "op": "gt", "value": 50}
    same = {"value": 50, "op": "gt", "field": "properties.revenue"}  # the same, written in another order
    assert tally("Order Completed", where).id == tally("Order Completed", same).id
    assert tally("Order Completed", where).id != tally("Order Completed").id
    assert tally("Order Completed").id != tally("Order Refunded").id
    assert tally("Order Completed", prop="properties.revenue").id != tally("Order Completed").id
    condition = parse({"all": [{"event": "Order Completed", "where": where}, {"not": {"event": "Order Refunded", "within": "1d"}}]})
    assert [e.tally.id for e in events_of(condition)] == [tally("Order Completed", where).id, tally("Order Refunded").id]


# --- next_change -------------------------------------------------------------------------------------
def test_next_change_is_when_the_first_event_leaves_a_window():
    condition = parse({"any": [{"event": "Order Completed", "within": "7d"},
                               {"not": {"event": "Cart Viewed", "within": "1h"}},
                               {"event": "Signed Up"}]})  # fmt: skip
    person = _person({"Order Completed": [NOW - 6 * DAY, NOW - DAY, NOW - 8 * DAY],
                      "Cart Viewed": [NOW - 1800.0, NOW - 7200.0], "Signed Up": [NOW - 100 * DAY]})  # fmt: skip
    assert next_change(condition, person) == NOW + 1800.0  # the cart view leaves "within 1h"
    person = _person({"Order Completed": [NOW - 6 * DAY, NOW - DAY]})
    assert next_change(condition, person) == NOW + DAY  # then the order of six days ago leaves "within 7d"


def test_next_change_is_none_without_windows_or_events_in_them():
    assert next_change(parse({"event": "Order Completed"}), _person({"Order Completed": [NOW]})) is None
    assert next_change(parse({"trait": "plan", "value": "pro"}), _person({})) is None
    windowed = parse({"event": "Order Completed", "within": "7d"})
    assert next_change(windowed, _person({})) is None
    assert next_change(windowed, _person({"Order Completed": [NOW - 7 * DAY]})) is None  # already out
    assert next_change(windowed, _person({"Order Completed": [NOW - 7 * DAY + 1]})) == NOW + 1


def test_the_answer_changes_at_next_change_and_not_before():
    condition = parse({"all": [{"event": "Order Completed", "within": "2h"}, {"not": {"event": "Order Refunded", "within": "1h"}}]})
    history = {"Order Completed": [NOW - 3000.0], "Order Refunded": [NOW - 600.0]}
    at = NOW
    answers = []
    while (moment := next_change(condition, _person(history, at))) is not None:
        answers.append((at, holds(condition, _person(history, at))))
        assert holds(condition, _person(history, moment - 0.001)) == answers[-1][1]  # unchanged until then
        at = moment
    answers.append((at, holds(condition, _person(history, at))))
    assert answers == [(NOW, False), (NOW + 3000.0, True), (NOW + 4200.0, False)]


# --- refusals: each sentence, at its line --------------------------------------------------------------
# (name, the YAML, a part of the sentence, parse's arguments); the line marked "# <-" is the one named
REFUSALS = [
    ("not a mapping", """
        all:
          - trait: plan
            value: pro
          - Order Completed   # <-
        """, "a condition is a mapping (all, any, not, field, trait, audience or event), not 'Order Completed'", {}),
    ("no kind", """
        all:
          - trait: plan
            value: pro
          - op: eq            # <-
            value: pro
        """, "a condition has exactly one of all, any, not, field, trait, audience or event; this has none of them (keys: op, value)", {}),
    ("two kinds", """
        any:
          - trait: plan       # <-
            audience: vip
        """, "this has both 'trait' and 'audience'", {}),
    ("empty all", """
        not:
          all: []             # <-
        """, "'all' takes a non-empty list of conditions", {}),
    ("any not a list", """
        any:                  # <-
          trait: plan
        """, "'any' takes a non-empty list of conditions", {}),
    ("not nothing", """
        all:
          - trait: plan
            value: pro
          - not:              # <-
        """, "a condition is a mapping (all, any, not, field, trait, audience or event), not null", {}),
    ("field without an event at hand", """
        all:
          - trait: plan
            value: pro
          - field: properties.revenue   # <-
            op: gt
            value: 5
        """, "'field' is a field of the event at hand, and here there is none: use 'trait' for the person, "
             "or 'event' with 'where' for their events", {"fields": False}),
    ("trait without a person", """
        any:
          - field: event
            value: Signed Up
          - trait: plan       # <-
            value: pro
        """, "'trait' is about a person, and here there is only an event: use 'field'", {"people": False}),
    ("audience without a person", """
        not:
          audience: vip       # <-
        """, "'audience' is about a person, and here there is only an event: use 'field'", {"people": False}),
    ("event without a person", """
        event: Order Completed   # <-
        """, "'event' is about a person, and here there is only an event: use 'field'", {"people": False}),
    ("a trait in where", """
        event: Order Completed
        where:
          any:
            - field: properties.revenue
              op: gt
              value: 50
            - trait: vip      # <-
        """, "'trait' is about a person, and here there is only an event: use 'field'", {}),
    ("audience not a key", """
        all:
          - audience: [vip, churned]   # <-
        """, "'audience' names an audience by its key, not [\"vip\",\"churned\"]", {}),
    ("audience with more", """
        audience: vip
        within: 30d           # <-
        """, "unknown key 'within' here (allowed: audience)", {}),
    ("misspelt value", """
        all:
          - trait: plan
            op: eq
            valeu: pro        # <-
        """, "unknown key 'valeu' here (allowed: op, trait, value)", {}),
    ("within on a trait", """
        trait: orders
        op: gt
        value: 2
        within: 30d           # <-
        """, "unknown key 'within' here (allowed: op, trait, value)", {}),
    ("extra key beside all", """
        all:
          - trait: plan
        name: x               # <-
        """, "unknown key 'name' here (allowed: all)", {}),
    ("event without a name", """
        event:                # <-
        within: 7d
        """, "'event' names an event (its 'event' field, e.g. Order Completed), not null", {}),
    ("event named by a number", """
        any:
          - event: 42         # <-
        """, "'event' names an event (its 'event' field, e.g. Order Completed), not 42", {}),
    ("unknown operator", """
        all:
          - trait: plan
            op: equals        # <-
            value: pro
        """, "unknown operator 'equals': use one of eq, ne, gt, gte, lt, lte, in, not_in, contains, starts_with, exists", {}),
    ("an operator in capitals", """
        trait: plan
        op: EQ                # <-
        value: pro
        """, "unknown operator 'EQ'", {}),
    ("operator without value", """
        trait: orders
        op: gt                # <-
        """, "operator 'gt' needs a 'value'", {}),
    ("eq without value", """
        not:
          trait: orders       # <-
        """, "operator 'eq' needs a 'value'", {}),
    ("exists not a boolean", """
        trait: email
        op: exists
        value: yes            # <-
        """, "'exists' takes value true or false, not 'yes'", {}),
    ("in not a list", """
        trait: country
        op: in
        value: GB             # <-
        """, "'in' takes a list of values, not 'GB'", {}),
    ("not_in not a list", """
        trait: country
        op: not_in
        value: null           # <-
        """, "'not_in' takes a list of values, not null", {}),
    ("gt of a boolean", """
        trait: orders
        op: gt
        value: true           # <-
        """, "'gt' compares numbers or strings, not true", {}),
    ("lte of a list", """
        trait: orders
        op: lte
        value: [1, 2]         # <-
        """, "'lte' compares numbers or strings, not [1,2]", {}),
    ("gte of null", """
        trait: orders
        op: gte
        value:                # <-
        """, "'gte' compares numbers or strings, not null", {}),
    ("starts_with a number", """
        field: properties.zip
        op: starts_with
        value: 12             # <-
        """, "'starts_with' takes a string, not 12", {}),
    ("contains a list", """
        field: properties.tags
        op: contains
        value: [a, b]         # <-
        """, "'contains' takes one value (a text, or an item of a list), not [\"a\",\"b\"]", {}),
    ("contains a mapping", """
        field: properties.tags
        op: contains
        value: {a: 1}         # <-
        """, "'contains' takes one value (a text, or an item of a list), not {\"a\":1}", {}),
    ("bad duration", """
        all:
          - trait: plan
            value: pro
          - event: Order Completed
            within: 30x       # <-
        """, "'30x' is not a duration: write a whole number and s, m, h or d (30d, 2h, 15m, 10s)", {}),
    ("duration of zero", """
        event: Order Completed
        within: 0d            # <-
        """, "'0d' is not a duration", {}),
    ("fractional duration", """
        event: Order Completed
        within: 1.5h          # <-
        """, "'1.5h' is not a duration", {}),
    ("duration in words", """
        event: Order Completed
        within: 30 days       # <-
        """, "'30 days' is not a duration", {}),
    ("duration without unit", """
        event: Order Completed
        within: 30            # <-
        """, "30 is not a duration", {}),
    ("weeks", """
        event: Order Completed
        within: 2w            # <-
        """, "'2w' is not a duration", {}),
    ("count not a mapping", """
        event: Order Completed
        count: 2              # <-
        """, "'count' is {op: gte, value: 2} (op one of eq, ne, gt, gte, lt, lte), not 2", {}),
    ("count without value", """
        event: Order Completed
        count:
          op: gte             # <- (the mapping's first line)
        """, "'count' is {op: gte, value: 2}", {}),
    ("count with more", """
        event: Order Completed
        count:
          op: gte
          value: 2
          within: 7d          # <-
        """, "unknown key 'within' here (allowed: op, value)", {}),
    ("count operator", """
        event: Order Completed
        count: {op: in, value: 2}   # <-
        """, "unknown count operator 'in': use one of eq, ne, gt, gte, lt, lte", {}),
    ("negative count", """
        event: Order Completed
        count: {op: gte, value: -1}   # <-
        """, "a count is a whole number of events (0 or more), not -1", {}),
    ("fractional count", """
        event: Order Completed
        count: {op: gte, value: 1.5}   # <-
        """, "a count is a whole number of events (0 or more), not 1.5", {}),
    ("count of true", """
        event: Order Completed
        count: {op: gte, value: true}   # <-
        """, "a count is a whole number of events (0 or more), not true", {}),
    ("count as text", """
        event: Order Completed
        count: {op: gte, value: "2"}   # <-
        """, "a count is a whole number of events (0 or more), not '2'", {}),
    ("empty path", """
        field: ""             # <-
        value: 1
        """, "'field' is a dotted path such as properties.revenue, not ''", {}),
    ("double dot", """
        all:
          - field: properties..revenue   # <-
            value: 1
        """, "'field' is a dotted path such as properties.revenue, not 'properties..revenue'", {}),
    ("trait path a number", """
        trait: 7              # <-
        value: 1
        """, "'trait' is a dotted path such as properties.revenue, not 7", {}),
    ("where not a mapping", """
        event: Order Completed
        where: big            # <-
        """, "a condition is a mapping (all, any, not, field, trait, audience or event), not 'big'", {}),
]


def _marked(text: str) -> tuple[str, int]:
    text = textwrap.dedent(text).lstrip("\n")
    return text, next(i for i, line in enumerate(text.splitlines(), 1) if "# <-" in line)


@pytest.mark.parametrize("name, text, sentence, kwargs", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_every_refusal_says_why_and_where(tmp_path, name, text, sentence, kwargs):
    text, line = _marked(text)
    path = tmp_path / "condition.yaml"
    path.write_text(text)
    with pytest.raises(ConditionError) as caught:
        parse(load_yaml(path), **kwargs)
    assert sentence in caught.value.reason
    assert caught.value.line == line, f"{caught.value.at(str(path))}\n{text}"
    assert caught.value.at("x.yaml") == f"x.yaml:{line}: {caught.value.reason}"


def test_refusals_without_a_file_have_no_line():
    with pytest.raises(ConditionError) as caught:
        parse({"trait": "plan", "op": "like", "value": "pro"})
    assert caught.value.line is None
    assert caught.value.at("draft") == "draft: unknown operator 'like': use one of " + ", ".join(OPS)
    with pytest.raises(ConditionError, match="'nope' is not a duration"):
        duration("nope")


def test_a_long_value_is_shown_cut_short():
    with pytest.raises(ConditionError) as caught:
        parse({"trait": "plan", "op": "in", "value": "x" * 200})
    shown = caught.value.reason.split("not ", 1)[1]
    assert len(shown) == 60 and shown.endswith("...")


def test_a_condition_from_a_file_is_the_same_as_from_json(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""
        all:
          - event: Order Completed
            where: {field: properties.revenue, op: gte, value: 50}
            count: {op: gte, value: 2}
            within: 30d
          - not: {audience: churned}
          - trait: country
            op: in
            value: [GB, NO, FR]
        """))
    assert parse(load_yaml(path)) == parse({"all": [
        {"event": "Order Completed", "where": {"field": "properties.revenue", "op": "gte", "value": 50},
         "count": {"op": "gte", "value": 2}, "within": "30d"},
        {"not": {"audience": "churned"}},
        {"trait": "country", "op": "in", "value": ["GB", "NO", "FR"]}]})  # fmt: skip
    assert isinstance(parse(load_yaml(path)), All)


def test_a_tally_checks_its_name_and_property():
    with pytest.raises(ConditionError, match="'event' names an event"):
        tally("")
    with pytest.raises(ConditionError, match="'property' is a dotted path"):
        tally("Order Completed", prop="properties.")
    assert isinstance(tally("Order Completed"), Tally)


def test_a_mapping_value_from_a_file_equals_the_same_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("any:\n  - trait: address\n    value: {city: Leeds, lines: [1 Main St]}\n"
                    "  - trait: shipping\n    op: in\n    value: [{city: York}]\n")  # fmt: skip
    condition = parse(load_yaml(path))
    assert holds(condition, Subject(traits={"address": {"lines": ["1 Main St"], "city": "Leeds"}}))
    assert holds(condition, Subject(traits={"shipping": {"city": "York"}}))
    assert not holds(condition, Subject(traits={"address": {"city": "Leeds", "lines": []}, "shipping": {"city": "Leeds"}}))
    assert holds(parse({"trait": "tags", "op": "contains", "value": "vip"}), Subject(traits={"tags": ["new", "vip"]}))
