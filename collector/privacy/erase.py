"""The job of a request: suppress, and erase the person from every place the project writes.

    job = Job(regulations, record, context)
    job.run()           # idempotent: a killed job runs again from the start at the next start,
                        # and each step finds only what is left (rewritten files hold nothing)

Erasing, in order (each step crash-safe on its own):

1. the subject expanded to the whole person (``subjects.expand``), saved with the job;
2. every running collector asked to close its open segments (``Context.rotate``): an erasure
   rewrites closed segments only, and ingest goes on into new ones meanwhile;
3. ``events/`` and ``rejected/``: each closed segment that ``rewrite.holds`` the person (the
   cheap pre-filter on raw bytes) is rewritten by ``rewrite.rewrite`` without their lines;
   the profile database's events index is moved to the new offsets of what stayed;
4. the profile database: the person's profile, identifiers, links and events index
   (``erase_profile``), then its files scrubbed (``scrub``);
5. the NATS stream, when the collector writes to one (``Context.stream``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from collector.log import rewrite
from collector.log.layout import EVENTS, GZ, LOGS, parse_name
from collector.log.reader import DONE, Reader
from collector.log.rotation import Stopped
from collector.privacy.regulations import DELETES, SUPPRESSES, Regulations
from collector.privacy.subjects import Matcher, expand
from collector.privacy.suppression import Suppression
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.privacy")

ATTEMPTS = 3  # runs of the erase steps before a job that keeps meeting errors is FAILED
ROTATIONS = 5  # rounds of "rotate, look at the open segments" before giving up on one that keeps the person
PAUSE_ENV = "INTILERY_PRIVACY_PAUSE"  # tests: "<rewrite step>:<n>" stops the n-th rewrite there


@dataclass
class Context:
    data_dir: Path
    suppression: Suppression
    rules: Rules = field(default_factory=Rules)
    profiles: Callable[[], object | None] = lambda: None  # opens the profile store, None when there is none
    rotate: Callable[[], None] = lambda: None  # every running collector closes its open segments
    stream: object | None = None  # erases from the NATS stream: .erase(matcher) -> dict
    archives: object | None = None  # every `intilery archive`'s output (NATS): .ask(id, hashes), .status(id) (privacy.archives)
    stopped: Callable[[], bool] = lambda: False  # the process is shutting down: the job stops between files


class Job:
    def __init__(self, regulations: Regulations, record: dict, context: Context) -> None:
        self.regs, self.record, self.ctx = regulations, record, context
        self.rewrites = 0
        self._pause = _pause_hook(context.data_dir)

    def run(self) -> dict:
        record = self.record
        record["status"] = "RUNNING"
        record["startedAt"] = record["startedAt"] or record["createdAt"]
        self.regs.save(record)
        try:
            idents = self._identifiers()
            kind = record["regulationType"]
            digests = self.ctx.suppression.digests(idents)
            if kind in SUPPRESSES:
                record["suppressedHashes"] = sorted(digests)  # what UNSUPPRESS takes back, profile erased or not
                self.ctx.suppression.change(add=digests)
            elif kind == "UNSUPPRESS":
                self.ctx.suppression.change(remove=self._suppressed_with(digests | set(record["subjectHashes"])))
            if kind in DELETES:
                for attempt in range(ATTEMPTS):
                    errors = self._erase(Matcher(idents, self.ctx.rules))
                    if not errors:
                        break
                    log.warning("erase met errors; running it again", extra={"regulateId": record["regulateId"],
                                                                             "errors": len(errors)})  # fmt: skip
                else:
                    record.setdefault("errors", []).extend(errors)
                    self.regs.end(record, "FAILED")
                    return record
        except Stopped:
            log.info("privacy job interrupted by a shutdown; it runs again", extra={"regulateId": record["regulateId"]})
            raise
        except Exception as exc:  # noqa: BLE001 - a job never takes its process down; it runs again
            log.exception("privacy job failed; it runs again", extra={"regulateId": record["regulateId"]})
            record["lastError"] = type(exc).__name__
            self.regs.save(record)
            raise
        self.regs.end(record, "FINISHED")
        log.info("privacy request finished", extra={"regulateId": record["regulateId"], "type": record["regulationType"]})
        return record

    def _suppressed_with(self, digests: set[str]) -> set[str]:
        """The hashes to take off the list: these, and all that a suppression of the same person added
        (their anonymousIds, say, once the profile that linked them is erased)."""
        found = set(digests)
        for other in self.regs.all():
            added = set(other.get("suppressedHashes", ()))
            if added & found or set(other["subjectHashes"]) & found:
                found |= added
        return found

    def _identifiers(self) -> set[tuple[str, str]]:
        subjects = self.regs.subjects(self.record["regulateId"])
        if subjects.get("expanded") is None:
            store = self.ctx.profiles()
            try:
                subjects["expanded"] = sorted(expand(store, [tuple(s) for s in subjects["subjects"]]))
            finally:
                if store is not None:
                    store.close()
            self.regs.save_subjects(self.record["regulateId"], subjects)
        idents = {tuple(i) for i in subjects["expanded"]}
        self.record["identifiers"] = len(idents)
        return idents

    # --- erasing ---------------------------------------------------------------------------------
    def _erase(self, matcher: Matcher) -> list[str]:
        errors: list[str] = []
        self._rotate(matcher, errors)
        store = self.ctx.profiles()
        try:
            pending = self.record.pop("reindex", None)
            if pending and store is not None:  # a rewrite whose index update a kill cut short
                self._reindex(store, pending)
            for log_name in LOGS:
                errors += self._erase_log(log_name, matcher, store)
            if store is not None:
                errors += self._erase_profiles(store, matcher)
        finally:
            if store is not None:
                store.close()
        if self.ctx.stream is not None:
            from collector.profiles.person import Person  # TEMPORARY glue (branch nats): main's job passes a Person

            stats = self.ctx.stream.erase(Person(matcher.idents, self.ctx.rules))
            self.record["stores"]["nats"] = stats
            errors += stats.get("errors", [])
            self.regs.save(self.record)
        if self.ctx.archives is not None and not errors:  # TEMPORARY glue (branch nats): the lead wires this in main
            def seen(status: dict) -> None:
                self.record["stores"]["archives"] = status["archives"]
                self.regs.save(self.record)

            rid = self.record["regulateId"]
            self.ctx.archives.ask(rid, sorted(self.ctx.suppression.digests(matcher.idents)))
            self.ctx.archives.wait(rid, seen=seen, stopped=self.ctx.stopped)
        store = self.ctx.profiles()
        if store is not None:  # a builder batch read before the rewrite may have committed since: once more
            try:
                if any(store.find(kind, value) for kind, value in sorted(matcher.idents)):
                    errors += self._erase_profiles(store, matcher)
            finally:
                store.close()
        return errors

    def _rotate(self, matcher: Matcher, errors: list[str]) -> None:
        """Until no open segment holds the person: ask every collector to close its segments."""
        for _ in range(ROTATIONS):
            self.ctx.rotate()
            holding = [p for p in self._open_segments() if _plain_holds(p, matcher)]
            if not holding:
                return
        errors.append(f"{len(holding)} open segment(s) still hold the subject after {ROTATIONS} rotations")

    def _open_segments(self) -> list[Path]:
        found = []
        for log_name in LOGS:
            for path in sorted((self.ctx.data_dir / log_name).glob("**/part-*.ndjson")):
                found.append(path)
        return found

    def _erase_log(self, log_name: str, matcher: Matcher, store) -> list[str]:
        root = self.ctx.data_dir / log_name
        stats = self.record["stores"].setdefault(log_name, {"scanned_files": 0, "scanned_bytes": 0,
                                                            "rewritten_files": 0, "removed": 0, "errors": []})  # fmt: skip
        closed = sorted(p for p in root.glob("**/part-*.ndjson.gz") if (m := parse_name(p.name)) and not m["tmp"])
        search = matcher.mentions
        errors = []
        for path in closed:
            if self.ctx.stopped():
                raise Stopped("the process is stopping; the job runs again at the next start")
            try:
                size = path.stat().st_size
                found = rewrite.holds(path, search, matcher.longest)
            except FileNotFoundError:  # removed by retention meanwhile
                continue
            stats["scanned_files"] += 1
            stats["scanned_bytes"] += size
            if found:
                segment = path.relative_to(root).as_posix()[: -len(GZ)]
                drop = matcher.is_event_of if log_name == EVENTS else matcher.is_dead_letter_of
                if log_name == EVENTS and store is not None:
                    self.record["reindex"] = segment
                    self.regs.save(self.record)
                try:
                    self.rewrites += 1
                    removed = rewrite.rewrite(path, lambda line: None if drop(line) else line, pause=self._paused)
                except (rewrite.Conflict, FileNotFoundError) as exc:
                    errors.append(f"{log_name}: {type(exc).__name__} on {segment}")
                    continue
                stats["rewritten_files"] += 1
                stats["removed"] += removed
                if log_name == EVENTS and store is not None:
                    self._reindex(store, segment)
                    self.record.pop("reindex", None)
            self.record["progress"]["files"] += 1
            self.record["progress"]["bytes"] += size
            self.regs.save(self.record)
        stats["errors"] = errors
        return errors

    def _reindex(self, store, segment: str) -> None:
        """The profile index's offsets of a rewritten segment, read again from it (by messageId)."""
        partition = segment.rpartition("/")[0]
        root = self.ctx.data_dir / EVENTS
        others = {f"{partition}/{p.name[: -len(GZ)] if p.name.endswith(GZ) else p.name}": DONE
                  for p in (root / partition).glob("part-*")}  # fmt: skip
        others.pop(segment, None)
        reader = Reader(root, cursor=others)
        rows = []
        for record in reader.read():
            if record.segment == segment and isinstance(record.event.get("messageId"), str):
                rows.append((record.event["messageId"], reader.offsets[segment] - len(record.line) - 1))
        store.reposition(segment, rows)

    def _erase_profiles(self, store, matcher: Matcher) -> list[str]:
        stats = self.record["stores"].setdefault("profiles", {"profiles": 0, "identifiers": 0, "events": 0, "errors": []})
        for kind, value in sorted(matcher.idents):
            pid = store.find(kind, value)
            if pid is not None:
                for name, count in store.erase_profile(pid).items():
                    stats[name] += count
        errors = []
        try:
            store.scrub()
        except Exception as exc:  # noqa: BLE001 - a reader holding the WAL: the job runs the step again
            errors.append(f"profiles: {exc}")
        stats["errors"] = errors
        self.regs.save(self.record)
        return errors

    def _paused(self, step: str) -> None:
        if self._pause is not None:
            self._pause(step, self.rewrites)


def _plain_holds(path: Path, matcher: Matcher) -> bool:
    try:
        with open(path, "rb") as fh:
            return matcher.mentions(fh.read())
    except FileNotFoundError:  # compressed meanwhile: the closed segment is erased
        return False


def _pause_hook(data_dir: Path):
    """Tests: ``INTILERY_PRIVACY_PAUSE=<step>:<n>`` stops the n-th rewrite after ``step`` (writing
    ``regulations/paused``) so that the process can be killed there; None otherwise."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return None
    step, _, nth = spec.partition(":")

    def pause(at: str, count: int) -> None:
        if at == step and count == int(nth or 1):
            (Path(data_dir) / "regulations" / "paused").write_text(f"{at}:{count}\n")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the test kills the process meanwhile
                time.sleep(0.05)

    return pause

