"""Whose an event is: the one definition every reader of a person's data uses.

An event belongs to the profile that its **own first identifier by priority** resolves to
(``home``: ``rules.identifiers(event)[0]``: user_id, then email, then other identifier traits,
then anonymous_id), exactly as the builder files it (``builder.apply`` folds the event into that
identifier's node). So:

- a shared device's anonymous id never makes another signed-in person's event someone else's:
  Bob's ``{userId: bob, anonymousId: kiosk}`` is Bob's even when ``kiosk`` is in Ann's profile;
- a value that merely equals an identifier (a sku ``"42"``, a search for an email) makes
  nothing anyone's: only identifier fields are read;
- a short or numeric identifier (``42``) is as safe as a long one.

``Person`` answers it for one person, given their identifiers (the members of their profile)::

    person = Person(members, rules)
    person.owns(event)                 # the Profile API's events, export, erasure, audiences ...
    person.owns_line(line)             # the same for a stored line (bytes), parsed only when the
                                       # cheap test on the raw bytes (``mentions``) says it may be
    person.owns_dead_letter(line)      # a rejected/ record, by the identifier fields of its payload
    person.suppresses(message)         # a new message that must not be stored (see ``suppresses``)

``HashedPerson`` is the same with only salted hashes of the identifiers (what the suppression
list, the archives and the console are given: never the identifiers themselves).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import orjson

from collector.profiles.rules import ANONYMOUS_ID, EMAIL, USER_ID, Rules, event_key, key_time

Ident = tuple[str, str]

# identifier fields a dead letter that is not JSON is searched by ("userId": "42", ...)
_FIELDS = ("userId", "anonymousId", "previousId", "user_id", "anonymous_id")


def home(event: dict, rules: Rules) -> Ident | None:
    """The identifier an event is filed under (its first by priority), or None when it has none."""
    idents = rules.identifiers(event)
    return idents[0] if idents else None


class _Owner:
    """What ``Person`` and ``HashedPerson`` share: the rules over a test of one identifier."""

    rules: Rules

    def has(self, ident: Ident) -> bool:  # pragma: no cover - defined by each kind
        raise NotImplementedError

    def owns(self, event: dict) -> bool:
        """Whether the event is this person's: its home identifier is one of theirs."""
        ident = home(event, self.rules)
        return ident is not None and self.has(ident)

    def owns_message(self, payload: Any) -> bool:
        """A payload as sent (a message, or a batch body): any message of it is the person's."""
        if not isinstance(payload, dict):
            return False
        batch = payload.get("batch")
        if isinstance(batch, list):
            return any(self.owns(m) for m in batch if isinstance(m, dict))
        return self.owns(payload)

    def owns_dead_letter(self, line: bytes) -> bool:
        """A ``rejected/`` record is the person's when a message in its payload is (by its
        identifier fields), or, for a payload that is not JSON, when an identifier field in its
        text holds one of their identifiers (``"userId":"42"``: never a bare substring)."""
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return self.owns_text(line.decode("utf-8", "replace"))
        payload = entry.get("payload") if isinstance(entry, dict) else None
        if isinstance(payload, str):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return self.owns_text(payload)
        messages = payload if isinstance(payload, list) else [payload]
        return any(self.owns_message(m) for m in messages)

    def owns_text(self, text: str) -> bool:
        """A body that is not JSON: whether an identifier field in it holds one of theirs."""
        return False

    def suppresses(self, message: dict) -> bool:
        """Whether a new message of a suppressed person must not be stored: the message would be
        filed to them (its home identifier is theirs), or it would tie one of their identifiers
        that is not an anonymous id (a user id, an email, an alias's ``previousId``, read as a user
        id and as an anonymous id) to someone. An anonymous id alone, shared by a device that
        someone else now signs in on, suppresses nothing but that person's own anonymous events."""
        idents = self.rules.identifiers(message)
        if not idents:
            return False
        if self.has(idents[0]):
            return True
        if any(kind != ANONYMOUS_ID and self.has((kind, value)) for kind, value in idents[1:]):
            return True
        if message.get("type") == "alias":
            previous = self.rules.clean(message.get("previousId"))
            if previous and (self.has((USER_ID, previous)) or self.has((ANONYMOUS_ID, previous))):
                return True
        return False


