"""A person's data as NDJSON (GDPR Art. 15 and 20): their profile, then every event of theirs.

The first line is ``{"type": "profile", "profile_id", "traits", "external_ids", "metadata"}``;
every other line is an event as stored, oldest first, read through the log's ``Reader``. Which
events are theirs is ``collector.profiles.person``'s one definition (the event's own first
identifier is one of theirs), as for the Profile API's events and the erasure: the raw bytes are
tested first (``Person.mentions``), so lines of other people are not parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import orjson

from collector.log.layout import EVENTS
from collector.log.reader import Reader
from collector.privacy.subjects import Ident
from collector.profiles import views
from collector.profiles.person import Person
from collector.profiles.rules import Rules


def profile_line(store, pid: str) -> bytes:
    return orjson.dumps({
        "type": "profile", "profile_id": pid, "traits": views.traits(store, pid),
        "external_ids": views.external_ids(store, pid), "metadata": views.metadata(store, pid),
    }) + b"\n"  # fmt: skip


def identifiers_of(store, pid: str) -> set[Ident]:
    loaded = store.load_profile(pid)
    return set(loaded[1]) if loaded else set()


def events_of(data_dir: Path, idents: set[Ident], rules: Rules = Rules()) -> Iterator[bytes]:
    """Every stored event of the person, as stored (one line each, newline included)."""
    person = Person(idents, rules)
    reader = Reader(Path(data_dir) / EVENTS)
    try:
        for line, _ in reader.lines():
            if person.owns_line(line):
                yield line + b"\n"
    finally:
        reader.close()


def chunks(lines: Iterator[bytes], size: int = 256 * 1024) -> Iterator[bytes]:
    """The lines joined into chunks of about ``size`` bytes (one write each)."""
    part, length = [], 0
    for line in lines:
        part.append(line)
        length += len(line)
        if length >= size:
            yield b"".join(part)
            part, length = [], 0
    if part:
        yield b"".join(part)
