"""``intilery plan infer`` and ``intilery plan check``: the stored events, read through the log's reader.

::

    intilery plan infer --data-dir data --since 7d --source web --out plans/web.yaml
    intilery plan check --plan plans/web.yaml --data-dir data     # exit 1 when something violates it

Both show their progress on standard error every ``PROGRESS_EVERY`` events (a large store
takes a while), and the plan or the report goes to standard output (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from collector.log.layout import EVENTS, hour_partition
from collector.log.reader import Reader
from collector.plans.check import check
from collector.plans.plan import Plan, PlanError

PROGRESS_EVERY = 100_000
_AGO = re.compile(r"^(\d+)([hd])$")


def since_partition(text: str | None, now: float | None = None) -> str | None:
    """``7d``, ``12h`` or a date ``2026-11-28`` as the first partition to read (None: all)."""
    if not text:
        return None
    ago = _AGO.match(text)
    if ago:
        seconds = int(ago.group(1)) * (86400 if ago.group(2) == "d" else 3600)
        return hour_partition((time.time() if now is None else now) - seconds)
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        return f"dt={text}"
    raise argparse.ArgumentTypeError(f"--since takes 7d, 12h or a date (2026-11-28), not {text!r}")


def stored_events(args: argparse.Namespace, reader: Reader, seen: dict[str, int] | None = None) -> Iterator[dict]:
    """The events of ``--source`` (all without it); ``seen`` counts every event read by source."""
    for event in reader.events():
        if seen is not None:
            source = str(event.get("source"))
            seen[source] = seen.get(source, 0) + 1
        if args.source is None or event.get("source") == args.source:
            yield event


def nothing_read(args: argparse.Namespace, seen: dict[str, int]) -> str:
    """Why there is nothing to draft or check ("" when there is): what to pass instead."""
    since = " since then" if args.since else ""
    if not seen:
        return f"no events under {Path(args.data_dir) / EVENTS}{since} (is --data-dir the collector's data directory?)"
    if args.source is not None and args.source not in seen:
        return (f"no events from source {args.source!r}{since} (sources seen: {', '.join(sorted(seen))}); "
                "--source takes the name of a [[source]]")  # fmt: skip
    return ""


def progress_printer(what: str, reader: Reader) -> Callable[[int], None]:
    def show(n: int) -> None:
        print(f"intilery plan {what}: {n:,} events read ({reader.stats['bytes'] / 1e6:,.0f} MB)", file=sys.stderr, flush=True)

    return show


def render(plan: dict, path: str | None) -> str:
    if path and Path(path).suffix == ".json":
        return json.dumps(plan, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, width=120)


def cmd_infer(args: argparse.Namespace) -> int:
    from collector.plans.infer import infer  # here: it loads jsonschema_rs, which serve needs only for a plan

    out = Path(args.out) if args.out else None
    if out is not None:  # before the store is read: a large one takes a while
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.is_dir() or not os.access(out.parent, os.W_OK):
                raise OSError
        except OSError:
            print(f"intilery: cannot write {args.out} (is {out.parent} a folder you can write?)", file=sys.stderr)
            return 2
    reader = Reader(Path(args.data_dir) / EVENTS, since=args.since)
    seen: dict[str, int] = {}
    draft = infer(stored_events(args, reader, seen), progress_printer("infer", reader), args.progress_every)
    empty = nothing_read(args, seen)
    if empty:
        print(f"intilery: {empty}; no plan written", file=sys.stderr)
        return 1
    plan = draft.plan()
    text = render(plan, args.out)
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"intilery: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    print(f"intilery plan infer: {len(plan['track'])} track events, from the events under {args.data_dir}",
          file=sys.stderr)  # fmt: skip
    for outlier in draft.outliers():
        print(f"  required, though {outlier} (the draft flags those)", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        plan = Plan.load(args.plan)
    except PlanError as exc:
        print(f"intilery: {exc}", file=sys.stderr)
        return 2
    reader = Reader(Path(args.data_dir) / EVENTS, since=args.since)
    seen: dict[str, int] = {}
    report = check(plan, stored_events(args, reader, seen), progress_printer("check", reader), args.progress_every)
    empty = nothing_read(args, seen)
    if empty:
        print(f"intilery: {empty}; nothing checked", file=sys.stderr)
        return 1
    print(report.render())
    return 1 if report.violating else 0


def add_parser(commands: Any) -> None:
    """Register ``intilery plan`` (``infer``, ``check``)."""
    plan = commands.add_parser("plan", help="tracking plans: draft one from the stored events, check events against one")
    actions = plan.add_subparsers(dest="action", required=True)
    for name, run, help_text in (("infer", cmd_infer, "draft a plan from the stored events"),
                                 ("check", cmd_check, "check the stored events against a plan")):  # fmt: skip
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--data-dir", default=os.environ.get("INTILERY_DATA_DIR", "data"),
                            help="the collector's data directory (default ./data, or INTILERY_DATA_DIR)")  # fmt: skip
        action.add_argument("--since", type=since_partition,
                            help="only events received since: 7d, 12h or a date (2026-11-28)")  # fmt: skip
        action.add_argument("--source", help="only this source's events: the name of a [[source]] (the demo's: demo; "
                                             "a bare serve's: dev)")  # fmt: skip
        action.add_argument("--progress-every", type=int, default=PROGRESS_EVERY, help=argparse.SUPPRESS)
        action.set_defaults(run=run)
    actions.choices["infer"].add_argument("--out", help="write the plan here (.json: JSON; else YAML) instead of stdout")
    actions.choices["check"].add_argument("--plan", required=True, help="the plan file (YAML or JSON)")
