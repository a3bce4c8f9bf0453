"""The job of a request: suppress, and erase the person from every place the project writes.

    job = Job(regulations, record, context)
    job.run()           # idempotent: a job that is stopped, killed or meets an error runs again
                        # (with backoff), and each step finds only what is left

Which events are the person's is ``collector.profiles.person``'s one definition: those whose own
first identifier is one of theirs. Erasing, in order (each step crash-safe on its own):

1. every running collector asked to close its open segments (``Context.rotate``), once: an
   erasure rewrites closed segments only; what arrives after it (a ``DELETE_ONLY`` of someone who
   goes on sending) stays;
2. the subject expanded to the whole person (``subjects.resolver``: from a profile database that
   has read the log up to the rotation, else from the log itself; the job waits while a running
   builder is behind), saved with the job; their salted hashes in the record (``personHashes``:
   what the consoles and the archives are given), then a second rotation, which every process
   acknowledges only once its console has read them (``collector.console.forget``);
3. the NATS stream, when the collector writes to one (``Context.stream``): first, so that nothing
   copies the person from it again; then every ``intilery archive`` is asked to erase them from
   its own output, through the NATS bucket (``Context.archives``, ``privacy/archives.py``), and
   the job waits (``NotYet``) until each registered archive has answered DONE;
4. ``events/`` and ``rejected/``: each closed segment whose raw bytes may hold the person
   (``rewrite.holds`` with ``Person.mentions``) is rewritten by ``rewrite.rewrite`` with their
   lines blanked (no other line moves: readers' cursors and the events index stay true);
5. the profile database: the person's profile, identifiers, the links their own events made and
   their events index (``erase_profile``); the identifiers of theirs that other people's events
   still name are joined again as a rebuild would join them (``forget.rejoin``); then its files
   scrubbed (``scrub``).

A job that cannot finish yet (a builder behind, a segment busy, an error) says why in its record
(``lastError``), keeps its raw subjects (mode 0600) and runs again after a backoff, until it
finishes or an operator cancels it (``intilery privacy cancel``): it never ends FAILED by itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from collector.log import rewrite
from collector.log.layout import EVENTS, GZ, LOGS, iso_ms, parse_name
from collector.log.rotation import Stopped
from collector.privacy.regulations import DELETES, SUPPRESSES, Regulations
from collector.privacy.subjects import NotYet
from collector.privacy.suppression import Suppression
from collector.profiles import forget
from collector.profiles.person import Person
from collector.profiles.rules import Rules

log = logging.getLogger("intilery.privacy")

BACKOFF = (5, 15, 60, 300, 900)  # seconds before the next run of a job that met an error (then the last)
WAITING = 2.0  # seconds before a job that waits (for a builder, an archive) looks again


@dataclass
class Context:
    data_dir: Path
    suppression: Suppression
    rules: Rules = field(default_factory=Rules)
    profiles: Callable[[], object | None] = lambda: None  # opens the profile store (not migrated), None when none is current
    resolve: Callable[[list, str], set] = lambda subjects, cutoff: set(subjects)  # subjects.resolver(config)
    rotate: Callable[[], None] = lambda: None  # every running collector closes its open segments
    stream: object | None = None  # erases from the NATS stream: .erase(person) -> dict
    archives: object | None = None  # every `intilery archive`'s output (NATS): .ask(id, hashes), .status(id) (privacy.archives)
    stopped: Callable[[], bool] = lambda: False  # the process is shutting down: the job stops between files
    outbox: Callable[[object, str], dict] | None = None  # removes the person's deliveries (engage/destinations/privacy.py)


class Unfinished(Exception):
    """A run of the erase steps met errors (a segment being rewritten by another, say): run again."""


class Job:
    def __init__(self, regulations: Regulations, record: dict, context: Context) -> None:
        self.regs, self.record, self.ctx = regulations, record, context

    def run(self) -> dict:
        record = self.record
        if self.regs.cancelled(record["regulateId"]):
            self.regs.end(record, "CANCELLED")
            log.warning("privacy request cancelled by an operator", extra={"regulateId": record["regulateId"]})
            return record
        record["status"] = "RUNNING"
        record["startedAt"] = record["startedAt"] or record["createdAt"]
        self.regs.save(record)
        try:
            kind = record["regulationType"]
            if kind in DELETES and not record.get("rotatedAt"):
                asked = iso_ms(time.time())
                self.ctx.rotate()  # once: what arrives after it is not the request's
                record["rotatedAt"] = asked  # everything received before is in a closed segment now
                self.regs.save(record)
            person = Person(self._identifiers(), self.ctx.rules)
            digests = self.ctx.suppression.digests(person.idents)
            if kind in SUPPRESSES:
                record["suppressedHashes"] = sorted(digests)  # what UNSUPPRESS takes back, profile erased or not
                self.ctx.suppression.change(add=digests)
                if self.ctx.outbox is not None and kind not in DELETES:  # what is not sent yet is not sent
                    self.record["stores"]["outbox"] = self.ctx.outbox(person, record["regulateId"], False)
            elif kind == "UNSUPPRESS":
                self.ctx.suppression.change(remove=self._suppressed_with(digests | set(record["subjectHashes"])))
            if kind in DELETES:
                if record.get("personHashes") != sorted(digests) or not record.get("forgetRotatedAt"):
                    record["personHashes"] = sorted(digests)  # never answered by the API
                    self.regs.save(record)  # before any rewrite: every console forgets the person ...
                    self.ctx.rotate()  # ... before it acknowledges this rotation (again after a kill)
                    record["forgetRotatedAt"] = iso_ms(time.time())
                    self.regs.save(record)
                if not record.get("erasedAt"):  # this host's stores (a later run only waits for the archives)
                    errors = self._erase(person)
                    if errors:
                        raise Unfinished("; ".join(errors[:5]))
                    record["erasedAt"] = iso_ms(time.time())
                    self.regs.save(record)
                self._archives(digests)
        except Stopped:
            log.info("privacy job interrupted by a shutdown; it runs again", extra={"regulateId": record["regulateId"]})
            raise
        except NotYet as exc:  # waiting (a builder behind, an archive): looked at again soon, not an error
            return self._again(str(exc), WAITING)
        except (Unfinished, OSError, TimeoutError) as exc:
            return self._again(str(exc) or type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a job never takes its process down; it runs again
            log.exception("privacy job failed; it runs again", extra={"regulateId": record["regulateId"]})
            return self._again(f"{type(exc).__name__}: {exc}")
        record.pop("lastError", None)
        record.pop("nextAttemptAt", None)
        self.regs.end(record, "FINISHED")
        log.info("privacy request finished", extra={"regulateId": record["regulateId"], "type": record["regulationType"]})
        return record

    def _again(self, why: str, delay: float | None = None) -> dict:
        """The job could not finish this time: why, and when it runs again (its subjects kept)."""
        record = self.record
        attempts = record["attempts"] = record.get("attempts", 0) + 1
        if delay is None:
            delay = BACKOFF[min(attempts, len(BACKOFF)) - 1]
        record["lastError"] = why
        record["nextAttemptAt"] = iso_ms(time.time() + delay)
        self.regs.save(record)
        log.warning("privacy request not finished; it runs again", extra={
            "regulateId": record["regulateId"], "attempts": attempts, "retryIn": delay, "reason": why})  # fmt: skip
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
        """The whole person (``subjects.resolver``), worked out once and kept with the subjects."""
        subjects = self.regs.subjects(self.record["regulateId"])
        if subjects.get("expanded") is None:
            cutoff = self.record.get("rotatedAt") or self.record["createdAt"]
            found = self.ctx.resolve([tuple(s) for s in subjects["subjects"]], cutoff)
            subjects["expanded"] = sorted(found)
            self.regs.save_subjects(self.record["regulateId"], subjects)
        idents = {tuple(i) for i in subjects["expanded"]}
        self.record["identifiers"] = len(idents)
        return idents

    # --- erasing ---------------------------------------------------------------------------------
    def _erase(self, person: Person) -> list[str]:
        errors: list[str] = []
        if self.ctx.stream is not None:  # first: nothing copies the person from the stream again
            stats = self.ctx.stream.erase(person)
            self.record["stores"]["nats"] = stats
            errors += stats.get("errors", [])
            self.regs.save(self.record)
        store = self.ctx.profiles()
        try:
            for log_name in LOGS:
                errors += self._erase_log(log_name, person, store)
            if store is not None:
                errors += self._erase_profiles(store, person)
        finally:
            if store is not None:
                store.close()
        if self.ctx.outbox is not None:  # the deliveries of theirs not sent yet are dropped, the rest removed
            try:
                self.record["stores"]["outbox"] = self.ctx.outbox(person, self.record["regulateId"])
            except Exception as exc:  # noqa: BLE001 - the job runs the step again
                errors.append(f"outbox: {type(exc).__name__}: {exc}")
        store = self.ctx.profiles()
        if store is not None:  # a builder batch read before the rewrite may have committed since: once more
            try:
                if forget.remains(store, person):
                    errors += self._erase_profiles(store, person)
            finally:
                store.close()
        return errors

    def _archives(self, digests: set[str]) -> None:
        """With NATS, every ``intilery archive`` erases the person from its own output (asked through
        the bucket, after the stream is erased: nothing copies them again): ``NotYet`` until each
        registered archive has said it is done (one that is down keeps the request waiting, listed)."""
        if self.ctx.archives is None:
            return
        rid = self.record["regulateId"]
        self.ctx.archives.ask(rid, sorted(digests))
        status = self.ctx.archives.status(rid)
        self.record["stores"]["archives"] = status["archives"]
        self.regs.save(self.record)
        if not status["done"]:
            waiting = sorted(name for name, a in status["archives"].items() if a.get("status") != "DONE")
            raise NotYet(f"waiting for {len(waiting)} archive(s) to erase the person: {', '.join(waiting)}")

    def _erase_log(self, log_name: str, person: Person, store) -> list[str]:
        root = self.ctx.data_dir / log_name
        stats = self.record["stores"].setdefault(log_name, {"scanned_files": 0, "scanned_bytes": 0,
                                                            "rewritten_files": 0, "removed": 0, "errors": []})  # fmt: skip
        closed = sorted(p for p in root.glob("**/part-*.ndjson.gz") if (m := parse_name(p.name)) and not m["tmp"])
        if log_name == EVENTS:
            search, owns = person.mentions, person.owns_line
        else:
            search, owns = person.mentions, person.owns_dead_letter
        errors = []
        for path in closed:
            if self.ctx.stopped():
                raise Stopped("the process is stopping; the job runs again at the next start")
            try:
                size = path.stat().st_size
                found = rewrite.holds(path, search, person.longest)
            except FileNotFoundError:  # removed by retention meanwhile
                continue
            stats["scanned_files"] += 1
            stats["scanned_bytes"] += size
            if found:
                segment = path.relative_to(root).as_posix()[: -len(GZ)]
                try:
                    removed = rewrite.rewrite(path, lambda line: None if owns(line) else line)
                except (rewrite.Conflict, FileNotFoundError) as exc:
                    errors.append(f"{log_name}: {type(exc).__name__} on {segment}")
                    continue
                stats["rewritten_files"] += 1
                stats["removed"] += removed
            self.record["progress"]["files"] += 1
            self.record["progress"]["bytes"] += size
            self.regs.save(self.record)
        stats["errors"] = errors
        return errors

    def _erase_profiles(self, store, person: Person) -> list[str]:
        stats = self.record["stores"].setdefault("profiles", {"profiles": 0, "identifiers": 0, "events": 0, "errors": []})
        for name, count in forget.erase(store, person, self.ctx.rules).items():
            stats[name] += count
        errors = []
        try:
            store.scrub()
        except Exception as exc:  # noqa: BLE001 - a reader holding the WAL: the job runs the step again
            errors.append(f"profiles: {exc}")
        stats["errors"] = errors
        self.regs.save(self.record)
        return errors
