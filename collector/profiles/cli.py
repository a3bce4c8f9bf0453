"""``intilery profiles`` (follow the log into the profile database) and ``intilery profile show``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from collector.config import STORES, load_config
from collector.logs import setup_logging
from collector.profiles import views
from collector.profiles.rules import PROFILE_FORM, parse_profile
from collector.profiles.service import db_target, follow, open_store, take_lock


def _config(args: argparse.Namespace):
    flags = ("data_dir", "profiles_db", "store", "nats_url", "nats_stream")
    return load_config(args.config, {name: getattr(args, name, None) for name in flags}, with_dev_source=False)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    parser.add_argument("--data-dir", help="the collector's data directory (default ./data)")
    parser.add_argument("--profiles-db", help="profile database: a SQLite path (default DATA_DIR/profiles.db) or postgresql://...")


def add_parser(commands: Any) -> None:
    """Register ``intilery profiles`` and ``intilery profile``."""
    command = commands.add_parser("profiles", help="follow the log and keep the profile database current")
    _common(command)
    command.add_argument("--store", choices=STORES, help="the log to follow: file (DATA_DIR/events, default) or nats")
    command.add_argument("--nats-url", help="NATS server(s) for --store nats")
    command.add_argument("--nats-stream", help="JetStream stream name (default INTILERY)")
    command.add_argument("--rebuild", action="store_true", help="empty the profile database and build it from the whole log")
    command.add_argument("--once", action="store_true", help="read what the log holds now, then exit")
    command.set_defaults(run=cmd_profiles)
    profile = commands.add_parser("profile", help="look a person up in the profile database")
    actions = profile.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="traits, identifiers and metadata of one person")
    show.add_argument("identifier", help=PROFILE_FORM)
    _common(show)
    show.set_defaults(run=cmd_show)


def cmd_profiles(args: argparse.Namespace) -> int:
    config = _config(args)
    setup_logging(config.log_format)
    lock = take_lock(Path(config.data_dir))
    if lock is None:
        print(f"intilery: another builder holds {config.data_dir}/.locks/profiles.lock (a collector with profiles on?)",
              file=sys.stderr)  # fmt: skip
        return 1
    stopped: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, frame: stopped.append(number))
    try:
        stats = follow(config, lambda: not stopped, rebuild=args.rebuild, once=args.once)
        print(orjson.dumps(stats).decode(), flush=True)
    finally:
        os.close(lock)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config = _config(args)
    parsed = parse_profile(args.identifier)
    if parsed is None:
        print(f"intilery: {args.identifier!r} is not {PROFILE_FORM}", file=sys.stderr)
        return 2
    target = db_target(config)
    if not target.startswith("postgres") and not Path(target).is_file():
        print(f"intilery: no profile database at {target} yet", file=sys.stderr)
        return 1
    store = open_store(target, reads_only=True)
    try:
        pid = store.find(*parsed)
        if pid is None:
            print(f"intilery: no profile holds {args.identifier}", file=sys.stderr)
            return 1
        shown = {"metadata": views.metadata(store, pid), "external_ids": views.external_ids(store, pid),
                 "traits": views.traits(store, pid)}  # fmt: skip
        print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    finally:
        store.close()
    return 0
