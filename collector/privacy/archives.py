"""Erasure in every ``intilery archive``'s own output directory (``--store nats``).

An archive may run on another host, with its own data directory, so the request reaches it the
way the suppression list does: through the JetStream key-value bucket ``INTILERY_PRIVACY``
(``shared_list.SharedList``). It is given the **salted hashes** of the person's identifiers, never the
identifiers, and matches with ``HashedPerson`` (the one definition of a person's events,
``collector.profiles.person``) hashing with the bucket's shared salt. Keys::

    archive.<id>               an output directory, registered by its archive at every start
                               ({"host", "dataDir", "consumer", "registeredAt"}); ``<id>`` is kept
                               in ``<data_dir>/.archive-id``
    erase.<regulateId>         a request: {"hashes": [...], "upto": the stream's last sequence when
                               asked (after the stream was erased), "askedAt"}
    done.<regulateId>.<id>     an archive's answer: {"status": "DONE" | "PENDING", "removed",
                               "files", "error"}

The erase job (``Archives``, from its own thread): once the stream is erased, ``ask`` then
``status`` until ``done``: every registered archive has answered DONE. A registered archive
that is down keeps the request waiting, visibly (PENDING), until it is back; an archive taken
away for good is forgotten with ``intilery archive --forget <id>`` (or ``nats kv del``).

The archive (``ArchiveEraser``, in ``log.archive.Archiver``): looks for requests every
``POLL`` seconds and runs them in a task beside its loop, which goes on archiving meanwhile:

1. from now on, a message of the person with a sequence <= ``upto`` (fetched before the stream
   was erased, delivered late) is acknowledged without being written (``late``);
2. every process writing into the directory closes its open segments (``store.rotate_all``,
   ``rotation.rotate_everywhere``), so whatever was written before 1. is in closed segments;
3. each closed segment holding one of the person's lines (events, dead letters) is rewritten
   without them by ``log.rewrite.rewrite``;
4. the open segments are checked (a batch in flight at 1.): if one holds the person, 2-4 again;
5. the answer is put.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from collector.log import rewrite, rotation
from collector.log.layout import EVENTS, LOCK_DIR, LOGS, iso_ms, parse_name
from collector.log.segments import make_dirs, try_lock
from collector.privacy.shared_list import BUCKET, REMOTE_TIMEOUT, SALT, SharedList, retried
from collector.privacy.subjects import digest
from collector.profiles.person import HashedPerson
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.privacy.archives")

POLL = 1.0  # seconds between an archive's looks at the bucket for requests
RETRY = 5.0  # seconds before an archive tries a request that failed again
ROUNDS = 5  # rounds of "rotate, rewrite, look at the open segments" before an archive reports an error
FILTERS = 1000  # requests whose late deliveries an archive still drops (the newest)
ID_FILE = ".archive-id"
JOB_LOCK = "archive-erase"  # one process of an output directory erases it


async def _keys(kv, pattern: str) -> list[str]:
    """The bucket's keys matching ``pattern`` (``erase.*``), through one watcher with that filter
    (``KeyValue.keys`` lists every key and filters by substring)."""
    watcher = await kv.watch(pattern, ignore_deletes=True, meta_only=True)
    keys = []
    try:
        async for entry in watcher:
            if entry is None:  # the watcher's "no more for now"
                break
            if entry.operation is None:  # a put (deletes and purges are skipped above)
                keys.append(entry.key)
    finally:
        await watcher.stop()
    return keys


# --- the erase job's side ---------------------------------------------------------------------------
class Archives:
    """What the erase job calls (from its thread, which has no event loop)."""

    def __init__(self, config) -> None:
        self.config = config

    def _run(self, work: Callable[[Any, SharedList], Any]) -> Any:
        async def once():
            shared = SharedList(self.config)

            async def call():
                return await work(await shared._bucket(), shared)

            try:
                return await retried(call, shared)
            finally:
                await shared.close()

        return asyncio.run(once())

    def ask(self, regulate_id: str, hashes: list[str]) -> None:
        """File the request for every archive (idempotent: a request already filed stays as it is)."""
        import nats.js.errors

        async def work(kv, shared: SharedList) -> None:
            key = f"erase.{regulate_id}"
            try:
                await kv.get(key)
                return
            except nats.js.errors.KeyNotFoundError:
                pass
            js = shared.nc.jetstream(timeout=REMOTE_TIMEOUT)
            upto = (await js.stream_info(shared.settings.name)).state.last_seq
            value = orjson.dumps({"hashes": sorted(hashes), "upto": upto, "askedAt": iso_ms(time.time())})
            try:
                await kv.create(key, value)
            except nats.js.errors.KeyWrongLastSequenceError:
                pass  # filed meanwhile by another run of the job

        _check_id(regulate_id)
        self._run(work)

    def status(self, regulate_id: str) -> dict:
        """``{"archives": {id: {"status", "removed", "files", "error"}}, "done": bool}``: done when every
        registered archive answered DONE (and at once when none is registered)."""
        import nats.js.errors

        async def work(kv, _shared) -> dict:
            found = {}
            for key in await _keys(kv, "archive.*"):
                name = key.split(".", 1)[1]
                try:
                    answer = orjson.loads((await kv.get(f"done.{regulate_id}.{name}")).value)
                except nats.js.errors.KeyNotFoundError:
                    answer = {}
                found[name] = {"status": answer.get("status", "PENDING"), "removed": answer.get("removed", 0),
                               "files": answer.get("files", 0), "error": answer.get("error")}  # fmt: skip
            return {"archives": found, "done": all(a["status"] == "DONE" for a in found.values())}

        _check_id(regulate_id)
        return self._run(work)

    def wait(self, regulate_id: str, seen: Callable[[dict], None] = lambda status: None,
             stopped: Callable[[], bool] = lambda: False, every: float = POLL) -> dict:  # fmt: skip
        """``status`` until done; ``seen(status)`` each time it changed (the job saves it in its record).
        Raises ``rotation.Stopped`` when ``stopped()`` (the process is shutting down)."""
        last = None
        while True:
            status = self.status(regulate_id)
            if status != last:
                seen(status)
                last = status
            if status["done"]:
                return status
            if stopped():
                raise rotation.Stopped("stopped while waiting for the archives; the job runs again")
            time.sleep(every)

    def forget(self, archive_id: str) -> bool:
        """Unregister an archive taken away for good (its output directory is gone); whether it was known."""
        import nats.js.errors

        async def work(kv, _shared) -> bool:
            try:
                await kv.get(f"archive.{archive_id}")
            except nats.js.errors.KeyNotFoundError:
                return False
            await kv.delete(f"archive.{archive_id}")
            return True

        _check_id(archive_id)
        return self._run(work)


def _check_id(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise ValueError(f"not a request or archive id: {value!r}")


# --- the archive's side -----------------------------------------------------------------------------
def archive_id(data_dir: Path) -> str:
    """This output directory's id in the bucket (made once, kept in ``<data_dir>/.archive-id``)."""
    path = Path(data_dir) / ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    make_dirs(Path(data_dir))
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "archive"
    tmp = path.with_name(f"{ID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(f"{host}-{secrets.token_hex(4)}\n")
    try:
        os.link(tmp, path)  # never over an id another process made meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


class ArchiveEraser:
    """An archive's part: its output directory registered, requests found and run between batches."""

    def __init__(self, config, nc, consumer: str) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.id = archive_id(self.data_dir)
        self.consumer = consumer
        self.rules = Rules.from_config(config)
        self.shared = SharedList(config)
        self.shared.nc = nc  # the archive's connection (not closed here)
        self.registered = False
        self.due: dict[str, dict] = {}  # requests to run: regulateId -> request
        self.done: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.filters: dict[str, tuple[int, HashedPerson]] = {}  # regulateId -> (upto, person): late deliveries dropped
        self.upto = 0  # the highest ``upto`` of the filters
        self.dropped = 0
        self._failing = False
        self._task: asyncio.Task | None = None
        self._stopping = threading.Event()  # read by the erasure's threads between files

    # found in the bucket, by a task beside the archive's loop
    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.look(), REMOTE_TIMEOUT)
                if self._failing:
                    log.info("the privacy requests in the NATS bucket can be read again")
                self._failing = False
            except Exception as exc:  # noqa: BLE001 - NATS away: the next look tries again
                if not self._failing:
                    log.warning("cannot read the privacy requests in the NATS bucket %s: %s", BUCKET, type(exc).__name__)
                self._failing = True
            try:
                await asyncio.wait_for(stop.wait(), POLL)
            except asyncio.TimeoutError:
                pass

    async def register(self, stop: asyncio.Event) -> bool:
        """Put this output directory in the bucket before anything is archived, so that an erasure
        filed from now on waits for it; tried again until it works (False: stopped first)."""
        warned = False
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._register(), REMOTE_TIMEOUT)
                return True
            except Exception as exc:  # noqa: BLE001 - NATS not up yet: archiving waits, as it does for the stream
                if not warned:
                    log.warning("waiting to register for privacy requests in the NATS bucket %s: %s", BUCKET,
                                type(exc).__name__)  # fmt: skip
                warned = True
            try:
                await asyncio.wait_for(stop.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
        return False

    async def _register(self) -> None:
        kv = await self.shared._bucket()
        info = {"host": socket.gethostname(), "dataDir": str(self.data_dir), "consumer": self.consumer,
                "registeredAt": iso_ms(time.time())}  # fmt: skip
        await kv.put(f"archive.{self.id}", orjson.dumps(info))
        self.registered = True
        log.info("registered for privacy requests", extra={"archive": self.id})

    async def look(self) -> None:
        import nats.js.errors

        kv = await self.shared._bucket()
        if not self.registered:
            await self._register()
        for key in await _keys(kv, "erase.*"):
            regulate_id = key.split(".", 1)[1]
            if regulate_id in self.done or regulate_id in self.due:
                continue
            try:
                answer = orjson.loads((await kv.get(f"done.{regulate_id}.{self.id}")).value)
            except nats.js.errors.KeyNotFoundError:
                answer = {}
            if answer.get("status") == "DONE":
                self.done.add(regulate_id)
                continue
            request = orjson.loads((await kv.get(key)).value)
            request["salt"] = bytes.fromhex((await kv.get(SALT)).value.decode())
            self.due[regulate_id] = request

    # run beside the archive's loop
    def start_due(self, store) -> None:
        """Run the due requests in a task (one at a time); the archive's loop goes on meanwhile."""
        if self.due and (self._task is None or self._task.done()) and not self._stopping.is_set():
            self._task = asyncio.create_task(self.run_due(store), name="archive-erasure")

    async def close(self) -> None:
        """Stop between two files (a request cut short runs again at the next start)."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_due(self, store) -> None:
        for regulate_id, request in list(self.due.items()):
            if time.monotonic() < self.retry_at.get(regulate_id, 0.0):
                continue
            person = self.person(request)
            self._filter(regulate_id, request["upto"], person)
            make_dirs(self.data_dir / LOCK_DIR)
            lock = try_lock(self.data_dir, JOB_LOCK)
            if lock is None:  # another process of this directory erases it; its answer ends this one
                self.due.pop(regulate_id)
                continue
            try:
                answer = await self._erase(store, person)
            except rotation.Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - reported in the request's status; tried again
                log.exception("erasing a privacy request from the archive failed; it is tried again",
                              extra={"regulateId": regulate_id})  # fmt: skip
                answer = {"status": "PENDING", "removed": 0, "files": 0, "error": type(exc).__name__}
                self.retry_at[regulate_id] = time.monotonic() + RETRY
            finally:
                os.close(lock)
            try:
                kv = await self.shared._bucket()
                await kv.put(f"done.{regulate_id}.{self.id}", orjson.dumps(answer | {"at": iso_ms(time.time())}))
            except Exception as exc:  # noqa: BLE001 - NATS away: erased again (finding nothing) and answered later
                log.warning("could not answer a privacy request in the NATS bucket: %s", type(exc).__name__)
                self.retry_at[regulate_id] = time.monotonic() + RETRY
                continue
            if answer["status"] == "DONE":
                self.due.pop(regulate_id)
                self.done.add(regulate_id)
                log.info("privacy request erased from the archive", extra={"regulateId": regulate_id,
                         "removed": answer["removed"], "files": answer["files"]})  # fmt: skip

    def person(self, request: dict) -> HashedPerson:
        salt = request["salt"]
        return HashedPerson(request["hashes"], digest=lambda kind, value: digest(salt, kind, value), rules=self.rules)

    def _filter(self, regulate_id: str, upto: int, person: HashedPerson) -> None:
        self.filters[regulate_id] = (upto, person)
        while len(self.filters) > FILTERS:
            self.filters.pop(next(iter(self.filters)))
        self.upto = max(u for u, _ in self.filters.values())

    def late(self, log_name: str, sequence: int, line: bytes) -> bool:
        """Whether a delivered message is a person's that the stream no longer holds (do not write it)."""
        if sequence > self.upto:
            return False
        for upto, person in self.filters.values():
            if sequence <= upto and (person.owns_line(line) if log_name == EVENTS else person.owns_dead_letter(line)):
                self.dropped += 1
                return True
        return False

    async def _erase(self, store, person: HashedPerson) -> dict:
        removed = files = 0
        for _ in range(ROUNDS):
            await store.rotate_all()  # this process's own segments (its follow task answers the next too)
            await asyncio.to_thread(rotation.rotate_everywhere, self.data_dir,
                                    stopped=self._stopping.is_set)  # every process of the directory  # fmt: skip
            counts = await asyncio.to_thread(erase_closed, self.data_dir, person, self._stopping.is_set)
            removed, files = removed + counts[0], files + counts[1]
            if not await asyncio.to_thread(open_hold, self.data_dir, person):
                return {"status": "DONE", "removed": removed, "files": files, "error": None}
        return {"status": "PENDING", "removed": removed, "files": files,
                "error": f"open segments still hold the person after {ROUNDS} rotations"}  # fmt: skip


def _owner(log_name: str, person: HashedPerson) -> Callable[[bytes], bool]:
    return person.owns_line if log_name == EVENTS else person.owns_dead_letter


def _segments(data_dir: Path, log_name: str, closed: bool) -> list[Path]:
    pattern = "**/part-*.ndjson.gz" if closed else "**/part-*.ndjson"
    return sorted(p for p in (data_dir / log_name).glob(pattern) if (m := parse_name(p.name)) and not m["tmp"])


def erase_closed(data_dir: Path, person: HashedPerson, stopped: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """Rewrite every closed segment holding one of the person's lines without them; (lines, files)."""
    removed = files = 0
    for log_name in LOGS:
        owns = _owner(log_name, person)
        for path in _segments(data_dir, log_name, closed=True):
            if stopped():
                raise rotation.Stopped("the archive is stopping; the request runs again at its next start")
            try:
                with gzip.open(path, "rb") as src:
                    if not any(owns(line.rstrip(b"\n")) for line in src):
                        continue
                gone = rewrite.rewrite(path, lambda line: None if owns(line) else line)
            except (FileNotFoundError, rewrite.Conflict):  # retention removed it, or rewritten meanwhile: the next round
                continue
            removed += gone
            files += 1 if gone else 0
    return removed, files


def open_hold(data_dir: Path, person: HashedPerson) -> bool:
    """Whether an open segment holds one of the person's lines (written by another process meanwhile)."""
    for log_name in LOGS:
        owns = _owner(log_name, person)
        for path in _segments(data_dir, log_name, closed=False):
            try:
                with open(path, "rb") as fh:
                    if any(owns(line.rstrip(b"\n")) for line in fh if line.endswith(b"\n")):
                        return True
            except FileNotFoundError:
                continue
    return False


# --- the command ------------------------------------------------------------------------------------
def add_parser(commands: Any) -> None:
    """``intilery archive`` (``collector.log.archive``) with the privacy requests of its output
    directory, and ``--forget``."""
    from collector.log import archive

    parser = archive.add_parser(commands)
    parser.add_argument("--forget", metavar="ARCHIVE_ID",
                        help="unregister an output directory taken away for good (its id, as an erasure's status "
                             "lists it): erasures no longer wait for it; then exit")  # fmt: skip
    parser.set_defaults(run=run_command)


def run_command(args: Any) -> int:
    from collector.log import archive

    if not args.forget:
        return archive.run_command(args, requests=ArchiveEraser)
    known = Archives(archive.config_of(args)).forget(args.forget)
    print(f"intilery archive: {args.forget} " + ("forgotten: erasures no longer wait for it" if known else "is not registered"))
    return 0 if known else 1
