"""A destination's ``mapping``: the webhook's ``data`` reshaped from the event, in the directives of
Segment's mapping-kit (an object whose one key starts with ``@`` is a directive; any other object,
list or value is kept, its parts mapped in turn)::

    {"@path": "$.properties.order_id"}           the event's value there (missing: the key is left out)
    {"@template": "{{traits.first_name}} {{ traits.last_name | default: '?' }}"}
                                                 text with Liquid output tags: a dotted path, and the
                                                 filters default, upcase, downcase, strip (missing: "")
    {"@if": {"exists": {"@path": "$.userId"}, "then": X, "else": Y}}     also "blank" (missing or "")
    {"@literal": X}                              X as written, directives and all
    {"@arrayPath": ["$.properties.products", {"sku": {"@path": "$.sku"}}]}
                                                 each item of the array mapped (paths from the item)

``check(mapping)`` refuses an unknown directive or a malformed one (ConditionError with the line);
``apply(mapping, event)`` gives the data.
"""

from __future__ import annotations

import re
from typing import Any

from collector.engage.conditions import ConditionError

DIRECTIVES = ("@path", "@template", "@if", "@literal", "@arrayPath")
_MISSING = object()
_TAG = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_FILTER = re.compile(r"^(default|upcase|downcase|strip)(?:\s*:\s*(?:'([^']*)'|\"([^\"]*)\"|(-?[0-9.]+)))?$")
_PATH = re.compile(r"^\$?(\.?[^.\[\]]+|\[[0-9]+\])*$")


def check(mapping: Any, line: int | None = None) -> None:
    line = getattr(mapping, "line", None) or line
    if isinstance(mapping, list):
        for item in mapping:
            check(item, line)
        return
    if not isinstance(mapping, dict):
        return
    directives = [k for k in mapping if isinstance(k, str) and k.startswith("@")]
    if not directives:
        for key, value in mapping.items():
            check(value, getattr(mapping, "lines", {}).get(key, line))
        return
    if len(mapping) != 1:
        raise ConditionError(f"a directive ({directives[0]}) is alone in its object; this one also has "
                             f"{', '.join(map(str, (k for k in mapping if k != directives[0])))}", line)  # fmt: skip
    name, arg = directives[0], mapping[directives[0]]
    if name not in DIRECTIVES:
        raise ConditionError(f"unknown directive {name!r}: use one of {', '.join(DIRECTIVES)}", line)
    if name == "@path":
        _path(arg, line)
    elif name == "@template":
        if not isinstance(arg, str):
            raise ConditionError("@template takes a text with {{ path }} tags", line)
        for tag in _TAG.findall(arg):
            _tag(tag, line)
    elif name == "@if":
        if not isinstance(arg, dict) or len([k for k in ("exists", "blank") if k in arg]) != 1 or \
                set(arg) - {"exists", "blank", "then", "else"}:
            raise ConditionError("@if takes exists (or blank): a value, then and else", line)
        for part in arg.values():
            check(part, line)
    elif name == "@arrayPath":
        if not isinstance(arg, list) or len(arg) not in (1, 2):
            raise ConditionError("@arrayPath takes [path, mapping of each item]", line)
        _path(arg[0], line)
        if len(arg) == 2:
            check(arg[1], line)


def _path(text: Any, line: int | None) -> tuple:
    if not isinstance(text, str) or not text or not _PATH.match(text):
        raise ConditionError(f"a path is $.a.b (or a.b, or $.list[0]), not {text!r}", line)
    return split(text)


def _tag(tag: str, line: int | None) -> None:
    path, *filters = [p.strip() for p in tag.split("|")]
    _path(path, line)
    for f in filters:
        if not _FILTER.match(f):
            raise ConditionError(f"the filter {f!r} is not one of default: 'x', upcase, downcase, strip", line)


def split(text: str) -> tuple:
    text = text[1:] if text.startswith("$") else text
    parts: list = []
    for piece in re.findall(r"[^.\[\]]+|\[[0-9]+\]", text):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return tuple(parts)


def lookup(data: Any, path: tuple) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(data, list) or part >= len(data):
                return _MISSING
            data = data[part]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


def apply(mapping: Any, event: Any) -> Any:
    """The data ``mapping`` makes of ``event`` (a key whose value is missing is left out)."""
    value = _apply(mapping, event)
    return None if value is _MISSING else value


def _apply(mapping: Any, root: Any) -> Any:
    if isinstance(mapping, list):
        return [v for v in (_apply(item, root) for item in mapping) if v is not _MISSING]
    if not isinstance(mapping, dict):
        return mapping
    if len(mapping) == 1:
        (name, arg), = mapping.items()
        if name == "@literal":
            return arg
        if name == "@path":
            return lookup(root, split(arg))
        if name == "@template":
            return _TAG.sub(lambda m: _render(m.group(1), root), arg)
        if name == "@if":
            value = _apply(arg.get("exists", arg.get("blank")), root)
            truth = value not in (_MISSING, None) if "exists" in arg else value in (_MISSING, None, "")
            return _apply(arg.get("then" if truth else "else", _MISSING), root) if ("then" if truth else "else") in arg else _MISSING
        if name == "@arrayPath":
            items = lookup(root, split(arg[0]))
            if not isinstance(items, list):
                return _MISSING
            return items if len(arg) == 1 else [_apply(arg[1], item) for item in items]
    out = {}
    for key, value in mapping.items():
        mapped = _apply(value, root)
        if mapped is not _MISSING:
            out[key] = mapped
    return out


def _render(tag: str, root: Any) -> str:
    path, *filters = [p.strip() for p in tag.split("|")]
    value = lookup(root, split(path))
    for f in filters:
        name, *args = _FILTER.match(f).groups()
        if name == "default":
            if value in (_MISSING, None, ""):
                value = next((a for a in args if a is not None), "")
        elif value not in (_MISSING, None):
            text = _text(value)
            value = text.upper() if name == "upcase" else text.lower() if name == "downcase" else text.strip()
    return "" if value in (_MISSING, None) else _text(value)


def _text(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)
