"""``intilery plan infer``: a tracking plan drafted from stored events.

For every call (each ``track`` event name, ``page``, ``screen``, ``identify``, ``group``) the
draft describes the top-level fields of ``properties`` (or ``traits``): the JSON types seen,
``required`` when present in at least 99% of the events, an ``enum`` for strings of low
cardinality, a ``format`` (email, uri, date-time) when every value has it. Nested objects and
arrays are typed, not described further. The draft is a plan the data it came from passes:
every type, value and format is one that was seen (and formats are decided by the validator
that enforces them), with one deliberate exception: a field present in 99% (not all) of a
call's events is required, so the few events without it are what the draft flags; ``infer``
reports them (``Draft.outliers``) and ``intilery plan infer`` prints them on standard error.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import jsonschema_rs

REQUIRED_SHARE = 0.99  # present in at least this share of a call's events: required
ENUM_MAX = 10  # distinct strings at most, for an enum...
ENUM_REPEATS = 3  # ...each seen this many times on average (else it is free text that happens to repeat little)
FORMATS = {  # a cheap look first (most strings are none of these), then the validator decides
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    "uri": re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$"),
    "date-time": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"),
}
_FORMAT_CHECK = {name: jsonschema_rs.Draft202012Validator({"format": name}, validate_formats=True) for name in FORMATS}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass
class Field:
    """What was seen of one property across a call's events."""

    present: int = 0
    types: set[str] = field(default_factory=set)
    strings: Counter = field(default_factory=Counter)  # up to ENUM_MAX + 1 distinct, then given up
    too_many: bool = False
    formats: set[str] | None = None  # formats every string so far has (None: no string yet)

    def add(self, value: Any) -> None:
        self.present += 1
        kind = json_type(value)
        self.types.add(kind)
        if kind != "string":
            return
        if not self.too_many:
            self.strings[value] += 1
            self.too_many = len(self.strings) > ENUM_MAX
        if self.formats is None:
            self.formats = set(FORMATS)
        if self.formats:
            self.formats = {f for f in self.formats if FORMATS[f].match(value) and _FORMAT_CHECK[f].is_valid(value)}

    def schema(self) -> dict:
        types = sorted(self.types)
        if "integer" in self.types and "number" in self.types:
            types.remove("integer")  # every integer is a number
        out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
        if types == ["string"]:
            if not self.too_many and self.present >= ENUM_REPEATS * len(self.strings):
                out["enum"] = sorted(self.strings)
            elif self.formats:
                out["format"] = sorted(self.formats)[0]
        return out


@dataclass
class Call:
    """One call's events: how many, and each field of its properties or traits."""

    events: int = 0
    fields: dict[str, Field] = field(default_factory=dict)

    def add(self, values: dict) -> None:
        self.events += 1
        for key, value in values.items():
            self.fields.setdefault(key, Field()).add(value)

    def schema(self) -> dict:
        required = sorted(k for k, f in self.fields.items() if f.present >= REQUIRED_SHARE * self.events)
        out: dict[str, Any] = {"type": "object", "properties": {k: self.fields[k].schema() for k in sorted(self.fields)}}
        if required:
            out["required"] = required
        return out


@dataclass
class Draft:
    """A plan being drafted: ``add(event)`` for every stored event, then ``plan()``."""

    track: dict[str, Call] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)
    events: int = 0

    def add(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "track" and isinstance(event.get("event"), str):
            call = self.track.setdefault(event["event"], Call())
            values = event.get("properties")
        elif kind in ("page", "screen"):
            call = self.calls.setdefault(kind, Call())
            values = event.get("properties")
        elif kind in ("identify", "group"):
            call = self.calls.setdefault(kind, Call())
            values = event.get("traits")
        else:
            return  # alias: nothing a plan describes
        self.events += 1
        call.add(values if isinstance(values, dict) else {})

    def outliers(self) -> list[str]:
        """The required fields some events lack: ``"Product Viewed: category missing in 1 of 100 events"``."""
        found = []
        for name, call in [*sorted(self.track.items()), *sorted(self.calls.items())]:
            for key in call.schema().get("required", ()):
                missing = call.events - call.fields[key].present
                if missing:
                    found.append(f"{name}: {key} missing in {missing:,} of {call.events:,} events")
        return found

    def plan(self) -> dict:
        """The draft as a plan mapping (what ``plan.Plan.from_mapping`` takes); unplanned events are flagged."""
        out: dict[str, Any] = {"track": {name: self.track[name].schema() for name in sorted(self.track)}}
        for kind in ("page", "screen", "identify", "group"):
            if kind in self.calls:
                out[kind] = self.calls[kind].schema()
        out["unplanned"] = "flag"
        return out


def infer(events: Iterable[dict], progress: Callable[[int], None] | None = None, every: int = 100_000) -> Draft:
    """A draft of ``events`` (``.plan()`` the mapping); ``progress(n)`` is called every ``every`` events."""
    draft = Draft()
    for n, event in enumerate(events, 1):
        draft.add(event)
        if progress is not None and n % every == 0:
            progress(n)
    return draft
