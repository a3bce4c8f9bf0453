"""The people an erasure is taking out of the log, so that the console forgets them too.

An erasure (``DELETE_ONLY``, ``SUPPRESS_WITH_DELETE``) writes in its audit record, before it
rewrites anything, ``personHashes``: the salted hashes of every identifier of the person
(``personHashes``, written by ``collector.privacy.erase.Job``). The console is given nothing else: no identifier.
Every collector process's console (workers included) looks at the regulations directory
(``look``: one ``stat`` when nothing changed) from its follower's loop, and before it
acknowledges a rotation (``collector.log.rotation.rotate_if_asked``; an erasure rotates every
process before its first rewrite), and for each person new to it:

- drops their lines from its buffer and from every viewer's queue, and their ids from the
  dashboard's visitors (``follower.Follower.forget``);
- publishes none of their lines received before the erasure finished (``owner``), which covers
  a line read from a segment file opened before the rewrite replaced it; the follower also drops
  the files it holds open whenever an erasure's record changes (``version``).

A person is matched by ``collector.profiles.person.HashedPerson``, the one definition of a
person's events: a line is theirs when its home identifier is theirs (a shared device's
anonymousId, or a property equal to their id, makes nobody else's line theirs). An erasure
that ended more than ``KEEP`` seconds ago is no longer checked: the follower reads the
rewritten files since it ended.
"""

from __future__ import annotations

import calendar
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from collector.console.filters import ACCEPTED, Item
from collector.privacy.regulations import DELETES, ENDED, Regulations
from collector.privacy.subjects import digest
from collector.profiles.person import HashedPerson
from collector.profiles.rules import Rules

FIELD = "personHashes"  # what the erase job writes in the regulation's record
KEEP = 3600.0  # seconds an ended erasure still filters what the follower reads
RACY = 2.0  # seconds within which a directory's mtime may not show a later change (coarse clocks)


@dataclass
class Forgotten:
    person: HashedPerson
    hashes: frozenset[str]
    until: str | None  # the erasure's finishedAt (lines received later stay in the log), None while it runs
    state: tuple  # what of the record was seen: a change makes the follower reopen its files


class Forgetting:
    """The erasures of one regulations directory, as the console's follower needs them."""

    def __init__(self, directory: Path, rules: Rules, salt: Callable[[], bytes], clock=time.time) -> None:
        self.dir = Path(directory)
        self.rules, self.clock = rules, clock
        self._salt_of, self._salt = salt, None
        self.people: dict[str, Forgotten] = {}  # regulateId -> the person
        self.version = 0  # bumped whenever an erasure's record changed
        self._seen: tuple | None = None  # the directory's (inode, mtime) when nothing was left to learn

    def _digest(self, kind: str, value: str) -> str:
        if self._salt is None:
            self._salt = self._salt_of()
        return digest(self._salt, kind, value)

    def look(self, force: bool = False) -> list[HashedPerson]:
        """The people whose erasure is new to this console (to purge now); reads the records only
        when the directory changed (or ``force``)."""
        try:
            st = os.stat(self.dir)
        except FileNotFoundError:
            return []
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self._seen and not force and not self._expiring():
            return []
        new: list[HashedPerson] = []
        present = set()
        now = self.clock()
        for record in Regulations(self.dir).all():
            hashes = record.get(FIELD)
            if not hashes or record.get("regulationType") not in DELETES:
                continue
            regulate_id = record["regulateId"]
            ended = record.get("status") in ENDED
            until = record.get("finishedAt") if ended else None
            if until is not None and now - _epoch(until) > KEEP:
                continue
            present.add(regulate_id)
            state = (record.get("status"), until, record.get("progress"), record.get("stores"))
            known = self.people.get(regulate_id)
            hashes = frozenset(hashes)
            if known is None or known.hashes != hashes:
                person = HashedPerson(hashes, digest=self._digest, rules=self.rules)
                self.people[regulate_id] = Forgotten(person, hashes, until, state)
                new.append(person)
                self.version += 1
            elif known.state != state:
                known.until, known.state = until, state
                self.version += 1
        for regulate_id in set(self.people) - present:
            del self.people[regulate_id]
        # a change within the clock's granularity may leave the mtime as it was: look again then
        self._seen = stamp if time.time() - st.st_mtime > RACY else None
        return new

    def _expiring(self) -> bool:
        now = self.clock()
        return any(f.until is not None and now - _epoch(f.until) > KEEP for f in self.people.values())

    def owner(self, item: Item) -> Forgotten | None:
        """The erasure whose person ``item`` is a line of, when the console must not show it: one
        still running (``until`` None: the caller looks again, it may have ended since), or one
        that ended after the line was received."""
        for forgotten in self.people.values():
            if forgotten.until is not None and item.received_at > forgotten.until:
                continue  # received after the erasure ended: it stays in the log (DELETE_ONLY)
            if owns(forgotten.person, item):
                return forgotten
        return None


def owns(person: HashedPerson, item: Item) -> bool:
    """Whether a console item (a stored event, or a dead letter) is the person's."""
    if item.status == ACCEPTED:
        return person.owns(item.record)
    return person.owns_dead_letter(item.line)


def _epoch(iso: str) -> float:
    try:
        return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return 0.0
