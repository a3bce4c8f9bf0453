"""``intilery audiences``: each audience's key, name, size and last update, as a table (``--json``: as
``GET /v1/audiences`` answers). The parser takes an optional sub-command (``actions``), so that
``intilery audiences preview FILE`` sits beside the listing; without one, the listing runs.

The definitions are read from the configuration's ``engage_dir`` (``--engage-dir``), the sizes from
its profile database (``--profiles-db``, default ``DATA_DIR/profiles.db``), as the collector reads
them; a definition with a mistake is said (file, line, reason) and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from collector.config import load_config
from collector.engage.audiences import routes
from collector.engage.definitions import DefinitionError, folder, load
from collector.profiles.database import db_target, open_store

LISTING_FLAGS = ("data_dir", "profiles_db", "engage_dir")


def add_parser(commands: Any) -> argparse._SubParsersAction:
    """Register ``intilery audiences``; returns its sub-commands, where others (``preview``) register."""
    command = commands.add_parser("audiences", help="the audiences: each one's size and last update (audiences preview: a draft)",
                                  description="Without a sub-command: every audience's key, name, size and last update.")  # fmt: skip
    listing_flags(command)
    command.set_defaults(run=cmd_list)
    return command.add_subparsers(dest="audiences_action", metavar="SUBCOMMAND", required=False)


def listing_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    parser.add_argument("--data-dir", help="the collector's data directory (default ./data)")
    parser.add_argument("--profiles-db", help="profile database: a SQLite path (default DATA_DIR/profiles.db) or postgresql://...")
    parser.add_argument("--engage-dir", help="the definitions' folder (default engage/ beside the configuration file)")
    parser.add_argument("--json", action="store_true", help="as GET /v1/audiences answers, one JSON document")


def cmd_list(args: argparse.Namespace) -> int:
    config = load_config(args.config, {name: getattr(args, name, None) for name in LISTING_FLAGS}, with_dev_source=False)
    try:
        in_force = routes.InForce(config, load(folder(config)))
    except DefinitionError as exc:
        print(f"intilery: the definitions in {folder(config)} have mistakes:", file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return 1
    if not in_force.definitions.audiences:
        print(f"intilery: no audience is defined (none in {folder(config) / 'audiences'})", file=sys.stderr)
        if args.json:
            print(orjson.dumps({"data": []}).decode())
        return 0
    target = db_target(config)
    store = None
    if target.startswith(("postgresql://", "postgres://")) or Path(target).is_file():
        store = open_store(target, reads_only=True)
    else:
        print(f"intilery: no profile database at {target} yet: every size is 0", file=sys.stderr)
    try:
        found = routes.listing(in_force, store) if store is not None else [
            {"key": k, "name": in_force.definitions.audiences[k].name, "size": 0, "updated_at": None} for k in in_force.keys()]
    finally:
        if store is not None:
            store.close()
    print(orjson.dumps({"data": found}).decode() if args.json else table(found))
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
