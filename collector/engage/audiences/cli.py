"""``intilery audiences``: each audience's key, name, size and last update, as a table (``--json``: as
``GET /v1/audiences`` answers). The parser takes an optional sub-command (``actions``), so that
``intilery audiences preview FILE`` sits beside the listing; without one, the listing runs.

The audiences are the definitions in force, read from the profile database (``--profiles-db``,
default ``DATA_DIR/profiles.db``) as the collector's API reads them (``routes.py``): a definition
added to the folder shows once the profile builder has counted it over the log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from collector.config import load_config
from collector.engage.audiences import routes
from collector.profiles.database import db_target, open_store

LISTING_FLAGS = ("data_dir", "profiles_db")


def add_parser(commands: Any) -> argparse._SubParsersAction:
    """Register ``intilery audiences``; returns its sub-commands, where others (``preview``) register."""
    command = commands.add_parser("audiences", help="the audiences: each one's size and last update (audiences preview: a draft)",
                                  description="Without a sub-command: every audience in force, its key, name, size and "
                                              "last update.")  # fmt: skip
    listing_flags(command)
    command.set_defaults(run=cmd_list)
    return command.add_subparsers(dest="audiences_action", metavar="SUBCOMMAND", required=False)


def listing_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    parser.add_argument("--data-dir", help="the collector's data directory (default ./data)")
    parser.add_argument("--profiles-db", help="profile database: a SQLite path (default DATA_DIR/profiles.db) or postgresql://...")
    parser.add_argument("--json", action="store_true", help="as GET /v1/audiences answers, one JSON document")


def cmd_list(args: argparse.Namespace) -> int:
    config = load_config(args.config, {name: getattr(args, name, None) for name in LISTING_FLAGS}, with_dev_source=False)
    target = db_target(config)
    if not target.startswith(("postgresql://", "postgres://")) and not Path(target).is_file():
        print(f"intilery: no profile database at {target} yet (is a collector with profiles running on this "
              "data directory?)", file=sys.stderr)  # fmt: skip
        return 1
    store = open_store(target, reads_only=True)
    try:
        if store.outdated:
            print(f"intilery: the profile database at {target} is being built again: retry shortly", file=sys.stderr)
            return 1
        in_force = routes.InForce()
        definitions = in_force.of(store)
        found = routes.listing(definitions, store)
        backfilling = in_force.backfilling(store)
    finally:
        store.close()
    if backfilling:
        print("intilery: new definitions are being counted over the log: they show here once that is complete",
              file=sys.stderr)  # fmt: skip
    if not found:
        print("intilery: no audience is in force (engage/audiences/*.yaml, read by a collector with profiles)", file=sys.stderr)
    print(orjson.dumps({"data": found}).decode() if args.json else table(found) if found else "", end="\n" if args.json or found else "")
    return 0


def table(found: list[dict]) -> str:
    """The listing as aligned columns: key, name, size, last update ("never" when nobody ever entered)."""
    rows = [("key", "name", "size", "last update")]
    rows += [(a["key"], a["name"], f"{a['size']:,}", a["updated_at"] or "never") for a in found]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
