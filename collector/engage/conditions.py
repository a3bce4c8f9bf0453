"""The one condition language (DESIGN.md, "Using the data"): parse, check, evaluate.

Audiences, computed traits, destination filters, journey entries, branches and exits, and content
variants all say "who" or "which event" in it::

    all: [C, ...]   any: [C, ...]   not: C
    field: properties.revenue   op: gt   value: 50     # the event at hand (a dotted path)
    trait: plan                 op: eq   value: pro    # the person's traits and computed traits
    audience: high_value                               # the person is a member
    event: Order Completed                             # the person's history: how many such events
    where: {field: properties.revenue, op: gt, value: 50}
    count: {op: gte, value: 2}                         # default: at least one
    within: 30d                                        # in the last s/m/h/d; without it, ever

``parse(data)`` gives a ``Condition`` or raises ``ConditionError`` (a sentence, and the line of
the YAML it is about when the data came from ``definitions.load_yaml``). ``holds(condition,
subject)`` evaluates it: the subject gives the event at hand, the person's traits, their
audiences and, per ``Tally`` (an event name with its ``where``), the times of their matching
events. ``next_change`` is the next moment a windowed answer can change on time alone.

The operators, on a value that may be missing (missing and ``null`` are the same: no value)::

    eq ne            equal / not equal; numbers by value (1 == 1.0; true is not 1), else by type and value
    gt gte lt lte    both numbers, or both strings (ISO times order as text); anything else: false
    in not_in        the value is (is not) equal to one of a list
    contains         a string holding the text, or a list holding an equal item
    starts_with      a string starting with the text
    exists           has a value (``value: false``: has none)

``ne`` and ``not_in`` hold for a missing value (it equals nothing); every other operator but
``exists`` and ``eq null`` needs a value to hold.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, Iterable, Protocol

import orjson

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with", "exists")
COUNT_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^([0-9]+)\s*([smhd])$")
_MISSING = object()


class ConditionError(ValueError):
    """A condition that cannot be used: ``reason`` is a sentence, ``line`` (1-based) where it is, when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line

    def at(self, path: str) -> str:
        return f"{path}:{self.line}: {self.reason}" if self.line else f"{path}: {self.reason}"


# --- the parsed forms ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Compare:
    op: str
    value: Any

    def test(self, got: Any) -> bool:
        return _OPS[self.op](got, self.value)


@dataclass(frozen=True)
class All:
    items: tuple


@dataclass(frozen=True)
class Any_:
    items: tuple


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    compare: Compare


@dataclass(frozen=True)
class Trait:
    path: tuple[str, ...]
    compare: Compare


@dataclass(frozen=True)
class Audience:
    key: str
    line: int | None = dc_field(default=None, compare=False)  # where it is named, for a mistake's line


@dataclass(frozen=True)
class Tally:
    """Which of a person's events count: a name and a condition on the event's fields; with
    ``prop``, the value each one gives (a computed trait's ``property``). ``id`` names it in the database."""

    event: str
    where: Any = None  # a condition of Field, All, Any_, Not only
    prop: tuple[str, ...] | None = None
    source: str = dc_field(default="", compare=False)  # canonical JSON, for the id
    id: str = dc_field(default="", compare=False)  # a hash of ``source``: the tally's name in the database

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", hashlib.blake2b(self.source.encode(), digest_size=8).hexdigest())

    def matches(self, event: dict) -> bool:
        if event.get("event") != self.event:
            return False
        if self.where is not None and not holds(self.where, Subject(event=event)):
            return False
        return self.prop is None or lookup(event, self.prop) is not None

    def value(self, event: dict) -> Any:
        return None if self.prop is None else lookup(event, self.prop)


@dataclass(frozen=True)
class Event:
    tally: Tally
    count: Compare = Compare("gte", 1)
    within: float | None = None  # seconds


Condition = All | Any_ | Not | Field | Trait | Audience | Event


class History(Protocol):
    def __call__(self, tally: Tally) -> list[float]: ...


@dataclass
class Subject:
    """What a condition is evaluated against. ``history(tally)``: the epoch seconds of the person's
    events the tally counts; ``member(key)``: whether they are in that audience."""

    event: dict | None = None
    traits: dict = dc_field(default_factory=dict)
    member: Callable[[str], bool] = lambda key: False
    history: Callable[[Tally], list[float]] = lambda tally: []
    now: float = 0.0


# --- parsing ---------------------------------------------------------------------------------------
def parse(data: Any, *, fields: bool = True, people: bool = True, line: int | None = None) -> Condition:
    """A condition from its YAML/JSON form. ``fields``: ``field`` may be used (there is an event at
    hand); ``people``: ``trait``, ``audience`` and ``event`` may be used (there is a person);
    ``line``: where the condition is, when it is not a mapping that knows its own."""
    return _parse(data, fields, people, getattr(data, "line", None) or line)


