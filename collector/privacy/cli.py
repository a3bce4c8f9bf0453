"""``intilery privacy suppress|erase|export|status``: privacy requests from the shell.

It works on the data directory itself, beside running collectors or without any: a request is
recorded exactly as ``POST /v1/regulations`` records it, then run here when no collector holds
the job lock (else the collector runs it and this waits), with a progress bar on stderr.

    intilery privacy erase --email ann@example.com            # SUPPRESS_WITH_DELETE
    intilery privacy erase --user-id u-42 --keep-collecting   # DELETE_ONLY
    intilery privacy suppress --anonymous-id a1 [--undo]      # SUPPRESS (UNSUPPRESS)
    intilery privacy export email:ann@example.com > ann.ndjson
    intilery privacy status [REGULATE_ID]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from collector.config import load_config
from collector.errors import CollectorError
from collector.logs import setup_logging
from collector.log.layout import LOCK_DIR, LOGS
from collector.log.segments import make_dirs, try_lock
from collector.privacy import export
from collector.privacy.erase import Job
from collector.privacy.regulations import ENDED, Regulations, public
from collector.privacy.routes import create
from collector.privacy.service import JOB_LOCK, context_of, open_profiles, shared_suppression
from collector.privacy.suppression import Suppression
from collector.profiles.rules import PROFILE_FORM, Rules, parse_profile
from collector.ingest.validate import parse_timestamp

WAIT_FOR_COLLECTOR = 3600.0  # seconds this waits for a collector that runs the job


class _Here:
    """What ``routes.create`` needs of a collector's ``Privacy``, for this process."""

    def __init__(self, config) -> None:
        self.config, self.data_dir = config, Path(config.data_dir)
        self.suppression = shared_suppression(config)
        self.suppression.refresh()
        self.regulations = Regulations(self.suppression.dir)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    parser.add_argument("--data-dir", help="the collector's data directory (default ./data)")
    parser.add_argument("--profiles-db", help="profile database: a SQLite path (default DATA_DIR/profiles.db) or postgresql://...")


