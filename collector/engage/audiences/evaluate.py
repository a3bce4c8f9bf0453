"""One person's answers: their computed traits and the audiences they are in, at a moment.

The live evaluation (``live.py``, in the profile builder) and the batch one (``batch.py``, straight
from the log) differ only in where a person's traits and events come from; both answer here::

    answer = evaluate(definitions, traits, hits, now)
    answer.members        # the keys of the audiences the person is in
    answer.computed       # computed trait name -> value (absent: no value)
    answer.next_change    # the next moment an answer can change on time alone (None: never)

``hits`` maps a tally's id to the person's events it counts, as ``Hit(time, key, value)``: the
event's time in epoch seconds, its key (``timestamp|messageId``, the order of events) and, for a
computed trait's tally, the property's value. A window counts the events whose time is after
``now - within``, so an event leaves it at ``time + within``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from collector.engage.conditions import Subject, holds, next_change
from collector.engage.definitions import Definitions, TraitDef


def epoch(iso: str) -> float:
    """An event key's time (ISO 8601) in epoch seconds; 0 when it has none."""
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


UNIQUE_LIST_MAX = 100  # values kept in a unique_list (the first ones seen)


class Hit(NamedTuple):
    time: float
    key: str
    value: Any = None


@dataclass
class Answer:
    members: set[str]
    computed: dict[str, Any]
    next_change: float | None


def evaluate(definitions: Definitions, traits: dict, hits: dict[str, list[Hit]], now: float) -> Answer:
    """The person's computed traits, then their audiences in order (each after those it names)."""
    for found in hits.values():
        found.sort(key=lambda h: h.key)
    computed: dict[str, Any] = {}
    moments: list[float] = []
    for trait in definitions.traits.values():
        mine = hits.get(trait.tally.id, ())
        if trait.within is not None:
            since = now - trait.within
            mine = [h for h in mine if h.time > since]
            moments.extend(h.time + trait.within for h in mine)
        value = trait_value(trait, mine)
        if value is not None:
            computed[trait.name] = value
    members: set[str] = set()
    subject = Subject(traits={**traits, **computed}, member=members.__contains__,
                      history=lambda tally: [h.time for h in hits.get(tally.id, ())], now=now)  # fmt: skip
    for key, audience in definitions.audiences.items():
        if holds(audience.condition, subject):
            members.add(key)
        if audience.windowed:
            moment = next_change(audience.condition, subject, audience.windowed)
            if moment is not None:
                moments.append(moment)
    return Answer(members, computed, min(moments) if moments else None)


def trait_value(trait: TraitDef, hits) -> Any:
    """A computed trait over the hits in its window, in key order (None: no value)."""
    kind = trait.kind
    if kind == "count":
        return len(hits)
    values = [h.value for h in hits if h.value is not None]
    if not values:
        return None
    if kind in ("sum", "min", "max"):
        numbers = [v for v in values if v.__class__ in (int, float)]
        if not numbers:
            return None
        return sum(numbers) if kind == "sum" else (min(numbers) if kind == "min" else max(numbers))
    if kind == "first":
        return values[0]
    if kind == "last":
        return values[-1]
    hashable = [_hashable(v) for v in values]
    if kind == "most_frequent":  # the most seen; of those seen as often, the one seen last
        counts = Counter(hashable)
        best = max(counts.values())
        return next(values[i] for i in range(len(values) - 1, -1, -1) if counts[hashable[i]] == best)
    seen, out = set(), []  # unique_list: in the order first seen
    for value, key in zip(values, hashable):
        if key not in seen:
            seen.add(key)
            out.append(value)
            if len(out) == UNIQUE_LIST_MAX:
                break
    return out


def _hashable(value: Any) -> Any:
    import orjson

    if value.__class__ is bool:  # true is not 1 (as in conditions), though Python hashes them alike
        return ("bool", value)
    return value if value.__class__ in (str, int, float) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
