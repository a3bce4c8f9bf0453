"""One person's answers (``collector/engage/audiences/evaluate.py``): every computed trait kind with
and without a window, values of the wrong type, ties, the audiences' order, and ``next_change``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.engage.audiences.evaluate import UNIQUE_LIST_MAX, Hit, evaluate, trait_value
from collector.engage.definitions import Definitions, load

NOW = 1_765_000_000.0  # epoch seconds (December 2025): keys of equal width order as times do
DAY = 86400.0


def definitions(root: Path, traits: dict[str, str] = {}, audiences: dict[str, str] = {}) -> Definitions:
    for kind, files in (("traits", traits), ("audiences", audiences)):
        for name, text in files.items():
            (root / kind).mkdir(parents=True, exist_ok=True)
            (root / kind / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip("\n"))
    return load(root)


def hits(*pairs: tuple[float, object]) -> list[Hit]:
    """Hits in the order given (their keys say so: ``time|n``)."""
    return [Hit(t, f"{t:017.3f}|m{i:04d}", v) for i, (t, v) in enumerate(pairs)]


ORDERS = [(NOW - 40 * DAY, 120), (NOW - 10 * DAY, 30.5), (NOW - 2 * DAY, 80), (NOW - DAY, 30.5)]
CATEGORIES = [(NOW - 40 * DAY, "lamps"), (NOW - 30 * DAY, "desks"), (NOW - 10 * DAY, "desks"), (NOW - 5 * DAY, "chairs"),
              (NOW - DAY, "lamps")]  # fmt: skip

# (kind, property, the values, ever, within 7d)
KINDS = [
    ("count", None, ORDERS, 4, 2),
    ("sum", "properties.revenue", ORDERS, 261.0, 110.5),
    ("min", "properties.revenue", ORDERS, 30.5, 30.5),
    ("max", "properties.revenue", ORDERS, 120, 80),
    ("first", "properties.revenue", ORDERS, 120, 80),
    ("last", "properties.revenue", ORDERS, 30.5, 30.5),
    ("most_frequent", "properties.category", CATEGORIES, "lamps", "lamps"),  # a tie of two each: the one seen last
    ("unique_list", "properties.category", CATEGORIES, ["lamps", "desks", "chairs"], ["chairs", "lamps"]),
]


@pytest.mark.parametrize("kind, prop, values, ever, week", KINDS, ids=[k[0] for k in KINDS])
def test_every_kind_with_and_without_a_window(tmp_path, kind, prop, values, ever, week):
    written = f"kind: {kind}\nevent: Order Completed\n" + (f"property: {prop}\n" if prop else "")
    found = definitions(tmp_path, {"ever": written, "week": written + "within: 7d\n"})
    ids = {t.tally.id for t in found.traits.values()}
    assert len(ids) == 1  # one tally: the window is the trait's, the events counted are the same
    answer = evaluate(found, {}, {ids.pop(): hits(*values)}, NOW)
    assert answer.computed == {"ever": ever, "week": week}
    assert answer.next_change == min(t + 7 * DAY for t, _ in values if t > NOW - 7 * DAY)  # the first to leave "week"


def test_the_window_edge(tmp_path):
    """An event at ``now - within`` has left the window; one a millisecond younger is in it."""
    found = definitions(tmp_path, {"n": "kind: count\nevent: E\nwithin: 1h\n", "s": "kind: sum\nevent: E\nproperty: properties.v\nwithin: 1h\n"})
    count_id, sum_id = found.traits["n"].tally.id, found.traits["s"].tally.id
    answer = evaluate(found, {}, {count_id: hits((NOW - 3600, None), (NOW - 3599.999, None)),
                                  sum_id: hits((NOW - 3600, 5), (NOW - 3599.999, 7))}, NOW)  # fmt: skip
    assert answer.computed == {"n": 1, "s": 7}
    assert answer.next_change == pytest.approx(NOW + 0.001)
    later = evaluate(found, {}, {count_id: hits((NOW - 3600, None), (NOW - 3599.999, None)),
                                 sum_id: hits((NOW - 3600, 5), (NOW - 3599.999, 7))}, answer.next_change)  # fmt: skip
    assert later.computed == {"n": 0} and later.next_change is None


def test_no_events_no_value_but_a_count_of_zero(tmp_path):
    found = definitions(tmp_path, {kind: f"kind: {kind}\nevent: E\n" + ("" if kind == "count" else "property: properties.v\n")
                                   for kind, *_ in KINDS})  # fmt: skip
    assert evaluate(found, {}, {}, NOW).computed == {"count": 0}
    windowed = definitions(tmp_path / "w", {"count": "kind: count\nevent: E\nwithin: 1d\n",
                                            "sum": "kind: sum\nevent: E\nproperty: properties.v\nwithin: 1d\n"})  # fmt: skip
    old = {t.tally.id: hits((NOW - 10 * DAY, 1)) for t in windowed.traits.values()}
    assert evaluate(windowed, {}, old, NOW).computed == {"count": 0}


WRONG = [(NOW - 9, "12"), (NOW - 8, True), (NOW - 7, [3]), (NOW - 6, {"v": 4}), (NOW - 5, None)]


@pytest.mark.parametrize(
    "kind, values, expected",
    [("sum", WRONG + [(NOW - 4, 2), (NOW - 3, 0.5)], 2.5),
     ("sum", WRONG, None),
     ("min", WRONG + [(NOW - 4, 2), (NOW - 3, -1)], -1),
     ("min", WRONG, None),
     ("max", [(NOW - 10, 1)] + WRONG, 1),
     ("max", WRONG, None),
     ("first", [(NOW - 10, None), (NOW - 9, "12"), (NOW - 8, 5)], "12"),  # any value but none
     ("last", [(NOW - 9, [3]), (NOW - 8, None)], [3]),
     ("most_frequent", [(NOW - 9, 1), (NOW - 8, "1"), (NOW - 7, "1"), (NOW - 6, 1.0), (NOW - 5, None)], 1.0),  # 1 == 1.0
     ("most_frequent", [(NOW - 9, True), (NOW - 8, "x"), (NOW - 7, "x"), (NOW - 6, 1), (NOW - 5, None)], "x"),
     ("most_frequent", [(NOW - 9, {"a": 1, "b": 2}), (NOW - 8, {"b": 2, "a": 1}), (NOW - 7, "x")], {"b": 2, "a": 1}),
     ("unique_list", [(NOW - 9, 1), (NOW - 8, True), (NOW - 7, "1"), (NOW - 6, 1.0), (NOW - 5, None), (NOW - 4, [1]),
                      (NOW - 3, [1]), (NOW - 2, {"a": [1]})], [1, True, "1", [1], {"a": [1]}])],
)  # fmt: skip
def test_values_of_the_wrong_type(tmp_path, kind, values, expected):
    """sum/min/max take numbers only (not true, not "12"); true is not 1 in most_frequent and unique_list."""
    found = definitions(tmp_path, {"t": f"kind: {kind}\nevent: E\nproperty: properties.v\n"})
    answer = evaluate(found, {}, {found.traits["t"].tally.id: hits(*values)}, NOW)
    assert answer.computed.get("t") == expected
    assert answer.computed.get("t").__class__ is expected.__class__


def test_most_frequent_ties_go_to_the_one_seen_last_in_event_order(tmp_path):
    found = definitions(tmp_path, {"fav": "kind: most_frequent\nevent: E\nproperty: properties.c\n"})
    trait = found.traits["fav"]
    assert trait_value(trait, hits((1, "a"), (2, "b"), (3, "b"), (4, "a"))) == "a"
    assert trait_value(trait, hits((1, "a"), (2, "b"), (3, "a"), (4, "b"))) == "b"
    assert trait_value(trait, hits((1, "a"), (2, "b"), (3, "c"))) == "c"
    assert trait_value(trait, hits((1, "a"), (2, "b"), (3, "b"), (4, "c"))) == "b"  # more often beats later
    late = hits((1, "a"), (2, "b"), (3, "b"), (4, "a"))
    # the hits come in any order (a late event arrives last): their keys order them
    answer = evaluate(found, {}, {trait.tally.id: [late[3], late[0], late[2], late[1]]}, NOW)
    assert answer.computed == {"fav": "a"}


def test_first_and_last_follow_the_event_order_not_the_arrival(tmp_path):
    found = definitions(tmp_path, {"first_page": "kind: first\nevent: E\nproperty: properties.p\n",
                                   "last_page": "kind: last\nevent: E\nproperty: properties.p\n"})  # fmt: skip
    ordered = hits((1, "/a"), (2, "/b"), (3, "/c"))
    answer = evaluate(found, {}, {found.traits["first_page"].tally.id: [ordered[2], ordered[0], ordered[1]]}, NOW)
    assert answer.computed == {"first_page": "/a", "last_page": "/c"}


def test_unique_list_keeps_the_first_values_seen(tmp_path):
    found = definitions(tmp_path, {"seen": "kind: unique_list\nevent: E\nproperty: properties.sku\n"})
    many = hits(*[(i, f"sku-{i % (UNIQUE_LIST_MAX + 20)}") for i in range(3 * UNIQUE_LIST_MAX)])
    value = trait_value(found.traits["seen"], many)
    assert value == [f"sku-{i}" for i in range(UNIQUE_LIST_MAX)]


# --- audiences --------------------------------------------------------------------------------------
def test_audiences_see_computed_traits_and_the_audiences_they_name(tmp_path):
    found = definitions(
        tmp_path,
        traits={"spend_30d": "kind: sum\nevent: Order Completed\nproperty: properties.revenue\nwithin: 30d\n"},
        audiences={  # files named so that the alphabet would put each before the one it names
            "a_lapsed_vip": "condition: {all: [{audience: b_vip}, {not: {event: Order Completed, within: 7d}}]}\n",
            "b_vip": "condition: {any: [{trait: spend_30d, op: gt, value: 100}, {audience: c_staff}]}\n",
            "c_staff": "condition: {trait: email, op: contains, value: '@shop.example'}\n",
        },
    )
    assert list(found.audiences) == ["c_staff", "b_vip", "a_lapsed_vip"]
    orders = found.traits["spend_30d"].tally.id
    event = next(iter(set(found.tallies()) - {orders}))
    history = {orders: hits((NOW - 20 * DAY, 150)), event: [Hit(NOW - 20 * DAY, "k", None)]}
    answer = evaluate(found, {"email": "grace@example.com"}, history, NOW)
    assert answer.computed == {"spend_30d": 150}
    assert answer.members == {"b_vip", "a_lapsed_vip"}
    assert answer.next_change == NOW + 10 * DAY  # the order leaves spend_30d
    staff = evaluate(found, {"email": "ada@shop.example"}, {}, NOW)
    assert staff.members == {"c_staff", "b_vip", "a_lapsed_vip"} and staff.next_change is None
    recent = {orders: hits((NOW - DAY, 20)), event: [Hit(NOW - DAY, "k", None)]}
    answer = evaluate(found, {"email": "ada@shop.example"}, recent, NOW)
    assert answer.members == {"c_staff", "b_vip"}
    assert answer.next_change == NOW + 6 * DAY  # the order leaves "within 7d" before it leaves spend_30d


def test_a_computed_trait_is_the_persons_trait_of_that_name(tmp_path):
    found = definitions(tmp_path, traits={"orders": "kind: count\nevent: Order Completed\n"},
                        audiences={"repeat": "condition: {trait: orders, op: gte, value: 2}\n"})  # fmt: skip
    tally_id = found.traits["orders"].tally.id
    assert evaluate(found, {"orders": 5}, {}, NOW).members == set()  # computed: 0 events, whatever the profile says
    assert evaluate(found, {}, {tally_id: hits((1, None), (2, None))}, NOW).members == {"repeat"}


def test_the_answer_changes_at_next_change(tmp_path):
    found = definitions(
        tmp_path,
        traits={"views_1h": "kind: count\nevent: Product Viewed\nwithin: 1h\n"},
        audiences={"browsing": "condition: {trait: views_1h, op: gte, value: 2}\n",
                   "bought_recently": "condition: {event: Order Completed, within: 2h}\n"},  # fmt: skip
    )
    views, orders = found.traits["views_1h"].tally.id, next(iter(set(found.tallies()) - {found.traits["views_1h"].tally.id}))
    history = {views: hits((NOW - 1000, None), (NOW - 500, None)), orders: hits((NOW - 6000, None))}
    seen, at = [], NOW
    while at is not None:
        answer = evaluate(found, {}, history, at)
        seen.append((at - NOW, sorted(answer.members), answer.computed["views_1h"]))
        at = answer.next_change
    assert seen == [(0, ["bought_recently", "browsing"], 2), (1200, ["browsing"], 2), (2600, [], 1), (3100, [], 0)]
