"""``engage/journeys/<key>.yaml``: a journey a file, the file's name its key::

    name: Abandoned cart
    entry: {event: Product Added, where: {field: properties.cart_id, op: exists}}   # or {audience: KEY}
    instance_key: properties.cart_id      # one run per person and cart (default: one per person)
    reentry: always                       # once (the default) | always | {after: 7d}
    exit_when: {field: event, value: Order Completed}   # any step; counted a conversion
    steps:
      - wait_for: {event: Order Completed, same_instance: true, timeout: 2h,
                   reset_on: {event: Product Added, same_instance: true}}   # or a list of them
        on_event: [{exit: converted}]     # optional; default: go on with the next step
        on_timeout: []                    # optional; default: go on with the next step
      - send: {destination: crm}          # a channel and its name (channels.py)
      - track: {event: Cart Reminder Sent, properties: {channel: webhook}}
      - wait: 1d                          # or {until: properties.expires_at, offset: -1h}
      - if: {field: properties.total, op: gt, value: 100}
        then: [{send: {destination: vip}}]
        else: [{exit: done}]
      - name: again                       # any step may be named, for a goto
        goto: again                       # a loop must hold a wait or a wait_for

``compile`` makes a program: a list of ``Node`` (an index is a run's position), each with ``next``
(the step after it; None: the run is complete) and, for ``if`` and ``wait_for``, ``alt`` (``else``;
the timeout). A run keeps the version it started on (``digest``) and the store keeps every
version's definition, so a change never strands a run.

``check(root)`` gives every mistake as ``file:line: reason``: an unknown step or key, a step that
cannot be reached (after an ``exit`` or a ``goto``), a ``wait_for`` without a ``timeout``, a loop
without a wait, a ``goto`` to no step, a ``send`` to a destination that has no file.

Conditions (``entry.where``, ``exit_when``, ``if``, a ``wait_for``'s ``where``) are the condition
language's, on fields of an event (``field:``): the entering event for ``if``, each new event of
the person for ``exit_when`` and ``wait_for``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from collector.engage.conditions import Compare, Condition, ConditionError, Field, duration, parse
from collector.engage.definitions import _KEY, _check_keys, _files, load_kind, problems

FOLDER = "journeys"
STEPS = ("wait", "wait_for", "if", "send", "track", "exit", "goto")
_OFFSET = re.compile(r"^([+-]?)\s*([0-9]+\s*[smhd])$")
MAX_STEPS = 500


@dataclass(frozen=True)
class Match:
    """An event a run waits for (or that restarts its timer): a name, a condition on its fields,
    and whether its instance key must be the run's."""

    event: str
    where: Condition | None = None
    same_instance: bool = False


@dataclass
class Node:
    kind: str
    line: int | None
    label: str = ""  # the step's name, or its kind and position ("2: send")
    next: int | None = None
    alt: int | None = None
    seconds: float | None = None  # wait: a duration; wait_for: the timeout
    until: tuple[str, ...] | None = None  # wait: a time in the entering event
    offset: float = 0.0
    condition: Condition | None = None  # if
    match: Match | None = None  # wait_for
    reset: tuple[Match, ...] | None = None  # wait_for's reset_on (one or a list)
    channel: str = ""  # send: destination | email
    target: str = ""  # send: its name; goto: the step's name
    event: str = ""  # track
    properties: dict = field(default_factory=dict)  # track
    reason: str = ""  # exit


@dataclass
class Journey:
    key: str
    name: str
    entry: Match
    instance_key: tuple[str, ...] | None
    reentry: str  # once | always | after
    reentry_after: float
    exit_when: Condition | None
    nodes: list[Node]
    start: int | None
    digest: str
    source: Any = None  # the definition as written (JSON), kept with the version
    path: str = ""

    def waits(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.kind in ("wait", "wait_for")]


def load(root: Path, environ: dict | None = None, destinations: set[str] | None = None) -> dict[str, Journey]:
    """Every journey under ``root/journeys`` (none without the folder); DefinitionError lists each mistake.
    ``destinations``: the names a ``send`` may use (default: the files of ``root/destinations``)."""
    if destinations is None:
        destinations = {p.stem for p in _files(Path(root) / "destinations")}
    templates = {p.stem for p in (Path(root) / "templates").glob("*.liquid")}
    return load_kind(root, FOLDER, lambda data, path: journey(data, path, destinations, templates=templates), environ)


