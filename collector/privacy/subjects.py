"""A request's subjects: normalised, hashed, and expanded to the whole person.

A subject is ``(type, value)`` with type ``USER_ID``, ``ANONYMOUS_ID`` or ``EMAIL`` (Segment's
subject types). ``resolver(config)`` expands it to every identifier of the person's profile, so
erasing a userId erases the person's anonymous history too, from a profile database that has
read the log up to the request (or from the log itself). Identifiers are kept as the profile
rules keep them (``collector.profiles.rules``): emails lower case, values stripped.

Which stored lines are the person's is not decided here: ``collector.profiles.person`` is the
one definition (an event is theirs when its own first identifier is one of theirs).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable

from collector.log.layout import EVENTS
from collector.log.reader import Reader
from collector.log.rotation import Stopped
from collector.log.segments import make_dirs
from collector.profiles.rules import ANONYMOUS_ID, EMAIL, USER_ID, Rules

SUBJECT_TYPES = {"USER_ID": USER_ID, "ANONYMOUS_ID": ANONYMOUS_ID, "EMAIL": EMAIL}
SALT_FILE = "salt"  # data/regulations/salt: 32 random bytes, made once, never leaves the host

Ident = tuple[str, str]
log = logging.getLogger("intilery.privacy")


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
    tmp = path.with_name(f"{SALT_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")  # threads of one process too
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
    """The subjects and every identifier of their profiles in ``store`` (a profile store)."""
    found = {(kind, normal(kind, value)) for kind, value in subjects}
    for kind, value in sorted(found):
        pid = store.find(kind, value)
        if pid is None:
            continue
        loaded = store.load_profile(pid)
        if loaded is not None:
            found |= set(loaded[1])
    return found


class NotYet(Exception):
    """The whole person cannot be known yet: the job says why, waits and runs again."""


def resolver(config, stopped: Callable[[], bool] = lambda: False) -> Callable[[list[Ident], str], set[Ident]]:
    """``resolve(subjects, cutoff)``: the whole person, as the profile builder has filed everything
    received up to ``cutoff`` (ISO-8601), never from a database that is behind:

    - the profile database is current and its builder has read the log up to ``cutoff``: from it;
    - it is behind (or being made anew) and its builder is running: ``NotYet`` (the job waits);
    - there is none, it is of another version, or it is behind with no builder running: from the
      log itself, by the builder's own code into a temporary database that is deleted after.

    The profile database is opened without migrating it (that is the builder's, under its lock)."""
    from collector.profiles.database import checkpoint_name, db_target, open_store, take_lock

    data_dir = Path(config.data_dir)

    def resolve(subjects: list[Ident], cutoff: str) -> set[Ident]:
        store = open_current(db_target(config), open_store)
        if store is not None:
            try:
                if not _behind(config, store, checkpoint_name(config), cutoff):
                    return expand(store, subjects)
            finally:
                store.close()
            lock = take_lock(data_dir)
            if lock is None:
                raise NotYet("the profile builder has not read the log up to the request yet")
            os.close(lock)
            log.warning("the profile database is behind the log and no builder runs: the person is found from the log")
        return _from_log(config, subjects, stopped)

    return resolve


def open_current(target: str, open_store):
    """The profile store, or None when there is none or it is of another version (not migrated)."""
    if not str(target).startswith("postgres") and not Path(target).is_file():
        return None
    store = open_store(target, migrate=False)
    if store.outdated:
        store.close()
        return None
    return store


def _behind(config, store, name: str, cutoff: str) -> bool:
    """Whether the builder's checkpoint leaves an event received up to ``cutoff`` unread."""
    cursor, _ = store.checkpoint(name)
    if config.store == "nats":
        import asyncio

        from collector.log.stream_reader import StreamReader

        async def look() -> bool:
            reader = StreamReader(config, cursor=cursor)
            try:
                async for record in reader.read():
                    if str(record.event.get("receivedAt", "")) <= cutoff:
                        return True
                return False
            finally:
                await reader.close()

        return asyncio.run(look())
    reader = Reader(Path(config.data_dir) / EVENTS, cursor=cursor)
    try:
        return any(str(r.event.get("receivedAt", "")) <= cutoff for r in reader.read())
    finally:
        reader.close()


def _from_log(config, subjects: list[Ident], stopped: Callable[[], bool] = lambda: False) -> set[Ident]:
    """The person as a rebuild of the whole log would file them, in a scratch database (0600)."""
    from collector.profiles.builder import Builder
    from collector.profiles.store import SqliteStore

    directory = Path(config.data_dir) / "regulations"
    make_dirs(directory)
    scratch = Path(tempfile.mkdtemp(prefix=".person-", dir=directory))  # mode 0700
    try:
        store = SqliteStore(scratch / "profiles.db", building=True)
        try:
            builder = Builder(store, Path(config.data_dir), Rules.from_config(config),
                              stream=config if config.store == "nats" else None)  # fmt: skip
            try:
                builder.catch_up(keep_going=lambda: not stopped())
            finally:
                builder.close()
            if stopped():
                raise Stopped("the process is stopping; the job runs again at the next start")
            return expand(store, subjects)
        finally:
            store.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