class Person(_Owner):
    """One person by their identifiers (as the profile rules keep them: emails lower case)."""

    def __init__(self, idents: Iterable[Ident], rules: Rules = Rules()) -> None:
        self.idents = frozenset((k, v) for k, v in idents)
        self.rules = rules
        exact, folded = set(), set()
        for kind, value in sorted(self.idents):
            for form in _forms(value):
                (folded if kind == EMAIL else exact).add(form)
        parts = [b"(?:" + b"|".join(sorted(exact)) + b")"] if exact else []
        if folded:  # bytes fold ASCII only: a non-ASCII email is looked for by its longest ASCII part
            parts.append(b"(?i:" + b"|".join(sorted(folded)) + b")")
        self._values = re.compile(b"|".join(parts) or b"(?!)")
        names = b"|".join(re.escape(f.encode()) for f in (*_FIELDS, *rules.identifier_traits))
        self._field = re.compile(b'(?i:\\\\?"(?:' + names + b')\\\\?"\\s*:\\s*\\\\?"?(?:\\s|\\\\[tnr])*)(?:'
                                 + (b"|".join(parts) or b"(?!)") + b")(?![\\w.@\\-])")
        # an identifier of theirs in events that stay -> [first seen, last seen, source] (``_saw``)
        self.kept: dict[Ident, list[str]] = {}
        longest_field = max(len(n) for n in (*_FIELDS, *rules.identifier_traits))
        self.longest = max((len(orjson.dumps(v)) for _, v in self.idents), default=0) + longest_field + 40

    def has(self, ident: Ident) -> bool:
        return ident in self.idents

    def mentions(self, data: bytes) -> bool:
        """The cheap test on raw bytes: whether a value of theirs appears at all (in any of the forms
        it can be stored in). False means no line in ``data`` is the person's; True means a line may
        be: it is parsed, and its identifier fields decide (``owns``)."""
        return self._values.search(data) is not None

    def owns_line(self, line: bytes) -> bool:
        """``owns`` for a stored line; a line that is not a JSON object is nobody's (the reader
        quarantines it)."""
        if not self.mentions(line):
            return False
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(event, dict):
            return False
        idents = self.rules.identifiers(event)
        if idents and idents[0] in self.idents:
            return True
        for ident in idents:  # someone else's event that names an identifier of theirs
            if ident in self.idents:
                self._saw(ident, event)
        return False

    def _saw(self, ident: Ident, event: dict) -> None:
        """Remember when an identifier of the person was seen in an event that stays (someone
        else's): what its node's first and last seen become once the person is erased."""
        when = key_time(event_key(event))
        source = str(event.get("source") or "")
        seen = self.kept.get(ident)
        if seen is None:
            self.kept[ident] = [when, when, source]
        else:
            if when < seen[0]:
                seen[0], seen[2] = when, source
            if when > seen[1]:
                seen[1] = when

    def owns_dead_letter(self, line: bytes) -> bool:
        """``_Owner.owns_dead_letter``, parsed only when the raw bytes may name the person."""
        return self.mentions(line) and super().owns_dead_letter(line)  # a body kept as text holds the values as sent

    def owns_text(self, text: str) -> bool:
        """A body that is not JSON: an identifier field followed closely by a value of theirs."""
        return self._field.search(text.encode("utf-8", "replace")) is not None


class HashedPerson(_Owner):
    """One person by the salted hashes of their identifiers (``digest(salt, kind, value)``)."""

    CACHE = 65_536  # identifiers whose verdict is remembered

    def __init__(self, hashes: Iterable[str], digest: Callable[[str, str], str], rules: Rules = Rules()) -> None:
        self.hashes = frozenset(hashes)
        self.digest = digest  # (kind, value) -> the hash, salted
        self.rules = rules
        self._verdicts: dict[Ident, bool] = {}
        self._raw: dict[tuple[str, str], object] = {}  # (kind, raw value as sent) -> verdict, or _NOT_AN_ID

    def suppresses(self, message: dict) -> bool:
        """``_Owner.suppresses``, with the usual message (a track or page: a userId and an
        anonymousId, no traits) answered from a cache of raw values: its home decides alone."""
        get = message.get
        context = get("context")
        if get("type") in ("identify", "alias") or (context.__class__ is dict and "traits" in context):
            return super().suppresses(message)
        for kind, field in ((USER_ID, "userId"), (ANONYMOUS_ID, "anonymousId")):
            raw = get(field)
            if raw is None:
                continue
            verdict = self._raw.get((kind, raw)) if raw.__class__ is str else None
            if verdict is None:
                value = self.rules.clean(raw)
                verdict = _NOT_AN_ID if value is None else self.has((kind, value))
                if raw.__class__ is str:
                    if len(self._raw) >= self.CACHE:
                        self._raw.clear()
                    self._raw[(kind, raw)] = verdict
            if verdict is not _NOT_AN_ID:
                return verdict  # the home identifier: the user id when there is one
        return False

    def has(self, ident: Ident) -> bool:
        if not self.hashes:
            return False
        hit = self._verdicts.get(ident)
        if hit is None:
            hit = self.digest(*ident) in self.hashes
            if len(self._verdicts) >= self.CACHE:
                self._verdicts.clear()
            self._verdicts[ident] = hit
        return hit

    def owns_line(self, line: bytes) -> bool:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        return isinstance(event, dict) and self.owns(event)


_NOT_AN_ID = "not an identifier"  # a raw value ``Rules.clean`` refuses (a blocked value, null, ...)


def _forms(value: str) -> list[bytes]:
    """Escaped byte patterns for each way ``value`` can stand in a stored line: as JSON text (orjson's
    escapes), as a number (``42``, ``1e20`` for ``1e+20``), and for a value with non-ASCII letters,
    its longest ASCII run (bytes fold case for ASCII alone)."""
    forms = {orjson.dumps(value)[1:-1]}
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None and number == number and abs(number) != float("inf"):
        forms.add(orjson.dumps(number))
        if number.is_integer() and abs(number) < 1 << 63:
            forms.add(str(int(number)).encode())
    if not value.isascii():
        runs = re.findall(r"[\x20-\x7e]+", value)
        longest = max(runs, key=len, default="")
        if len(longest) >= 3:
            forms.add(longest.encode())
    return [re.escape(form) for form in sorted(forms) if form]
