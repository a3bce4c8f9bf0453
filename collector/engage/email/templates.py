"""Email templates: ``engage/templates/<name>.liquid``::

    ---
    subject: "Your cart, {{ traits.first_name }}"      # itself a template (plain text, one line)
    kind: marketing                                    # marketing (default: consent and unsubscribe) | transactional
    ---
    <p>Hello {{ traits.first_name }}</p>               # the HTML part: every value HTML-escaped
    --- text ---                                       # optional: the text part as written
    Hello {{ traits.first_name }}                      # without it the text part is derived from the HTML

Liquid (python-liquid) with its resource limits on (``Limited``): a loop, an output or a nesting
beyond them is an error, not a process eating the host. Variables: ``traits`` (the person's traits
and computed traits), ``event`` (the triggering event, in a journey), ``unsubscribe_url``,
``profile_id``. A missing variable renders empty in a send (``strict=False``) and is an error in
a preview (``strict=True``, ``intilery email preview``): the author sees the mistake before a
customer sees a blank.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import yaml
from liquid import Environment, StrictUndefined, Undefined
from liquid.exceptions import LiquidError

from collector.engage.definitions import DefinitionError

__all__ = ["DefinitionError", "RenderError", "Template", "Rendered", "parse", "load", "render", "check", "text_of"]

KINDS = ("marketing", "transactional")
TEXT_MARK = re.compile(r"^--- text ---[ \t]*$", re.M)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")


class Limited(Environment):
    loop_iteration_limit = 10_000
    output_stream_limit = 1_000_000  # characters of one rendered part
    context_depth_limit = 30
    local_namespace_limit = 100_000
    block_nesting_limit = 30


ENVS = {(escape, strict): Limited(autoescape=escape, undefined=StrictUndefined if strict else Undefined)
        for escape in (True, False) for strict in (True, False)}  # fmt: skip


class RenderError(ValueError):
    """A template could not be rendered (a missing variable in a preview, a limit reached)."""


@dataclass(frozen=True)
class Template:
    name: str
    kind: str
    subject: str
    html: str
    text: str | None  # None: derived from the HTML
    path: Path


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    kind: str


def parse(name: str, text: str, path: Path) -> Template:
    """A template from its file's text; ``DefinitionError`` (``file:line: reason``) on any mistake."""
    problems: list[str] = []
    if not _NAME.match(name):
        problems.append(f"{path}:1: a template's file name is letters, digits, '_' and '-' (then .liquid)")
    if not text.startswith("---"):
        raise DefinitionError(problems + [f"{path}:1: a template starts with front matter: '---', 'subject: ...', '---'"])
    end = text.find("\n---", 3)
    if end < 0:
        raise DefinitionError(problems + [f"{path}:1: the front matter has no closing '---' line"])
    head, body = text[3:end], text[end + 4 :]
    body_line = text[: end + 4].count("\n") + 2
    body = body.split("\n", 1)[1] if "\n" in body else ""
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DefinitionError(problems + [f"{path}:{(mark.line + 2) if mark else 1}: the front matter is not YAML "
                                          f"({getattr(exc, 'problem', None) or exc})"]) from None  # fmt: skip
    if not isinstance(meta, dict):
        raise DefinitionError(problems + [f"{path}:2: the front matter is a mapping (subject:, kind:)"])
    for key in sorted(set(meta) - {"subject", "kind"}):
        problems.append(f"{path}:{_line(head, key)}: unknown key {key!r} in the front matter (subject, kind)")
    subject, kind = meta.get("subject"), meta.get("kind", "marketing")
    if not isinstance(subject, str) or not subject.strip():
        problems.append(f"{path}:{_line(head, 'subject')}: 'subject:' is required, a line of text (a template itself)")
        subject = ""
    if kind not in KINDS:
        problems.append(f"{path}:{_line(head, 'kind')}: kind is marketing or transactional, not {kind!r}")
    found = TEXT_MARK.search(body)
    html, plain = (body[: found.start()], body[found.end() + 1 :]) if found else (body, None)
    if not html.strip():
        problems.append(f"{path}:{body_line}: the HTML body is empty")
    for part, source, line in (("subject", subject, _line(head, "subject")), ("HTML body", html, body_line),
                               ("text part", plain, body_line + html.count("\n") + 1)):  # fmt: skip
        if source is None:
            continue
        try:
            ENVS[(True, False)].from_string(source)
        except LiquidError as exc:
            at = getattr(exc, "token", None)
            where = line + (at.source[: at.start_index].count("\n") if at is not None and hasattr(at, "start_index") else 0)
            problems.append(f"{path}:{where}: the {part} is not Liquid: {str(exc).splitlines()[0]}")
    if problems:
        raise DefinitionError(problems)
    return Template(name, kind, subject, html, plain, path)


def _line(head: str, key: str) -> int:
    for number, line in enumerate(head.split("\n")):
        if line.startswith(key + ":"):
            return number + 1
    return 1


def folder(root: Path) -> Path:
    return root / "templates"


def load(root: Path, name: str) -> Template:
    """The template ``name`` of the engage folder ``root`` (``DefinitionError`` when absent or wrong)."""
    if not _NAME.match(name):
        raise DefinitionError([f"{name!r} is not a template name (letters, digits, '_' and '-')"])
    path = folder(root) / f"{name}.liquid"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        known = ", ".join(sorted(p.stem for p in folder(root).glob("*.liquid"))) or "none"
        raise DefinitionError([f"{path}: no such template ({exc.strerror}; templates: {known})"]) from None
    return parse(name, text, path)


def names(root: Path) -> list[str]:
    return sorted(p.stem for p in folder(root).glob("*.liquid")) if folder(root).is_dir() else []


def check(root: Path) -> list[str]:
    """Every template's mistakes, ``file:line: reason`` (``intilery engage check``)."""
    problems: list[str] = []
    for name in names(root):
        try:
            load(root, name)
        except DefinitionError as exc:
            problems += exc.problems
    return problems


@lru_cache(maxsize=256)
def _compiled(source: str, escape: bool, strict: bool):
    """A part parsed once (a campaign renders the same template for every member)."""
    return ENVS[(escape, strict)].from_string(source)


def render(template: Template, variables: dict, strict: bool = False) -> Rendered:
    """The subject (one line, not escaped: a header), the HTML (values escaped) and the text part."""
    try:
        subject = _compiled(template.subject, False, strict).render(**variables)
        html = _compiled(template.html, True, strict).render(**variables)
        text = (_compiled(template.text, False, strict).render(**variables) if template.text is not None
                else text_of(html))  # fmt: skip
    except LiquidError as exc:
        raise RenderError(f"{template.path}: {str(exc).splitlines()[0]}") from None
    subject = " ".join(subject.split())  # no line break reaches a header
    return Rendered(subject, html, text, template.kind)


class _Text(HTMLParser):
    BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.href: list[str | None] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        if tag in self.BLOCKS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        if tag == "a" and self.href:
            href = self.href.pop()
            if href and not href.startswith("#"):
                self.out.append(f" ({href})")
        if tag in self.BLOCKS:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(re.sub(r"\s+", " ", data))


def text_of(html: str) -> str:
    """The text part derived from the HTML: its words, a line per block, links as ``words (href)``."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