def _parse(data: Any, fields: bool, people: bool, line: int | None) -> Condition:
    line = getattr(data, "line", None) or line
    if not isinstance(data, dict):
        raise ConditionError(f"a condition is a mapping (all, any, not, field, trait, audience or event), not {_shown(data)}", line)
    kinds = [k for k in ("all", "any", "not", "field", "trait", "audience", "event") if k in data]
    if len(kinds) != 1:
        said = f"both {kinds[0]!r} and {kinds[1]!r}" if kinds else f"none of them (keys: {', '.join(map(str, data)) or 'none'})"
        raise ConditionError(f"a condition has exactly one of all, any, not, field, trait, audience or event; this has {said}", line)
    kind = kinds[0]
    line = _line_of(data, kind, line)
    if kind in ("all", "any"):
        _only(data, {kind}, line)
        items = data[kind]
        if not isinstance(items, list) or not items:
            raise ConditionError(f"{kind!r} takes a non-empty list of conditions", line)
        parsed = tuple(_parse(item, fields, people, _line_of(items, i, line)) for i, item in enumerate(items))
        return All(parsed) if kind == "all" else Any_(parsed)
    if kind == "not":
        _only(data, {"not"}, line)
        return Not(_parse(data["not"], fields, people, line))
    if kind == "field":
        if not fields:
            raise ConditionError("'field' is a field of the event at hand, and here there is none: "
                                 "use 'trait' for the person, or 'event' with 'where' for their events", line)  # fmt: skip
        _only(data, {"field", "op", "value"}, line)
        return Field(_path(data["field"], "field", line), _compare(data, line))
    if not people:
        raise ConditionError(f"{kind!r} is about a person, and here there is only an event: use 'field'", line)
    if kind == "trait":
        _only(data, {"trait", "op", "value"}, line)
        return Trait(_path(data["trait"], "trait", line), _compare(data, line))
    if kind == "audience":
        _only(data, {"audience"}, line)
        key = data["audience"]
        if not isinstance(key, str) or not key:
            raise ConditionError(f"'audience' names an audience by its key, not {_shown(key)}", line)
        return Audience(key, line)
    _only(data, {"event", "where", "count", "within"}, line)
    within = duration(data["within"], _line_of(data, "within", line)) if data.get("within") is not None else None
    return Event(tally(data["event"], data.get("where"), line=line, where_line=_line_of(data, "where", line)), _count(data.get("count"), _line_of(data, "count", line)), within)


def tally(name: Any, where: Any = None, prop: Any = None, *, line: int | None = None,
          where_line: int | None = None, prop_line: int | None = None) -> Tally:
    """The tally of events named ``name`` matching ``where`` (and having ``prop``, a dotted path);
    ``line`` is the name's, ``where_line`` and ``prop_line`` the others' (default: the name's)."""
    if not isinstance(name, str) or not name:
        raise ConditionError(f"'event' names an event (its 'event' field, e.g. Order Completed), not {_shown(name)}", line)
    parsed = None if where is None else _parse(where, True, False, _line_of(where, None, where_line or line))
    path = None if prop is None else _path(prop, "property", prop_line or line)
    source = orjson.dumps([name, where, prop], option=orjson.OPT_SORT_KEYS).decode()
    return Tally(name, parsed, path, source)


def duration(text: Any, line: int | None = None) -> float:
    """Seconds in ``30d``, ``2h``, ``15m``, ``10s``."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or int(match.group(1)) == 0:
        raise ConditionError(f"{_shown(text)} is not a duration: write a whole number and s, m, h or d (30d, 2h, 15m, 10s)", line)
    return float(int(match.group(1)) * UNITS[match.group(2)])


def _compare(data: dict, line: int | None) -> Compare:
    op = data.get("op", "eq")
    if op not in OPS:
        raise ConditionError(f"unknown operator {_shown(op)}: use one of {', '.join(OPS)}", _line_of(data, "op", line))
    line = _line_of(data, "value", line)
    if op == "exists":
        value = data.get("value", True)
        if not isinstance(value, bool):
            raise ConditionError(f"'exists' takes value true or false, not {_shown(value)}", line)
        return Compare(op, value)
    if "value" not in data:
        raise ConditionError(f"operator {op!r} needs a 'value'", _line_of(data, "op", line))
    value = data["value"]
    if op in ("in", "not_in"):
        if not isinstance(value, list):
            raise ConditionError(f"{op!r} takes a list of values, not {_shown(value)}", line)
        return Compare(op, tuple(_plain(v) for v in value))
    if op in ("gt", "gte", "lt", "lte") and (_number(value) is None and not isinstance(value, str)):
        raise ConditionError(f"{op!r} compares numbers or strings, not {_shown(value)}", line)
    if op == "starts_with" and not isinstance(value, str):
        raise ConditionError(f"'starts_with' takes a string, not {_shown(value)}", line)
    if op == "contains" and isinstance(value, (list, dict)):
        raise ConditionError(f"'contains' takes one value (a text, or an item of a list), not {_shown(value)}", line)
    return Compare(op, _plain(value))


def _count(data: Any, line: int | None) -> Compare:
    if data is None:
        return Compare("gte", 1)
    line = getattr(data, "line", None) or line
    if not isinstance(data, dict) or "value" not in data:
        raise ConditionError(f"'count' is {{op: gte, value: 2}} (op one of {', '.join(COUNT_OPS)}), not {_shown(data)}", line)
    _only(data, {"op", "value"}, line)
    op = data.get("op", "eq")
    if op not in COUNT_OPS:
        raise ConditionError(f"unknown count operator {_shown(op)}: use one of {', '.join(COUNT_OPS)}", line)
    value = data["value"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConditionError(f"a count is a whole number of events (0 or more), not {_shown(value)}", line)
    return Compare(op, value)


def _path(text: Any, what: str, line: int | None) -> tuple[str, ...]:
    if not isinstance(text, str) or not text or any(not part for part in text.split(".")):
        raise ConditionError(f"{what!r} is a dotted path such as properties.revenue, not {_shown(text)}", line)
    return tuple(text.split("."))


def _only(data: dict, allowed: set, line: int | None) -> None:
    extra = sorted(str(k) for k in data if k not in allowed)
    if extra:
        raise ConditionError(f"unknown key {extra[0]!r} here (allowed: {', '.join(sorted(allowed))})", _line_of(data, extra[0], line))


def _line_of(data: Any, key: Any, line: int | None) -> int | None:
    lines = getattr(data, "lines", None)
    if lines and key in lines:
        return lines[key]
    return getattr(data, "line", None) or line


def _shown(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: Any) -> Any:
    """A value as compared: lists as tuples (hashable, equal as lists are), mappings (a YAML file's
    ``Located`` too) as plain dicts of such values."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# --- evaluation ------------------------------------------------------------------------------------