def check(root: Path, environ: dict | None = None) -> list[str]:
    """The mistakes of the journeys under ``root`` (``file:line: reason`` each); none: []."""
    return problems(lambda: load(root, environ))


def journey(data: dict, path: Path, destinations: set[str] = frozenset(), *, key: str | None = None,
            templates: set[str] | None = None) -> Journey:
    """One journey from its mapping (``Located`` from ``load_yaml``, or plain JSON kept with a version)."""
    lines = getattr(data, "lines", {})
    key = key or path.stem
    if not _KEY.match(key):
        raise ConditionError(f"the file's name {key!r} is the journey's key: letters, digits, '_' and '-' (up to 100)")
    if hasattr(data, "lines"):
        _check_keys(data, {"name", "entry", "instance_key", "reentry", "exit_when", "steps", "description"}, {"entry", "steps"})
    name = data.get("name", key)
    if not isinstance(name, str) or not name:
        raise ConditionError("'name' is a text", lines.get("name"))
    entry = _entry(data["entry"], lines.get("entry"))
    instance = data.get("instance_key")
    if instance is not None and (not isinstance(instance, str) or not all(instance.split("."))):
        raise ConditionError("'instance_key' is a dotted path of the entering event, such as properties.cart_id",
                             lines.get("instance_key"))  # fmt: skip
    reentry, after = _reentry(data.get("reentry", "once"), lines.get("reentry"))
    exit_when = parse(data["exit_when"], people=False) if data.get("exit_when") is not None else None
    steps = data["steps"]
    if not isinstance(steps, list) or not steps:
        raise ConditionError("'steps' is a non-empty list of steps", lines.get("steps"))
    program = _Compiler(destinations, instance is not None)
    program.templates = templates  # the names a send: {email: NAME} may use (None: not checked)
    start = program.steps(steps, None, lines.get("steps") or getattr(data, "line", None))
    program.resolve()
    program.reachable(start)
    program.loops()
    source = orjson.loads(orjson.dumps(data, default=str))
    digest = hashlib.blake2b(orjson.dumps(source, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
    return Journey(key, name, entry, tuple(instance.split(".")) if instance else None, reentry, after, exit_when,
                   program.nodes, start, digest, source, str(path))  # fmt: skip


def _entry(data: Any, line: int | None) -> Match:
    line = getattr(data, "line", None) or line
    if not isinstance(data, dict):
        raise ConditionError("'entry' is {event: NAME, where: CONDITION} or {audience: KEY}", line)
    if "audience" in data:
        if set(data) != {"audience"} or not isinstance(data["audience"], str) or not data["audience"]:
            raise ConditionError("an audience entry is {audience: KEY} alone", line)
        where = Field(("properties", "audience_key"), Compare("eq", data["audience"]))
        return Match("Audience Entered", where)
    return _match(data, line, "entry", allow_instance=False)


def _match(data: Any, line: int | None, what: str, *, allow_instance: bool = True, instance: bool = True) -> Match:
    line = getattr(data, "line", None) or line
    if isinstance(data, str):
        return Match(data)
    if not isinstance(data, dict) or not isinstance(data.get("event"), str) or not data.get("event"):
        raise ConditionError(f"{what!r} names an event: {{event: NAME, where: CONDITION}}", line)
    allowed = {"event", "where"} | ({"same_instance"} if allow_instance else set())
    if what == "wait_for":
        allowed |= {"timeout", "reset_on"}
    for k in data:
        if k not in allowed:
            raise ConditionError(f"unknown key {k!r} in {what!r} (allowed: {', '.join(sorted(allowed))})",
                                 getattr(data, "lines", {}).get(k, line))  # fmt: skip
    same = data.get("same_instance", False)
    if not isinstance(same, bool):
        raise ConditionError("'same_instance' is true or false", line)
    if same and not instance:
        raise ConditionError("'same_instance' needs the journey's 'instance_key'", line)
    where = parse(data["where"], people=False) if data.get("where") is not None else None
    return Match(data["event"], where, same)


def _reentry(value: Any, line: int | None) -> tuple[str, float]:
    if value in ("once", "always"):
        return value, 0.0
    if isinstance(value, dict) and set(value) == {"after"}:
        return "after", duration(value["after"], line)
    raise ConditionError(f"'reentry' is once, always or {{after: 7d}}, not {value!r}", line)


def _offset(text: Any, line: int | None) -> float:
    match = _OFFSET.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ConditionError(f"'offset' is a duration with a sign, such as -1h or 30m, not {text!r}", line)
    return -duration(match.group(2), line) if match.group(1) == "-" else duration(match.group(2), line)


class _Compiler:
    """Steps into nodes, each list compiled last step first (so every ``next`` is known)."""

    def __init__(self, destinations: set[str], instance: bool) -> None:
        self.nodes: list[Node] = []
        self.labels: dict[str, int] = {}
        self.destinations, self.instance = destinations, instance
        self.templates: set[str] | None = None

    def steps(self, steps: Any, cont: int | None, line: int | None) -> int | None:
        if not isinstance(steps, list):
            raise ConditionError("a list of steps is expected here", line)
        for step in reversed(steps):  # a step after an exit or a goto has no way in: ``reachable`` says so
            cont = self.step(step, cont, getattr(step, "line", None) or line)
        return cont

    def step(self, step: Any, cont: int | None, line: int | None) -> int:
        if len(self.nodes) >= MAX_STEPS:
            raise ConditionError(f"a journey has at most {MAX_STEPS} steps", line)
        if not isinstance(step, dict):
            raise ConditionError(f"a step is a mapping with one of {', '.join(STEPS)}", line)
        lines = getattr(step, "lines", {})
        kinds = [k for k in STEPS if k in step]
        if len(kinds) != 1:
            unknown = [str(k) for k in step if k not in STEPS and k not in ("name", "then", "else", "on_event", "on_timeout")]
            if unknown:
                raise ConditionError(f"unknown step {unknown[0]!r}: a step is one of {', '.join(STEPS)}",
                                     lines.get(unknown[0], line))  # fmt: skip
            raise ConditionError(f"a step has exactly one of {', '.join(STEPS)}" + (f"; this has {', '.join(kinds)}" if kinds else ""),
                                 line)  # fmt: skip
        kind = kinds[0]
        extra = {"if": {"then", "else"}, "wait_for": {"on_event", "on_timeout"}}.get(kind, set())
        for k in step:
            if k not in {kind, "name"} | extra:
                raise ConditionError(f"unknown key {k!r} in a {kind} step (allowed: {', '.join(sorted({kind, 'name'} | extra))})",
                                     lines.get(k, line))  # fmt: skip
        line = lines.get(kind, line)
        value = step[kind]
        node = Node(kind, line, next=cont)
        if kind == "wait":
            if isinstance(value, dict):
                if "until" not in value or set(value) - {"until", "offset"}:
                    raise ConditionError("'wait' is a duration (2h) or {until: properties.expires_at, offset: -1h}", line)
                if not isinstance(value["until"], str) or not all(value["until"].split(".")):
                    raise ConditionError("'until' is a dotted path of the entering event holding an ISO 8601 time", line)
                node.until = tuple(value["until"].split("."))
                node.offset = _offset(value["offset"], line) if value.get("offset") is not None else 0.0
            else:
                node.seconds = duration(value, line)
        elif kind == "wait_for":
            node.match = _match(value, line, "wait_for", instance=self.instance)
            if not isinstance(value, dict) or value.get("timeout") is None:
                raise ConditionError("a 'wait_for' needs a 'timeout' (how long to wait for the event: 2h)", line)
            node.seconds = duration(value["timeout"], line)
            if value.get("reset_on") is not None:
                resets = value["reset_on"] if isinstance(value["reset_on"], list) else [value["reset_on"]]
                node.reset = tuple(_match(r, line, "reset_on", instance=self.instance) for r in resets)
            if "on_timeout" in step:
                node.alt = self.steps(step["on_timeout"], cont, lines.get("on_timeout", line))
            else:
                node.alt = cont
            if "on_event" in step:
                node.next = self.steps(step["on_event"], cont, lines.get("on_event", line))
        elif kind == "if":
            node.condition = parse(value, people=False)
            if "then" not in step:
                raise ConditionError("an 'if' needs 'then' (the steps when it holds; 'else' when it does not)", line)
            node.next = self.steps(step["then"], cont, lines.get("then", line))
            node.alt = self.steps(step["else"], cont, lines.get("else", line)) if "else" in step else cont
        elif kind == "send":
            from collector.engage.journeys.channels import CHANNELS

            if not isinstance(value, dict) or len(value) != 1:
                raise ConditionError(f"'send' is one channel and its name: {{destination: NAME}} (channels: {', '.join(CHANNELS)})", line)
            ((channel, target),) = value.items()
            if channel not in CHANNELS:
                raise ConditionError(f"unknown channel {channel!r}: the channels are {', '.join(CHANNELS)}", line)
            reason = CHANNELS[channel].check(target, self)
            if reason:
                raise ConditionError(reason, line)
            node.channel, node.target = channel, target
        elif kind == "track":
            if not isinstance(value, dict) or not isinstance(value.get("event"), str) or not value["event"] or set(value) - {"event", "properties"}:
                raise ConditionError("'track' is {event: NAME, properties: {...}}", line)
            props = value.get("properties", {})
            if not isinstance(props, dict):
                raise ConditionError("'properties' of a track is a mapping", line)
            node.event, node.properties = value["event"], orjson.loads(orjson.dumps(props, default=str))
        elif kind == "exit":
            if value is not None and not isinstance(value, str):
                raise ConditionError("'exit' takes a reason (a text) or nothing", line)
            node.reason, node.next = value or "exit", None
        elif kind == "goto":
            if not isinstance(value, str) or not value:
                raise ConditionError("'goto' names a step (its 'name')", line)
            node.target, node.next = value, None
        label = step.get("name")
        index = len(self.nodes)
        if label is not None:
            if not isinstance(label, str) or not _KEY.match(label):
                raise ConditionError("a step's 'name' is letters, digits, '_' and '-'", lines.get("name", line))
            if label in self.labels:
                raise ConditionError(f"two steps are named {label!r}", lines.get("name", line))
            self.labels[label] = index
        node.label = label or (f"{kind}@{line}" if line else f"{kind}#{index}")
        self.nodes.append(node)
        return index

    def resolve(self) -> None:
        for node in self.nodes:
            if node.kind == "goto":
                if node.target not in self.labels:
                    raise ConditionError(f"'goto' names {node.target!r}, and no step has that name", node.line)
                node.next = self.labels[node.target]

    def successors(self, i: int) -> list[int]:
        node = self.nodes[i]
        return [j for j in (node.next, node.alt) if j is not None]

    def reachable(self, start: int | None) -> None:
        seen, todo = set(), [start] if start is not None else []
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            todo += self.successors(i)
        missed = [n for i, n in enumerate(self.nodes) if i not in seen]
        if missed:
            first = min(missed, key=lambda n: n.line or 0)
            raise ConditionError(f"this {first.kind} step is never reached (it follows an exit or a goto)", first.line)

    def loops(self) -> None:
        """A cycle of steps none of which waits would run for ever in one moment: refused."""
        state: dict[int, int] = {}

        def visit(i: int) -> Node | None:
            if self.nodes[i].kind in ("wait", "wait_for"):
                return None
            if state.get(i) == 1:
                return self.nodes[i]
            if state.get(i) == 2:
                return None
            state[i] = 1
            for j in self.successors(i):
                found = visit(j)
                if found:
                    return found
            state[i] = 2
            return None

        for i in range(len(self.nodes)):
            found = visit(i)
            if found:
                raise ConditionError("these steps loop without a wait or a wait_for: the run would never stop", found.line)


def version_of(key: str, source: Any, destinations: set[str] | None = None) -> Journey:
    """A version kept in the store, compiled again (its destinations are not checked again)."""
    return journey(source, Path(f"{key}.yaml"), _Any(), key=key)


class _Any(frozenset):
    def __contains__(self, item) -> bool:  # every destination name passes: the version was checked when it started
        return True


def instance_of(journey: Journey, event: dict) -> str | None:
    """The run's instance: the value at ``instance_key`` as text ("" without one); None: the event has none."""
    if journey.instance_key is None:
        return ""
    from collector.engage.conditions import lookup

    value = lookup(event, journey.instance_key)
    if value is None or isinstance(value, (dict, list)):
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


__all__ = ["Journey", "Node", "Match", "load", "check", "journey", "version_of", "instance_of", "All"]
