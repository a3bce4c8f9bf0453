"""Privacy requests on disk, ``data/regulations/``: the audit record and what a job needs to resume.

    regulations/<id>.json           the audit record: id, type, subject type, a hash of each subject,
                                    times, status, per store: files scanned and rewritten, lines removed,
                                    errors. Never a raw identifier.
    regulations/<id>.subjects.json  the identifiers themselves (mode 0600) while the job runs, so a
                                    killed or retried job resumes; removed when it ends (FINISHED, or
                                    CANCELLED by an operator)

Both are replaced whole (temporary file, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

import orjson

from collector.log.layout import iso_ms
from collector.log.segments import fsync_dir, make_dirs

TYPES = ("SUPPRESS", "DELETE_ONLY", "SUPPRESS_WITH_DELETE", "UNSUPPRESS")
SUPPRESSES = ("SUPPRESS", "SUPPRESS_WITH_DELETE")
DELETES = ("DELETE_ONLY", "SUPPRESS_WITH_DELETE")
STATUSES = ("INITIALIZED", "RUNNING", "FINISHED", "FAILED", "CANCELLED")
ENDED = ("FINISHED", "FAILED", "CANCELLED")  # FAILED: records of earlier versions (a job now runs until done or cancelled)
SUBJECTS_SUFFIX = ".subjects.json"
CANCEL_SUFFIX = ".cancel"  # an operator's ``intilery privacy cancel``, taken by the next run of the job


def write_whole(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` crash-safely: new file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # threads of one process too
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)
    fsync_dir(path.parent)


class Regulations:
    """The requests of one data directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def new_id(self) -> str:
        return "reg_" + secrets.token_hex(12)

    def create(self, kind: str, subject_type: str, hashes: list[str], idents: list[list[str]]) -> dict:
        make_dirs(self.dir)
        record = {
            "regulateId": self.new_id(),
            "regulationType": kind,
            "subjectType": subject_type,
            "subjectHashes": hashes,
            "status": "INITIALIZED",
            "createdAt": iso_ms(time.time()),
            "startedAt": None,
            "finishedAt": None,
            "identifiers": 0,  # how many the subjects expanded to
            "stores": {},
            "progress": {"files": 0, "bytes": 0},
        }
        # the raw identifiers first: a record whose subjects are missing could never run
        write_whole(self.dir / (record["regulateId"] + SUBJECTS_SUFFIX),
                    orjson.dumps({"subjects": idents, "expanded": None}), 0o600)  # fmt: skip
        self.save(record)
        return record

    def save(self, record: dict) -> None:
        write_whole(self.dir / f"{record['regulateId']}.json", orjson.dumps(record, option=orjson.OPT_INDENT_2))

    def get(self, regulate_id: str) -> dict | None:
        if not regulate_id.startswith("reg_") or not regulate_id[4:].isalnum():
            return None
        try:
            return orjson.loads((self.dir / f"{regulate_id}.json").read_bytes())
        except FileNotFoundError:
            return None

    def all(self) -> list[dict]:
        found = []
        for path in sorted(self.dir.glob("reg_*.json")):
            if path.name.endswith(SUBJECTS_SUFFIX):
                continue
            try:
                found.append(orjson.loads(path.read_bytes()))
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue
        return sorted(found, key=lambda r: r["createdAt"])

    def pending(self, due: bool = False) -> list[dict]:
        """The requests not ended (``due``: only those to run now)."""
        pending = [r for r in self.all() if r["status"] not in ENDED]
        return self.due(pending) if due else pending

    def due(self, records: list[dict]) -> list[dict]:
        """Those never tried, whose retry time has come, or that an operator cancelled."""
        now = iso_ms(time.time())
        return [r for r in records if r.get("nextAttemptAt", "") <= now or self.cancelled(r["regulateId"])]

    def subjects(self, regulate_id: str) -> dict:
        return orjson.loads((self.dir / (regulate_id + SUBJECTS_SUFFIX)).read_bytes())

    def save_subjects(self, regulate_id: str, subjects: dict) -> None:
        write_whole(self.dir / (regulate_id + SUBJECTS_SUFFIX), orjson.dumps(subjects), 0o600)

    def cancel(self, regulate_id: str) -> None:
        """An operator's cancellation: the job that runs the request next ends it CANCELLED."""
        write_whole(self.dir / f"{regulate_id}{CANCEL_SUFFIX}", b"")

    def cancelled(self, regulate_id: str) -> bool:
        return (self.dir / f"{regulate_id}{CANCEL_SUFFIX}").exists()

    def end(self, record: dict, status: str) -> None:
        """FINISHED or CANCELLED: the record saved, then the raw identifiers removed."""
        record["status"], record["finishedAt"] = status, iso_ms(time.time())
        self.save(record)
        (self.dir / (record["regulateId"] + SUBJECTS_SUFFIX)).unlink(missing_ok=True)
        (self.dir / (record["regulateId"] + CANCEL_SUFFIX)).unlink(missing_ok=True)
        fsync_dir(self.dir)


def public(record: dict) -> dict:
    """What the API answers about a request: counts, never the hashes (of the subject, those a
    suppression added, or the person's that an erasure tells the consoles), which are the job's own."""
    hidden = ("subjectHashes", "suppressedHashes", "personHashes")
    return {k: v for k, v in record.items() if k not in hidden} | {"subjects": len(record["subjectHashes"])}