def lookup(data: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or None."""
    for part in path:
        if data.__class__ is not dict:
            return None
        data = data.get(part)
        if data is None:
            return None
    return data


def holds(condition: Condition, subject: Subject) -> bool:
    kind = condition.__class__
    if kind is Field:
        return condition.compare.test(lookup(subject.event, condition.path) if subject.event is not None else None)
    if kind is Trait:
        return condition.compare.test(lookup(subject.traits, condition.path))
    if kind is All:
        return all(holds(c, subject) for c in condition.items)
    if kind is Any_:
        return any(holds(c, subject) for c in condition.items)
    if kind is Not:
        return not holds(condition.item, subject)
    if kind is Audience:
        return subject.member(condition.key)
    times = subject.history(condition.tally)
    if condition.within is not None:
        since = subject.now - condition.within
        n = sum(1 for t in times if t > since)
    else:
        n = len(times)
    return condition.count.test(n)


def next_change(condition: Condition, subject: Subject, windowed: list[Event] | None = None) -> float | None:
    """The earliest moment after ``subject.now`` when a windowed ``event`` of the condition loses an
    event to time (the answer may change then, with no new event); None when none can.
    ``windowed``: the condition's ``windowed(condition)``, when the caller keeps it."""
    moments = [t + e.within for e in (windowed if windowed is not None else windowed_events(condition))
               for t in subject.history(e.tally) if t + e.within > subject.now]  # fmt: skip
    return min(moments) if moments else None


def windowed_events(condition: Condition) -> list[Event]:
    return [e for e in events_of(condition) if e.within is not None]


def walk(condition: Condition) -> Iterable[Condition]:
    yield condition
    if condition.__class__ in (All, Any_):
        for item in condition.items:
            yield from walk(item)
    elif condition.__class__ is Not:
        yield from walk(condition.item)


def events_of(condition: Condition) -> list[Event]:
    return [c for c in walk(condition) if c.__class__ is Event]


def audiences_of(condition: Condition) -> set[str]:
    return {c.key for c in walk(condition) if c.__class__ is Audience}


def traits_of(condition: Condition) -> set[str]:
    """The traits a condition reads (their first path part)."""
    return {c.path[0] for c in walk(condition) if c.__class__ is Trait}


# --- the operators ---------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    return value if value.__class__ in (int, float) else None


def _eq(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if got.__class__ in (list, dict):
        got = _plain(got)
    a, b = _number(got), _number(want)
    if a is not None or b is not None:
        return a is not None and b is not None and a == b
    return got.__class__ is want.__class__ and got == want


def _order(got: Any, want: Any, test: Callable[[Any, Any], bool]) -> bool:
    a, b = _number(got), _number(want)
    if a is not None and b is not None:
        return test(a, b)
    return got.__class__ is str and want.__class__ is str and test(got, want)


def _contains(got: Any, want: Any) -> bool:
    if got.__class__ is str:
        return want.__class__ is str and want in got
    if got.__class__ is list:
        return any(_eq(item, want) for item in got)
    return False


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _eq,
    "ne": lambda got, want: not _eq(got, want),
    "gt": lambda got, want: _order(got, want, lambda a, b: a > b),
    "gte": lambda got, want: _order(got, want, lambda a, b: a >= b),
    "lt": lambda got, want: _order(got, want, lambda a, b: a < b),
    "lte": lambda got, want: _order(got, want, lambda a, b: a <= b),
    "in": lambda got, want: any(_eq(got, w) for w in want),
    "not_in": lambda got, want: not any(_eq(got, w) for w in want),
    "contains": _contains,
    "starts_with": lambda got, want: got.__class__ is str and got.startswith(want),
    "exists": lambda got, want: (got is not None) is want,
}
