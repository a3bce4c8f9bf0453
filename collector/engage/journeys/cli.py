"""``intilery journeys``: each journey's counts (entered, active, waiting per step, exited,
converted), per version; ``check`` (the files: ``file:line: reason``, exit 1), ``runs KEY --profile
ID`` (a person's runs: their step and next timer), ``run`` (the process, until stopped)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from collector.engage.cli import engage_config, engage_flags
from collector.engage import definitions as engage
from collector.engage.definitions import DefinitionError
from collector.engage.journeys import definitions, service
from collector.engage.journeys.channels import iso
from collector.engage.journeys.reads import person_runs, summary
from collector.engage.journeys.store import open_journeys
from collector.profiles.database import db_target


def _common(parser: argparse.ArgumentParser) -> None:
    engage_flags(parser, "the runs")


def add_parser(commands: Any) -> None:
    command = commands.add_parser("journeys", help="journeys: counts per step, a person's runs, check, run")
    _common(command)
    command.set_defaults(run=cmd_list)
    actions = command.add_subparsers(dest="action")
    check = actions.add_parser("check", help="check every journey (file:line: reason for each mistake; exit 1)")
    _common(check)
    check.set_defaults(run=cmd_check)
    runs = actions.add_parser("runs", help="a person's runs of a journey: their step and next timer")
    runs.add_argument("key")
    runs.add_argument("--profile", required=True, help="user_id:VALUE, anonymous_id:VALUE or email:VALUE")
    _common(runs)
    runs.set_defaults(run=cmd_runs)
    run = actions.add_parser("run", help="follow the log and fire timers, until stopped")
    _common(run)
    run.set_defaults(run=cmd_run)


def cmd_check(args: argparse.Namespace) -> int:
    config = engage_config(args)
    root = engage.folder(config)
    problems = definitions.check(root)
    for p in problems:
        print(f"intilery: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"{len(definitions.load(root))} journeys in {root}/{definitions.FOLDER}/: no mistake")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from collector.logs import setup_logging

    config = engage_config(args)
    setup_logging(config.log_format)
    return service.run(config)


def _store(config):
    target = db_target(config)
    if not target.startswith("postgres") and not Path(target).is_file():
        return None
    return open_journeys(target)


def cmd_list(args: argparse.Namespace) -> int:
    config = engage_config(args)
    try:
        journeys = definitions.load(engage.folder(config))
    except DefinitionError as exc:
        print("\n".join(f"intilery: {p}" for p in exc.problems), file=sys.stderr)
        return 1
    store = _store(config)
    try:
        rows = summary(store, journeys)
    finally:
        if store is not None:
            store.close()
    if not rows:
        print(f"intilery: no journeys (files in {definitions.FOLDER}/ of the engage folder)", file=sys.stderr)
        return 0
    print(f"{'journey':24} {'version':17} {'entered':>8} {'active':>7} {'exited':>7} {'converted':>9}  waiting per step")
    for r in rows:
        for v in r["versions"]:
            waiting = ", ".join(f"{s}: {n}" for s, n in v["waiting"].items()) or "-"
            mark = "" if v["current"] else " (earlier)"
            print(f"{r['key']:24} {v['version'] + mark:17} {v['entered']:>8} {v['active']:>7} {v['exited']:>7} "
                  f"{v['converted']:>9}  {waiting}")  # fmt: skip
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    kind, _, value = args.profile.partition(":")
    if not value or kind not in ("user_id", "anonymous_id", "email"):
        print("intilery: --profile is user_id:VALUE, anonymous_id:VALUE or email:VALUE", file=sys.stderr)
        return 2
    config = engage_config(args)
    store = _store(config)
    if store is None:
        print("intilery: no runs yet", file=sys.stderr)
        return 0
    try:
        runs = person_runs(store, args.key, [(kind, value)])
    finally:
        store.close()
    for r in runs:
        timer = iso(r["next_at"]) if r["next_at"] else "-"
        print(f"{r['id']}  {r['state']:7} {r['step'] or '-':24} next {timer}  {r['outcome'] or ''}  {orjson.dumps(r['instance']).decode()}")
    if not runs:
        print(f"intilery: no runs of {args.key} for {args.profile}", file=sys.stderr)
    return 0
