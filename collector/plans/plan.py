"""One tracking plan: a file of JSON Schemas (draft 2020-12), compiled once, checked per event.

A plan file (YAML or JSON)::

    track:                       # event name -> the schema of its properties
      Order Completed:
        type: object
        properties: {revenue: {type: number}}
        required: [revenue]
    page: {type: object}         # the schema of properties
    screen: {type: object}
    identify: {type: object}     # the schema of traits
    group: {type: object}
    unplanned: flag              # allow | flag | reject: a track whose event the plan does not list

A key left out checks nothing. ``Plan.violations(message)`` is ``[]`` for a message that
follows the plan, else ``[{"path", "code", "message"}]``: ``path`` a JSON pointer into the
message, ``code`` the JSON Schema keyword that failed (``type``, ``required``, ``enum``,
``format``, ...) or ``unplanned_event``. Schemas are compiled with jsonschema-rs (the faster
of the two measured: bench/README.md, "Tracking plans"), with formats checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.config import ConfigError

# jsonschema_rs is imported where a plan is compiled: a collector without tracking plans never
# loads it (about 4 MB of its resident memory; bench/README, issue 19).

UNPLANNED = ("allow", "flag", "reject")
PROPERTY_CALLS = ("page", "screen")  # schema of properties
TRAIT_CALLS = ("identify", "group")  # schema of traits
KEYS = ("track", *PROPERTY_CALLS, *TRAIT_CALLS, "unplanned")
UNPLANNED_LABEL = "(unplanned)"  # the metrics' event label of an event the plan does not list
MAX_VIOLATIONS = 20  # per message: a message of a thousand wrong fields is not stored with a thousand
MAX_TEXT = 200  # characters of a violation's message (it quotes the value)


class PlanError(ConfigError):
    """A plan file that cannot be used; the message names the file and what is wrong."""


def _compile(schema: Any, where: str, path: Path) -> jsonschema_rs.Draft202012Validator:
    import jsonschema_rs

    if not isinstance(schema, (dict, bool)):
        raise PlanError(f"tracking plan {str(path)!r}: {where} must be a JSON Schema (an object)")
    try:
        return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    except (jsonschema_rs.ValidationError, ValueError, jsonschema_rs.ReferencingError) as exc:
        first = str(exc).split("\n", 1)[0]
        raise PlanError(f"tracking plan {str(path)!r}: {where} is not a valid JSON Schema: {first}") from None


def read_file(path: Path) -> dict:
    """The plan file as a mapping: ``.json`` is JSON, anything else YAML (a superset of JSON)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read tracking plan {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        raw = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if Path(path).suffix == ".json" else "YAML"
        raise PlanError(f"tracking plan {str(path)!r} is not valid {kind}: {str(exc).splitlines()[0]}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PlanError(f"tracking plan {str(path)!r} must be a mapping with the keys {', '.join(KEYS)}")
    return raw


@dataclass(frozen=True)
class Plan:
    """A compiled plan; ``Plan.load(path)`` or ``Plan.from_mapping(raw)``."""

    track: dict[str, Any] = field(default_factory=dict)  # event name -> compiled validator
    calls: dict[str, Any] = field(default_factory=dict)  # page/screen/identify/group -> compiled validator
    unplanned: str = "allow"
    path: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return cls.from_mapping(read_file(Path(path)), Path(path))

    @classmethod
    def from_mapping(cls, raw: dict, path: Path = Path("(plan)")) -> Plan:
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            raise PlanError(f"tracking plan {str(path)!r}: unknown keys {unknown} (it may have {', '.join(KEYS)})")
        unplanned = raw.get("unplanned", "allow")
        if unplanned not in UNPLANNED:
            raise PlanError(f"tracking plan {str(path)!r}: unplanned must be one of {', '.join(UNPLANNED)}")
        events = raw.get("track") or {}
        if not isinstance(events, dict):
            raise PlanError(f"tracking plan {str(path)!r}: track must map event names to schemas")
        track = {str(name): _compile(schema, f"track.{name}", path) for name, schema in events.items()}
        calls = {call: _compile(raw[call], call, path) for call in (*PROPERTY_CALLS, *TRAIT_CALLS) if raw.get(call) is not None}
        return cls(track, calls, unplanned, str(path))

    def event_label(self, message: dict) -> str:
        """The metrics' event label: a planned event's name, else the call (bounded, whatever clients send)."""
        if message.get("type") == "track":
            event = message.get("event")
            return event if isinstance(event, str) and event in self.track else UNPLANNED_LABEL
        return str(message.get("type"))

    def violations(self, message: dict) -> list[dict]:
        """What in a validated message does not follow the plan ([] when it does)."""
        kind = message.get("type")
        if kind == "track":
            event = message.get("event")
            validator = self.track.get(event) if isinstance(event, str) else None
            if validator is None:
                if self.unplanned == "allow":
                    return []
                return [{"path": "/event", "code": "unplanned_event", "message": "the tracking plan does not list this event"}]
            field_name = "properties"
        else:
            validator = self.calls.get(kind)
            if validator is None:
                return []
            field_name = "traits" if kind in TRAIT_CALLS else "properties"
        instance = message.get(field_name)
        if instance is None:
            instance = {}
        if validator.is_valid(instance):  # the common case: one pass, no error objects
            return []
        found = []
        for error in validator.iter_errors(instance):
            pointer = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in error.instance_path)
            code = str(error.schema_path[-1]) if error.schema_path else "schema"
            found.append({"path": f"/{field_name}{pointer}", "code": code, "message": error.message[:MAX_TEXT]})
            if len(found) == MAX_VIOLATIONS:
                break
        return found