def _subjects(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--email", action="append", help="an email of the person (repeatable)")
    group.add_argument("--user-id", action="append", help="a userId of the person (repeatable)")
    group.add_argument("--anonymous-id", action="append", help="an anonymousId of the person (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(commands: Any) -> None:
    privacy = commands.add_parser("privacy", help="privacy requests: suppress, erase or export one person")
    actions = privacy.add_subparsers(dest="action", required=True)
    suppress = actions.add_parser("suppress", help="stop storing the person's new events (SUPPRESS)")
    suppress.add_argument("--undo", action="store_true", help="store them again (UNSUPPRESS)")
    erase = actions.add_parser("erase", help="erase every event of the person everywhere, and suppress (SUPPRESS_WITH_DELETE)")
    erase.add_argument("--keep-collecting", action="store_true", help="erase, but do not suppress (DELETE_ONLY)")
    for parser in (suppress, erase):
        _subjects(parser)
        _common(parser)
        parser.set_defaults(run=cmd_request)
    exp = actions.add_parser("export", help="the person's profile and every event, as NDJSON on stdout")
    exp.add_argument("identifier", help=PROFILE_FORM)
    exp.add_argument("-o", "--output", help="write to this file instead of stdout")
    _common(exp)
    exp.set_defaults(run=cmd_export)
    status = actions.add_parser("status", help="the status of one request, or of every one")
    status.add_argument("regulate_id", nargs="?")
    _common(status)
    status.set_defaults(run=cmd_status)
    cancel = actions.add_parser("cancel", help="stop a request that cannot finish (its raw identifiers are deleted)")
    cancel.add_argument("regulate_id")
    _common(cancel)
    cancel.set_defaults(run=cmd_cancel)


def _config(args: argparse.Namespace):
    return load_config(args.config, {"data_dir": args.data_dir, "profiles_db": args.profiles_db}, with_dev_source=False)


def _kind(args: argparse.Namespace) -> str:
    if args.action == "suppress":
        return "UNSUPPRESS" if args.undo else "SUPPRESS"
    return "DELETE_ONLY" if args.keep_collecting else "SUPPRESS_WITH_DELETE"


def cmd_request(args: argparse.Namespace) -> int:
    config = _config(args)
    setup_logging(config.log_format)
    subject_type, ids = next((t, v) for t, v in (("EMAIL", args.email), ("USER_ID", args.user_id),
                                                  ("ANONYMOUS_ID", args.anonymous_id)) if v)  # fmt: skip
    here = _Here(config)
    body = orjson.dumps({"regulationType": _kind(args), "subjectType": subject_type, "subjectIds": ids})
    try:
        record = create(here, body)
    except CollectorError as exc:
        print(f"intilery: {exc.message}", file=sys.stderr)
        return 2 if exc.status == 400 else 1
    regulate_id = record["regulateId"]
    print(f"regulateId {regulate_id}", file=sys.stderr)
    make_dirs(here.data_dir / LOCK_DIR)
    lock = try_lock(here.data_dir, JOB_LOCK)
    deadline = time.monotonic() + WAIT_FOR_COLLECTOR
    done = threading.Event()
    failure: list[BaseException] = []
    if lock is not None:  # no collector runs jobs here: this process does

        def work() -> None:
            try:
                context = context_of(config, here.suppression)
                while time.monotonic() < deadline:  # a job that cannot finish yet runs again after its backoff
                    record = Job(here.regulations, here.regulations.get(regulate_id), context).run()
                    if record["status"] in ENDED:
                        break
                    wait = (parse_timestamp(record["nextAttemptAt"], "nextAttemptAt") - time.time()) if record.get("nextAttemptAt") else 1
                    time.sleep(max(0.1, min(wait, 5.0, deadline - time.monotonic())))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, name="privacy-job", daemon=True).start()
    total = _closed_segments(here.data_dir)
    try:
        while time.monotonic() < deadline:
            current = here.regulations.get(regulate_id)
            if not args.no_progress:
                _bar(current, total)
            if current["status"] in ENDED or done.is_set():
                break
            time.sleep(0.2)
    finally:
        if lock is not None:
            done.wait(WAIT_FOR_COLLECTOR)
            os.close(lock)
    if not args.no_progress:
        print(file=sys.stderr)
    if failure:
        print(f"intilery: the request failed ({failure[0]!r}); it runs again at the next start", file=sys.stderr)
        return 1
    current = here.regulations.get(regulate_id)
    print(orjson.dumps(public(current), option=orjson.OPT_INDENT_2).decode())
    if current["status"] != "FINISHED":
        why = current.get("lastError") or "a collector has not run it yet"
        print(f"intilery: request {regulate_id} is not finished ({why}); it runs again by itself "
              f"(see 'intilery privacy status {regulate_id}', or 'intilery privacy cancel {regulate_id}')", file=sys.stderr)
        return 1
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    config = _config(args)
    regulations = Regulations(Suppression(Path(config.data_dir)).dir)
    record = regulations.get(args.regulate_id)
    if record is None:
        print(f"intilery: no request {args.regulate_id}", file=sys.stderr)
        return 1
    if record["status"] in ENDED:
        print(f"intilery: request {args.regulate_id} has ended already ({record['status']})", file=sys.stderr)
        return 1
    regulations.cancel(args.regulate_id)
    make_dirs(Path(config.data_dir) / LOCK_DIR)
    lock = try_lock(Path(config.data_dir), JOB_LOCK)
    if lock is not None:  # no collector runs jobs here: end it now
        try:
            Job(regulations, record, context_of(config, Suppression(Path(config.data_dir)))).run()
        finally:
            os.close(lock)
    deadline = time.monotonic() + 30
    while (record := regulations.get(args.regulate_id))["status"] not in ENDED and time.monotonic() < deadline:
        time.sleep(0.2)  # the collector that runs jobs ends it at its next look
    if record["status"] != "CANCELLED":
        print(f"intilery: request {args.regulate_id} is {record['status']}; no collector took the cancellation "
              "within 30 s (it is taken at the next start)", file=sys.stderr)  # fmt: skip
        return 1
    print(orjson.dumps(public(record), option=orjson.OPT_INDENT_2).decode())
    print(f"intilery: request {args.regulate_id} cancelled: its identifiers are deleted; what it had not erased stays",
          file=sys.stderr)  # fmt: skip
    return 0


def _closed_segments(data_dir: Path) -> int:
    return sum(1 for log_name in LOGS for _ in (data_dir / log_name).glob("**/part-*.ndjson.gz"))


def _bar(record: dict, total: int, width: int = 30) -> None:
    done = record.get("progress", {}).get("files", 0)
    share = min(1.0, done / total) if total else (1.0 if record["status"] in ENDED else 0.0)
    filled = int(share * width)
    megabytes = record.get("progress", {}).get("bytes", 0) / 1e6
    print(f"\r{record['status']:<11} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} segments, "
          f"{megabytes:.1f} MB", end="", file=sys.stderr, flush=True)  # fmt: skip


def cmd_export(args: argparse.Namespace) -> int:
    config = _config(args)
    parsed = parse_profile(args.identifier)
    if parsed is None:
        print(f"intilery: {args.identifier!r} is not {PROFILE_FORM}", file=sys.stderr)
        return 2
    store = open_profiles(config)()
    if store is None:
        print("intilery: no profile database yet", file=sys.stderr)
        return 1
    try:
        pid = store.find(*parsed)
        if pid is None:
            print(f"intilery: no profile holds {args.identifier}", file=sys.stderr)
            return 1
        first, idents = export.profile_line(store, pid), export.identifiers_of(store, pid)
    finally:
        store.close()
    out = os.fdopen(os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") if args.output \
        else sys.stdout.buffer  # fmt: skip (a person's data: readable by its owner only)
    try:
        out.write(first)
        for part in export.chunks(export.events_of(Path(config.data_dir), idents, Rules.from_config(config))):
            out.write(part)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    regulations = Regulations(Suppression(Path(config.data_dir)).dir)
    if args.regulate_id:
        record = regulations.get(args.regulate_id)
        if record is None:
            print(f"intilery: no request {args.regulate_id}", file=sys.stderr)
            return 1
        print(orjson.dumps(public(record), option=orjson.OPT_INDENT_2).decode())
        return 0
    for record in regulations.all():
        print(f"{record['regulateId']}  {record['regulationType']:<21} {record['status']:<11} {record['createdAt']}")
    return 0
