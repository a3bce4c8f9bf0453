"""Two evaluators, one answer (issue 29, part 6): on a generated history, the memberships and computed
traits the live evaluation keeps (``engage_members``, ``engage_computed``, after the builder caught
up) equal what the batch evaluation (``batch.evaluate_all``) computes from the log.

The history: several thousand people, anonymous then signed in (two identifiers in one profile,
some events filed under each), some on two devices, some never signed in; orders, product views,
sign-ins, pages; windows of 7, 14 and 30 days, ``not``, nested audiences, a trait, every kind of
computed trait; late events (old timestamps in the newest segment) and duplicated lines (in the same
segment, in another, and in a gzipped one).

Times: every event is a whole number of hours and a half before the start of the test, and every
window a whole number of hours, so no event leaves a window while the test runs (less than 30
minutes): both evaluations see the same windows.
"""

from __future__ import annotations

import gzip
import random
import time
from pathlib import Path

import orjson
import pytest

from collector.config import Config
from collector.engage import definitions
from collector.engage.audiences import batch
from collector.log.layout import hour_partition, iso_ms

PEOPLE = 3000
SEED = 29
CATEGORIES = ("lamps", "chairs", "tables", "rugs")

TRAITS = {
    "orders": "kind: count\nevent: Order Completed\n",
    "spent_30d": "kind: sum\nevent: Order Completed\nproperty: properties.revenue\nwithin: 30d\n",
    "smallest_order": "kind: min\nevent: Order Completed\nproperty: properties.revenue\n",
    "largest_order_14d": "kind: max\nevent: Order Completed\nproperty: properties.revenue\nwithin: 14d\n",
    "first_category": "kind: first\nevent: Product Viewed\nproperty: properties.category\n",
    "last_category_7d": "kind: last\nevent: Product Viewed\nproperty: properties.category\nwithin: 7d\n",
    "favourite_category": "kind: most_frequent\nevent: Product Viewed\nproperty: properties.category\n",
    "categories_bought": ("kind: unique_list\nevent: Order Completed\nproperty: properties.category\n"
                          "where: {field: properties.revenue, op: gte, value: 20}\n"),
    "lamp_views_7d": "kind: count\nevent: Product Viewed\nwhere: {field: properties.category, value: lamps}\nwithin: 7d\n",
}  # fmt: skip
AUDIENCES = {
    "buyers": "condition:\n  event: Order Completed\n  count: {op: gte, value: 2}\n  within: 30d\n",
    "vip": "condition:\n  all:\n    - audience: buyers\n    - trait: plan\n      value: pro\n",
    "lapsed": ("condition:\n  all:\n    - event: Order Completed\n    - not:\n        event: Order Completed\n"
               "        within: 14d\n"),
    "lamp_lookers": ("condition:\n  all:\n    - event: Product Viewed\n      where: {field: properties.category, value: lamps}\n"
                     "      within: 7d\n    - not:\n        event: Order Completed\n        within: 7d\n"),
    "big_spenders": "condition:\n  trait: spent_30d\n  op: gt\n  value: 300\n",
    "never_signed_in": "condition:\n  not:\n    event: Signed In\n",
    "valued": "condition:\n  any:\n    - audience: vip\n    - audience: big_spenders\n    - trait: orders\n      op: gte\n      value: 6\n",
    "one_exactly": "condition:\n  event: Order Completed\n  count: {op: eq, value: 1}\n",
    "lamp_fans": "condition:\n  trait: favourite_category\n  value: lamps\n",
    # the lamp tally again, in a longer window than lamp_lookers' and lamp_views_7d's
    "lamp_regulars": ("condition:\n  event: Product Viewed\n  where: {field: properties.category, value: lamps}\n"
                      "  count: {op: gte, value: 2}\n  within: 30d\n"),
}  # fmt: skip


