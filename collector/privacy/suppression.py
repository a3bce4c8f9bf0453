"""The suppression list: salted hashes of identifiers whose new events are not stored.

One file, ``data/regulations/suppressed.json`` (``{"version": n, "hashes": [...]}``), replaced
whole (temporary file, fsync, rename, fsync the directory) under ``.locks/suppression.lock``,
so it survives restarts and every worker of the host reads the same list. It holds hashes
(``subjects.digest``, salted with ``data/regulations/salt``), never the identifiers.

At ingest the list is an in-memory set: ``Suppression.matches(message)`` is one test per
message (after the batch's outer context is merged into it), nothing at all while the set is
empty, a few cached hashes otherwise; which messages it drops is ``person.HashedPerson.suppresses``. Each process reloads
the file when it changes (``refresh``, by the service's tick, and at once in the process that
changed it); a request is answered 202 only once every running instance has the new version
(``service``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Iterable

import orjson

from collector.ingest.pipeline import merge_under
from collector.log.layout import LOCK_DIR
from collector.log.segments import fsync_dir, make_dirs
from collector.privacy.subjects import Ident, digest, salt_of
from collector.profiles.person import HashedPerson
from collector.profiles.rules import Rules

LIST_FILE = "suppressed.json"
REGULATIONS = "regulations"  # data/regulations/


def directory_of(data_dir: Path) -> Path:
    return Path(data_dir) / REGULATIONS


class Suppression:
    """The list of one data directory, as this process last read it."""

    def __init__(self, data_dir: Path, rules: Rules = Rules()) -> None:
        self.data_dir = Path(data_dir)
        self.dir = directory_of(data_dir)
        self.path = self.dir / LIST_FILE
        self.rules = rules
        self.remote = None  # the shared list on NATS (shared_list.SharedList), when collectors share no data directory
        self.hashes: frozenset[str] = frozenset()
        self.version = 0
        self._stamp: tuple | None = None
        self._salt: bytes | None = None
        self._listed: HashedPerson | None = None  # the list as a person (suppresses), with its cache

    @property
    def salt(self) -> bytes:
        if self._salt is None:  # with a remote: the shared salt kept in the directory (shared_list.SharedList.known_salt)
            self._salt = salt_of(self.dir) if self.remote is None else self.remote.known_salt(self.dir)
        return self._salt

    def adopt_salt(self, salt: bytes) -> None:
        """The shared salt as the bucket holds it (``--store nats``): kept, and hashed with from now on."""
        if salt != self._salt:
            self._salt, self._listed = salt, None  # verdicts hashed with the old salt go too

    def digests(self, idents: Iterable[Ident]) -> set[str]:
        return {digest(self.salt, kind, value) for kind, value in idents}

    # --- ingest -------------------------------------------------------------------------------
    def matches(self, message: dict) -> bool:
        """Whether a new message must not be stored: ``person.HashedPerson.suppresses`` over the
        list (its home identifier is on it, or it would tie a listed user id, email or alias
        ``previousId`` to someone). Nothing to do while the list is empty; each distinct
        identifier is hashed once (a bounded cache, emptied with each new list)."""
        return bool(self.hashes) and self._person().suppresses(message)

    def matches_raw(self, raw, outer_context: dict | None = None) -> bool:
        """``matches`` for a message that failed validation (as sent, under the batch's context):
        a suppressed person's rejected message is not kept in rejected/ either."""
        if not self.hashes or not isinstance(raw, dict):
            return False
        if isinstance(outer_context, dict) and outer_context:
            context = raw.get("context")
            raw = {**raw, "context": merge_under(outer_context, context if isinstance(context, dict) else {})}
        try:
            return self._person().suppresses(raw)
        except (TypeError, ValueError, AttributeError):  # a message too broken to name anyone
            return False

    def _person(self) -> HashedPerson:
        person = self._listed
        if person is None or person.hashes is not self.hashes:
            person = self._listed = HashedPerson(self.hashes, self._digest, self.rules)
        return person

    def _digest(self, kind: str, value: str) -> str:
        return digest(self.salt, kind, value)

    # --- the shared file --------------------------------------------------------------------
    def refresh(self) -> bool:
        """Reload the file when it changed since the last read; True when it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is None and not self.hashes:
                return False
            self.hashes, self.version, self._stamp = frozenset(), 0, None
            return True
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return False
        data = orjson.loads(self.path.read_bytes())
        self.hashes, self.version, self._stamp = frozenset(data["hashes"]), int(data["version"]), stamp
        return True

    def change(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> int:
        """Add and remove hashes in the shared file; the new version (this process has it at once).
        With a ``remote`` (the NATS bucket, ``shared_list.SharedList``) the change is made there first and
        the file takes the bucket's whole list."""
        if self.remote is not None:
            return self.replace(self.remote.change_now(set(add), set(remove)))
        return self._write(lambda hashes: (hashes | set(add)) - set(remove))

    def replace(self, hashes: set[str]) -> int:
        """Make the file hold exactly ``hashes`` (a newer list from the bucket); the new version."""
        return self._write(lambda _: set(hashes))

    def _write(self, new_hashes) -> int:
        make_dirs(self.dir)
        make_dirs(self.data_dir / LOCK_DIR)
        fd = os.open(self.data_dir / LOCK_DIR / "suppression.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                data = orjson.loads(self.path.read_bytes())
            except FileNotFoundError:
                data = {"version": 0, "hashes": []}
            hashes = new_hashes(set(data["hashes"]))
            version = int(data["version"]) + 1
            tmp = self.path.with_name(f"{LIST_FILE}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(orjson.dumps({"version": version, "hashes": sorted(hashes)}))
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.path)
            fsync_dir(self.dir)
        finally:
            os.close(fd)
        self._stamp = None
        self.refresh()
        return version
