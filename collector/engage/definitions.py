"""Definitions are files (DESIGN.md, "Using the data"): ``engage_dir`` (default ``engage/`` beside
the configuration file) holds one folder per kind::

    engage/audiences/<key>.yaml    key, name, condition, expose_to_browser
    engage/traits/<name>.yaml      name, kind, event, property, where, within

``load(folder)`` reads them all and checks them together (an audience naming one that does not
exist, or a circle of audiences, is refused); every mistake is a ``DefinitionError`` line
``file:line: reason``, all of them at once. A value written ``${NAME}`` is taken from the
environment. ``intilery engage check`` prints the same lines (``engage/cli.py``).

``load_yaml`` keeps the line of every mapping and key (``Located``), so a mistake deep in a
condition names its line.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.engage.conditions import (Audience, Condition, ConditionError, Tally, audiences_of, duration, parse, tally,
                                        walk, windowed_events)  # fmt: skip

KINDS = ("count", "sum", "min", "max", "first", "last", "most_frequent", "unique_list")
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")
_UNREADABLE = "\0"  # read(): a file that cannot be read is this and the sentence saying why
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class DefinitionError(ValueError):
    """Every mistake found, one ``file:line: reason`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Located(dict):
    """A YAML mapping that knows its line and each key's (1-based)."""

    line: int | None = None
    lines: dict


class LocatedList(list):
    """A YAML list that knows its line and each item's (``lines``: index -> line)."""

    line: int | None = None
    lines: dict


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    out = Located()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            taken = key in out
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "a key is a text, not a list or mapping", key_node.start_mark) from None
        if taken:
            raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice in one mapping (first on line {out.lines[key]})",
                                                    key_node.start_mark)  # fmt: skip
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    out = LocatedList(loader.construct_object(item, deep=True) for item in node.value)
    out.line, out.lines = node.start_mark.line + 1, {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
# YAML 1.1 reads ``NO`` (Norway), ``yes``, ``on`` and ``off`` as booleans, and ``2026-11-28`` as a
# date that equals no event's text: here only true/false are booleans and dates stay text.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_yaml(path: Path, environ: dict | None = None, text: str | None = None) -> Any:
    """A YAML (or JSON) file (or its ``text``) with ``${NAME}`` taken from the environment; raises ConditionError."""
    environ = os.environ if environ is None else environ
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConditionError(f"cannot read it: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        for name in _VARIABLE.findall(line):
            if name not in environ:
                raise ConditionError(f"${{{name}}} is not set in the environment", number)
    text = _VARIABLE.sub(lambda m: environ[m.group(1)], text)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConditionError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", mark.line + 1 if mark else None) from None


@dataclass(frozen=True)
class AudienceDef:
    key: str
    name: str
    condition: Condition
    expose_to_browser: bool = False
    digest: str = ""  # of the definition's meaning: a change of it is a new definition (backfilled)
    windowed: tuple = ()  # the condition's events with a window (what can change it on time alone)


@dataclass(frozen=True)
class TraitDef:
    name: str
    kind: str
    tally: Tally
    within: float | None = None
    digest: str = ""


@dataclass
class Definitions:
    audiences: dict[str, AudienceDef] = field(default_factory=dict)  # in an order where each follows those it names
    traits: dict[str, TraitDef] = field(default_factory=dict)
    digest: str = ""  # of everything: a reload that changes nothing is no change

    def tallies(self) -> dict[str, Tally]:
        """Every tally the definitions count, by id."""
        from collector.engage.conditions import events_of

        found = {t.tally.id: t.tally for t in self.traits.values()}
        for audience in self.audiences.values():
            found.update((e.tally.id, e.tally) for e in events_of(audience.condition))
        return found

    def __bool__(self) -> bool:
        return bool(self.audiences or self.traits)


def folder(config) -> Path:
    """The definitions' folder: ``engage_dir``, or ``engage/`` beside the configuration file
    (beside the current directory without one)."""
    if config.engage_dir is not None:
        return Path(config.engage_dir)
    return (Path(config.config_file).parent if config.config_file else Path(".")) / "engage"


def at_start(config) -> Definitions:
    """The definitions ``serve`` and ``demo`` start with: a mistake in any file is a ConfigError
    (one line each, exit 2), so a collector never starts on definitions it would not use."""
    from collector.config import ConfigError

    root = folder(config)
    try:
        return load(root)
    except DefinitionError as exc:
        raise ConfigError(f"the definitions in {root}/ have mistakes (intilery engage check lists them):\n  "
                          + "\n  ".join(exc.problems)) from None  # fmt: skip


def load(root: Path, environ: dict | None = None) -> Definitions:
    """Every definition under ``root`` (none when it does not exist); DefinitionError lists each mistake."""
    return parse_files(read(root), root, environ)


def read(root: Path) -> dict[str, str]:
    """The definitions' files under ``root``: relative path -> text (what ``parse_files`` reads,
    and what the profile database keeps of the definitions in force)."""
    texts = {}
    for kind in ("traits", "audiences"):
        for path in _files(root / kind):
            try:
                texts[f"{kind}/{path.name}"] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                texts[f"{kind}/{path.name}"] = f"{_UNREADABLE}cannot read it: {exc}"  # parsed: that sentence
    return texts


def parse_files(texts: dict[str, str], root: Path = Path("engage"), environ: dict | None = None) -> Definitions:
    problems: list[str] = []
    found = Definitions()
    digests = hashlib.blake2b(digest_size=16)
    paths: dict[str, Path] = {}
    for name in sorted(n for n in texts if n.startswith("traits/")):
        path = root / name
        trait = _one(path, texts[name], _trait, problems, environ)
        if trait is not None:
            if trait.name in found.traits:
                problems.append(f"{path}:1: a computed trait named {trait.name!r} is defined twice (also in {paths[trait.name]})")
            found.traits[trait.name], paths[trait.name] = trait, path
            digests.update(trait.digest.encode())
    audiences: dict[str, tuple[AudienceDef, Path]] = {}
    broken: set[str] = set()  # audiences whose file has a mistake (said once, in that file's line)
    for name in sorted(n for n in texts if n.startswith("audiences/")):
        path = root / name
        audience = _one(path, texts[name], _audience, problems, environ)
        if audience is None:
            broken.add(path.stem)
        else:
            if audience.key in audiences:
                problems.append(f"{path}:1: the audience key {audience.key!r} is also {audiences[audience.key][1]}'s")
            audiences[audience.key] = (audience, path)
            digests.update(audience.digest.encode())
    for key, (audience, path) in audiences.items():
        for named in _named(audience.condition):
            if named.key not in audiences and named.key not in broken:
                problems.append(f"{path}:{named.line or 1}: the condition names audience {named.key!r}, and there is none "
                                f"(audiences: {', '.join(sorted(audiences)) or 'none'})")  # fmt: skip
    order = _ordered({k: audiences_of(a.condition) & set(audiences) for k, (a, _) in audiences.items()})
    if isinstance(order, str):
        first, second = order.split(" -> ")[:2]
        audience, path = audiences[first]
        line = next((n.line for n in _named(audience.condition) if n.key == second), None) or 1
        problems.append(f"{path}:{line}: audiences name each other in a circle: {order}")
    else:
        found.audiences = {key: audiences[key][0] for key in order}
    if problems:
        raise DefinitionError(problems)
    found.digest = digests.hexdigest()
    return found


def _named(condition: Condition) -> list[Audience]:
    return [c for c in walk(condition) if c.__class__ is Audience]


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())


def load_kind(root: Path, kind: str, make, environ: dict | None = None) -> dict:
    """Every definition of one kind, a file each under ``root/kind`` (destinations, journeys):
    its name (the file's) -> ``make(data, path)``; DefinitionError lists every mistake, each
    ``file:line: reason`` (``make`` raises ConditionError)."""
    problems: list[str] = []
    found: dict = {}
    for path in _files(Path(root) / kind):
        try:
            data = load_yaml(path, environ)
            if not isinstance(data, dict):
                raise ConditionError(f"the file holds a mapping of the {kind[:-1]}'s keys", getattr(data, "line", 1))
            found[path.stem] = make(data, path)
        except ConditionError as exc:
            problems.append(exc.at(str(path)))
    if problems:
        raise DefinitionError(problems)
    return found


def problems(load) -> list[str]:
    """The mistakes ``load()`` finds (``intilery engage check``); none: []."""
    try:
        load()
    except DefinitionError as exc:
        return exc.problems
    return []


def has_files(config, kind: str) -> bool:
    """Whether the definitions' folder holds a file of this kind (a companion is started only then)."""
    return bool(_files(folder(config) / kind))


def _one(path: Path, text: str, make, problems: list[str], environ: dict | None):
    if text.startswith(_UNREADABLE):
        problems.append(f"{path}: {text[len(_UNREADABLE):]}")
        return None
    try:
        data = load_yaml(path, environ, text)
        if not isinstance(data, dict):
            raise ConditionError("the file holds a mapping of the definition's keys", getattr(data, "line", 1))
        return make(data, path)
    except ConditionError as exc:
        problems.append(exc.at(str(path)))
        return None


def _check_keys(data: dict, allowed: set, required: set) -> None:
    for key in data:
        if key not in allowed:
            raise ConditionError(f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})", data.lines.get(key))
    for key in sorted(required - set(data)):
        raise ConditionError(f"{key!r} is missing", data.line)


def _digest(data: Any) -> str:
    import orjson

    return hashlib.blake2b(orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str), digest_size=12).hexdigest()


def _key(data: dict, field: str, path: Path) -> str:
    """The definition's key (or name): the file's name, or the same written in the file."""
    value = data.get(field, path.stem)
    if not isinstance(value, str) or not _KEY.match(value):
        raise ConditionError(f"the {field} {value!r} is letters, digits, '_' and '-' (up to 100)", data.lines.get(field))
    if value != path.stem:
        raise ConditionError(f"the {field} {value!r} is not the file's name ({path.stem!r}): name the file {value}.yaml",
                             data.lines.get(field))  # fmt: skip
    return value


def _audience(data: dict, path: Path) -> AudienceDef:
    _check_keys(data, {"key", "name", "condition", "expose_to_browser", "description"}, {"condition"})
    key = _key(data, "key", path)
    name = data.get("name", key)
    if not isinstance(name, str) or not name:
        raise ConditionError("'name' is a text", data.lines.get("name"))
    expose = data.get("expose_to_browser", False)
    if not isinstance(expose, bool):
        raise ConditionError("'expose_to_browser' is true or false", data.lines.get("expose_to_browser"))
    condition = parse(data["condition"], fields=False, line=data.lines.get("condition"))
    return AudienceDef(key, name, condition, expose, _digest(["audience", data["condition"]]), tuple(windowed_events(condition)))


def _trait(data: dict, path: Path) -> TraitDef:
    _check_keys(data, {"name", "kind", "event", "property", "where", "within", "description"}, {"kind", "event"})
    name = _key(data, "name", path)
    kind = data["kind"]
    if kind not in KINDS:
        raise ConditionError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}", data.lines.get("kind"))
    prop = data.get("property")
    if kind == "count" and prop is not None:
        raise ConditionError("a count counts events: it takes no 'property'", data.lines.get("property"))
    if kind != "count" and prop is None:
        raise ConditionError(f"a {kind} needs a 'property' (the event's field it is of, e.g. properties.revenue)", data.line)
    counted = tally(data["event"], data.get("where"), prop, line=data.lines.get("event"),
                    where_line=data.lines.get("where"), prop_line=data.lines.get("property"))  # fmt: skip
    within = duration(data["within"], data.lines.get("within")) if data.get("within") is not None else None
    return TraitDef(name, kind, counted, within, _digest(["trait", kind, data["event"], data.get("where"), prop, data.get("within")]))


def _ordered(names: dict[str, set[str]]) -> list[str] | str:
    """The keys, each after those it names; or, when they form a circle, the circle as ``a -> b -> a``."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(key: str, trail: list[str]) -> str | None:
        if state.get(key) == 2:
            return None
        if state.get(key) == 1:
            loop = trail[trail.index(key):] + [key]
            return " -> ".join(loop)
        state[key] = 1
        for other in sorted(names[key]):
            circle = visit(other, trail + [key])
            if circle:
                return circle
        state[key] = 2
        order.append(key)
        return None

    for key in sorted(names):
        circle = visit(key, [])
        if circle:
            return circle
    return order