def define(root: Path) -> definitions.Definitions:
    for kind, files in (("traits", TRAITS), ("audiences", AUDIENCES)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (root / kind / f"{name}.yaml").write_text(text)
    return definitions.load(root)


def history(start: float, rng: random.Random) -> tuple[list[dict], list[dict], list[dict]]:
    """(events in time order, late events, duplicates): every event at ``start - k h - 30 min``."""
    events, late = [], []
    serial = 0

    def at(hours: int) -> str:
        return iso_ms(start - hours * 3600 - 1800)

    def event(kind: str, hours: int, **fields) -> dict:
        nonlocal serial
        serial += 1
        when = at(hours)
        return {"type": kind, "messageId": f"m-{serial}", "timestamp": when, "receivedAt": when, "source": "web", **fields}

    for p in range(PEOPLE):
        anon, user = f"anon-{p}", f"user-{p}"
        devices = [anon] + ([f"anon-{p}-phone"] if p % 7 == 0 else [])
        signs_in = p % 5 != 0
        hours = sorted(rng.sample(range(0, 45 * 24), rng.randint(1, 14)), reverse=True)
        signed = False
        for i, h in enumerate(hours):
            who = {"anonymousId": rng.choice(devices)}
            if signed:
                who["userId"] = user
            roll = rng.random()
            if signs_in and not signed and (roll < 0.25 or i == len(hours) // 2):
                plan = rng.choice(("pro", "free", None))
                traits = {"email": f"p{p}@example.com", **({"plan": plan} if plan else {})}
                events.append(event("identify", h, userId=user, traits=traits, **who))
                events.append(event("track", h, event="Signed In", userId=user, **who))
                signed = True
            elif roll < 0.5:
                category = rng.choice(CATEGORIES)
                events.append(event("track", h, event="Product Viewed", properties={"category": category}, **who))
            elif roll < 0.75:
                revenue = rng.choice((5, 19.5, 20, 60, 150, 400, "12", None))
                properties = {"category": rng.choice(CATEGORIES)} | ({} if revenue is None else {"revenue": revenue})
                events.append(event("track", h, event="Order Completed", properties=properties, **who))
            else:
                events.append(event("page", h, name="Home", **who))
        if rng.random() < 0.15:  # a late event: hours old, received at the start (the newest segment)
            h = rng.randint(0, 40 * 24)
            who = {"userId": user} if signed else {"anonymousId": anon}
            name = rng.choice(("Order Completed", "Product Viewed"))
            late.append({**event("track", h, event=name, properties={"category": "lamps", "revenue": 75}, **who),
                         "receivedAt": iso_ms(start - 60)})  # fmt: skip
    duplicates = [dict(e) for e in rng.sample(events, len(events) // 50)]
    return events, late, duplicates


def write_log(data_dir: Path, start: float, rng: random.Random):
    """The log: one segment an hour (some gzipped); returns (the number of events, a function that
    writes the newest segment: the late events and duplicates, for after a first catch-up)."""
    events, late, duplicates = history(start, rng)
    by_hour: dict[str, list[dict]] = {}
    for e in sorted(events, key=lambda e: e["timestamp"]):
        by_hour.setdefault(hour_partition(batch.key_epoch(e["receivedAt"] + "|")), []).append(e)
    for e in duplicates[: len(duplicates) // 2]:  # the same line twice in its own segment
        by_hour[hour_partition(batch.key_epoch(e["receivedAt"] + "|"))].append(e)
    seq = 0
    for partition, lines in sorted(by_hour.items()):
        seq += 1
        directory = data_dir / "events" / partition
        directory.mkdir(parents=True, exist_ok=True)
        data = b"".join(orjson.dumps(e) + b"\n" for e in lines)
        name = f"part-w0-{seq:06d}.ndjson"
        if seq % 3 == 0:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)

    def newest() -> None:
        directory = data_dir / "events" / hour_partition(start - 60)
        directory.mkdir(parents=True, exist_ok=True)
        rest = late + duplicates[len(duplicates) // 2 :]  # late events, and lines repeated in another segment
        (directory / f"part-w1-{seq + 1:06d}.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in rest))

    return len(events) + len(late), newest


def batch_rows(answers: dict) -> tuple[set, dict]:
    members = {(key, pid) for pid, answer in answers.items() for key in answer.members}
    computed = {pid: answer.computed for pid, answer in answers.items() if answer.computed}
    return members, computed


@pytest.fixture
def generated(tmp_path, profiles_db):
    """The log written, the definitions, a configuration naming them and an empty profile database
    (SQLite, then PostgreSQL: ``conftest.profiles_db``)."""
    start = time.time()
    rng = random.Random(SEED)
    data = tmp_path / "data"
    count, newest = write_log(data, start, rng)
    defs = define(tmp_path / "engage")
    config = Config(data_dir=data, profiles_db=profiles_db, engage_dir=tmp_path / "engage")
    return config, defs, count, newest


def live_rows(store) -> tuple[set, set, dict]:
    """What the live evaluation keeps: hits, memberships, computed traits (an empty set of them left out)."""
    hits = set(store._all("SELECT node_id, tally, key, time, value FROM engage_hits"))
    members = set(store._all("SELECT audience, profile_id FROM engage_members"))
    computed = {pid: orjson.loads(traits) for pid, traits in store._all("SELECT profile_id, traits FROM engage_computed")}
    return hits, members, {pid: traits for pid, traits in computed.items() if traits}


def test_live_memberships_equal_the_batch_ones(generated):
    """The builder with the live evaluation follows the log (batches of 2,000: most deferred to
    ``tick``, the last evaluated as folded), then takes the late events and duplicates in a newer
    segment; its hits, members and computed traits are the batch evaluation's, row for row."""
    from collector.engage.audiences.live import Live
    from collector.profiles.builder import Builder
    from collector.profiles.database import open_store

    config, defs, count, newest = generated
    store = open_store(config.profiles_db, building=True)
    live = Live(store, defs)
    builder = Builder(store, config.data_dir, batch=2000, engage=live)
    try:
        builder.catch_up()
        while live.tick():
            pass
        newest()
        builder.catch_up()
        while live.tick():
            pass
        hits, members, computed = live_rows(store)
        answers = batch.evaluate_all(config, defs, time.time(), store=store)
        people = store.profile_count()
        # then 8 days later, on time alone: the live side re-evaluates only the people whose moment came
        later = time.time() + 8 * 86400 + 1234.5
        live.clock = lambda: later
        while live.tick():
            pass
        _, members_later, computed_later = live_rows(store)
        answers_later = batch.evaluate_all(config, defs, later, store=store)
    finally:
        builder.close()
        store.close()
    counted = {(n, t, h.key, h.time, None if h.value is None else orjson.dumps(h.value).decode())
               for n, t, h in batch.hits(config, defs.tallies())}  # fmt: skip
    assert people > 2000 and count > 15_000 and len(counted) > 10_000
    assert hits == counted, (len(hits - counted), sorted(hits - counted)[:3], len(counted - hits), sorted(counted - hits)[:3])
    want_members, want_computed = batch_rows(answers)
    assert members == want_members, (sorted(members - want_members)[:5], sorted(want_members - members)[:5])
    assert computed == want_computed, [(p, computed.get(p), want_computed.get(p))
                                       for p in sorted(set(computed) | set(want_computed)) if computed.get(p) != want_computed.get(p)][:5]
    sizes = {key: sum(1 for audience, _ in members if audience == key) for key in defs.audiences}
    assert all(0 < size < people for size in sizes.values()), sizes  # every audience splits the people
    assert (members_later, computed_later) == batch_rows(answers_later)
    assert members_later != members and computed_later != computed  # windows passed: people left
