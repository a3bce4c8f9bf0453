"""``intilery profiles`` (follow the log into the profile database), ``intilery profile show`` and ``search``."""

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
from collector.profiles import search, views
from collector.profiles.rules import PROFILE_FORM, parse_profile
from collector.profiles.database import db_target, open_store, take_lock
from collector.profiles.service import follow


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
    find = actions.add_parser("search", help="find people by the beginning of an identifier or a trait")
    find.add_argument("query", nargs="?", default="",
                      help="grace (any identifier), email:gra, user_id:user-, anonymous_id:…, plan:pro (a trait); "
                           "none: everyone")  # fmt: skip
    find.add_argument("--limit", type=int, default=search.DEFAULT_LIMIT * 2, help="at most this many (default 20)")
    _common(find)
    find.set_defaults(run=cmd_search)


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


def _open(config):
    """The profile database to read, or None (said on standard error) when there is none yet."""
    target = db_target(config)
    if not target.startswith("postgres") and not Path(target).is_file():
        print(f"intilery: no profile database at {target} yet (is a collector with profiles running on this "
              "data directory?)", file=sys.stderr)  # fmt: skip
        return None
    return open_store(target, reads_only=True)


def cmd_search(args: argparse.Namespace) -> int:
    """One line a person: profile id, identifiers, email and name when known."""
    if not 1 <= args.limit <= search.MAX_LIMIT:
        print(f"intilery: --limit is from 1 to {search.MAX_LIMIT}", file=sys.stderr)
        return 2
    config = _config(args)
    store = _open(config)
    if store is None:
        return 1
    try:
        found, more = search.search(store, search.parse(args.query, tuple(config.identifier_traits)), args.limit)
    finally:
        store.close()
    if not found:
        print(f"intilery: no profile matches {args.query!r}", file=sys.stderr)
        return 1
    for match in found:
        print(f"{match['profile_id']}  {' '.join(match['identifiers'][:6])}"
              f"{' …' if len(match['identifiers']) > 6 else ''}  last seen {match['last_seen']}")  # fmt: skip
    if more:
        print(f"intilery: more than {args.limit} match: narrow the search, or pass --limit", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config = _config(args)
    parsed = parse_profile(args.identifier)
    if parsed is None:
        print(f"intilery: {args.identifier!r} is not {PROFILE_FORM}", file=sys.stderr)
        return 2
    store = _open(config)
    if store is None:
        return 1
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
