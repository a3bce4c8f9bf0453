"""A request's subject, expanded to the whole person, and how a stored line is matched against it.

A subject is ``(type, value)`` with type ``USER_ID``, ``ANONYMOUS_ID`` or ``EMAIL`` (Segment's
subject types). ``expand`` adds every identifier the profile database links to it, so erasing
a userId erases the person's anonymous history too. Identifiers are kept as the profile rules
keep them (``collector.profiles.rules``): emails lower case, values stripped.

``Matcher`` decides which stored lines belong to the person. A cheap test first, on the raw
bytes (``mentions``: any identifier appears at all, emails in any case), before any JSON is
parsed; then, for events, the line is the person's when one of its identifiers (userId,
anonymousId, alias previousId, identifier traits) is theirs, or when any string value of it is
exactly one of their identifiers (an email in ``properties``, say). A dead letter (``rejected/``)
holds the body as it was sent, often not JSON: it goes as soon as it mentions an identifier.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

import orjson

from collector.profiles.rules import ANONYMOUS_ID, EMAIL, USER_ID, Rules

SUBJECT_TYPES = {"USER_ID": USER_ID, "ANONYMOUS_ID": ANONYMOUS_ID, "EMAIL": EMAIL}
SALT_FILE = "salt"  # data/regulations/salt: 32 random bytes, made once, never leaves the host

Ident = tuple[str, str]


def normal(kind: str, value: str) -> str:
    """An identifier as the profile rules store it."""
    value = value.strip()
    return value.lower() if kind == EMAIL else value


def salt_of(directory: Path) -> bytes:
    """The salt of the hashes (created on first use, mode 0600; every worker reads the same)."""
    path = Path(directory) / SALT_FILE
    try:
        salt = path.read_bytes()
        if len(salt) == 32:
            return salt
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{SALT_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # never over a salt another process made meanwhile
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def digest(salt: bytes, kind: str, value: str) -> str:
    """The salted (keyed BLAKE2b) hash of one identifier: what the suppression list and the audit record hold."""
    return hashlib.blake2b(f"{kind}:{value}".encode("utf-8", "surrogatepass"), key=salt, digest_size=16).hexdigest()


def expand(store, subjects: Iterable[Ident]) -> set[Ident]:
    """The subjects and every identifier of their profiles (``store``: a profile store, or None)."""
    found = {(kind, normal(kind, value)) for kind, value in subjects}
    if store is None:
        return found
    for kind, value in sorted(found):
        pid = store.find(kind, value)
        if pid is None:
            continue
        loaded = store.load_profile(pid)
        if loaded is not None:
            found |= set(loaded[1])
    return found


def _needle(value: str) -> bytes:
    return re.escape(orjson.dumps(value)[1:-1])


class Matcher:
    """Which lines are the person's (see the module's docstring)."""

    def __init__(self, idents: Iterable[Ident], rules: Rules = Rules()) -> None:
        self.idents = set(idents)
        self.rules = rules
        exact = [_needle(v) for k, v in sorted(self.idents) if k != EMAIL]
        folded = [_needle(v) for k, v in sorted(self.idents) if k == EMAIL]
        parts = [b"(?:" + b"|".join(exact) + b")"] if exact else []
        if folded:
            parts.append(b"(?i:" + b"|".join(folded) + b")")
        alternatives = b"|".join(parts) or b"(?!)"
        self.mention = re.compile(alternatives)
        self.value = re.compile(b'"(?:' + alternatives + b')"')  # a whole JSON string
        self.longest = max((len(orjson.dumps(v)) for _, v in self.idents), default=0)

    def mentions(self, data: bytes) -> bool:
        return self.mention.search(data) is not None

    def is_event_of(self, line: bytes) -> bool:
        if not self.mention.search(line):
            return False
        if self.value.search(line):
            return True
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return True  # not JSON, yet names the person: never kept
        if not isinstance(event, dict):
            return True
        return any(ident in self.idents for ident in self.rules.identifiers(event))

    def is_dead_letter_of(self, line: bytes) -> bool:
        return self.mention.search(line) is not None
