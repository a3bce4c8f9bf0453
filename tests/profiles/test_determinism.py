"""One pass over the whole log and incremental builds in any order give the same profiles."""

from __future__ import annotations

import random

from collector.profiles import views
from collector.profiles.builder import Builder
from collector.profiles.rules import Rules

from .conftest import Log, at, ev


def generated_log(seed: int, people: int = 60) -> list[dict]:
    """Visitors browsing anonymously on one or two devices, signing in, sharing devices and emails,
    aliasing, sending junk ids, changing traits; about 20 events a person."""
    rng = random.Random(seed)
    events: list[dict] = []
    shared = [f"kiosk-{n}" for n in range(3)]
    for p in range(people):
        devices = [f"a-{p}-{d}" for d in range(rng.randint(1, 3))]
        user = f"u-{p}" if rng.random() < 0.8 else None
        email = f"p{p % 40}@example.com"  # some people share an email
        t = rng.randint(0, 3000)
        for n in range(rng.randint(5, 25)):
            t += rng.randint(1, 60)
            device = rng.choice(devices + ([rng.choice(shared)] if rng.random() < 0.1 else []))
            signed_in = user is not None and n > 3
            kind = rng.choice(["track", "page", "identify", "group", "alias"] if signed_in else ["track", "page"])
            fields = {"anonymousId": device if rng.random() > 0.05 else rng.choice(["undefined", "0", ""])}
            if signed_in:
                fields["userId"] = user
            if kind == "identify":
                fields["traits"] = {"plan": rng.choice(["free", "pro", None]), "email": email.upper(), "n": n}
            elif kind == "alias":
                fields = {"userId": user, "previousId": rng.choice(devices)}
            elif kind == "group":
                fields.update(groupId=f"g{p % 5}", traits={"size": rng.randint(1, 9)})
            elif kind == "track":
                name = rng.choice(["Product Viewed", "Order Completed", "Signed Out"])
                fields.update(event=name, properties={"revenue": rng.randint(1, 99) / 10, "currency": "EUR"})
            else:
                fields["context"] = {"page": {"url": f"https://shop/{n}"}, "location": {"city": rng.choice("AB")}}
            events.append(ev(kind, timestamp=at(t % 3600), **fields))
    return events


def test_incremental_shuffled_duplicated_and_restarted_equals_one_pass(tmp_path, make_store):
    """A generated log built in one pass in time order, and shuffled with duplicates in small
    batches across builder restarts, give identical profiles (traits, identifiers, refusals)."""
    events = generated_log(seed=13)
    rules = Rules(max_anonymous_ids=3)
    ordered = Log(tmp_path / "ordered")
    ordered.write(sorted(events, key=lambda e: (e["timestamp"], e["messageId"])))
    one_pass = make_store("one-pass.db")
    Builder(one_pass, ordered.data_dir, rules).catch_up()

    rng = random.Random(7)
    shuffled = events + rng.sample(events, len(events) // 5)  # a fifth of them twice
    rng.shuffle(shuffled)
    incremental = Log(tmp_path / "incremental")
    store = make_store("incremental.db")
    for start in range(0, len(shuffled), 97):
        incremental.write(shuffled[start : start + 97])
        Builder(store, incremental.data_dir, rules, batch=13).catch_up()  # a restart every chunk

    expected = views.snapshot(one_pass)
    assert len(expected) > 40
    assert any(p["metadata"]["refused_links"] for p in expected.values()), "the log exercises no refusal"
    attributed = [e for e in events if rules.identifiers(e)]
    assert 0 < len(events) - len(attributed) < len(events) / 10, "junk-only events are not attributed"
    assert sum(p["traits"]["event_count"] for p in expected.values()) == len(attributed)
    assert views.snapshot(store) == expected


def test_folding_events_in_place_equals_merging_their_contributions():
    """The builder folds each event into its profile's state in place (``absorb``); that must be
    what merging the events' contributions gives, in any order (``merge``: the rules)."""
    from collector.profiles.rules import absorb, event_key, merge, view

    events = generated_log(seed=5, people=20)
    rng = random.Random(11)
    folded: dict = {}
    for event in events:
        absorb(folded, event, event_key(event))
    for _ in range(3):
        rng.shuffle(events)
        merged: dict = {}
        for event in events:
            merged = merge(merged, absorb({}, event, event_key(event)))
        assert view(merged) == view(folded)


def test_folding_in_place_gives_merges_state_exactly_step_by_step():
    """Not only the same view: the same stored state after every event, amounts written as a
    client may write them included ("1e3", "-0", many currencies), since states are what a
    later merge (another profile, a replay) starts from."""
    from collector.profiles.rules import absorb, event_key, merge

    amounts = ["1e3", "-0", "0.10", 12.5, "7", 1, "1E-2", "123456789012345678901234567890.5"]
    for seed in range(10):
        rng = random.Random(seed)
        events = [ev("track", timestamp=at(rng.randrange(3600)), userId="u", event="Order Completed",
                     properties={"revenue": rng.choice(amounts), "currency": rng.choice(["eur", "GBP", None])})
                  for _ in range(60)]  # fmt: skip
        events += generated_log(seed=seed, people=3)
        rng.shuffle(events)
        folded: dict = {}
        merged: dict = {}
        for event in events:
            absorb(folded, event, event_key(event))
            merged = merge(merged, absorb({}, event, event_key(event)))
            assert folded == merged, f"seed {seed}"
