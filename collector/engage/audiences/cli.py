"""``intilery audiences``: each audience's key, name, size and last update, as a table (``--json``: as
``GET /v1/audiences`` answers). The parser takes an optional sub-command, ``intilery audiences
preview FILE``, beside the listing; without one, the listing runs.

The audiences are the definitions in force, read from the profile database (``--profiles-db``,
default ``DATA_DIR/profiles.db``) as the collector's API reads them (``routes.py``): a definition
added to the folder shows once the profile builder has counted it over the log.

``preview`` answers, for a draft audience file (the format of ``engage/audiences/*.yaml``; it may
name the published audiences and computed traits), how many people match it now and ten of them,
without publishing anything: the batch evaluation (``batch.py``) over the log and the profile
database, of the draft and only what it names. A draft with the key of a published audience
stands in for it (a change previewed before it is made)::

    $ intilery audiences preview drafts/big_spenders.yaml
    big_spenders (Big spenders): 1,234 of 50,000 people match now (not published; 2.1 s)
    prf_0a1b...  user_id:u-42  email:ann@example.com
    ...
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from collector.config import load_config
from collector.engage import definitions
from collector.engage.audiences import batch, routes
from collector.engage.conditions import ConditionError, audiences_of, traits_of
from collector.profiles.database import db_target, open_store
from collector.profiles.rules import EMAIL, USER_ID

LISTING_FLAGS = ("data_dir", "profiles_db")
SAMPLE = 10  # people a preview shows


def add_parser(commands: Any) -> argparse._SubParsersAction:
    """Register ``intilery audiences``; returns its sub-commands, where others (``preview``) register."""
    command = commands.add_parser("audiences", help="the audiences: each one's size and last update (audiences preview: a draft)",
                                  description="Without a sub-command: every audience in force, its key, name, size and "
                                              "last update.")  # fmt: skip
    listing_flags(command)
    command.set_defaults(run=cmd_list)
    actions = command.add_subparsers(dest="audiences_action", metavar="SUBCOMMAND", required=False)
    preview = actions.add_parser("preview", help="how many people a draft audience file matches now, and ten of them")
    preview.add_argument("file", help="a draft audience (YAML, the format of engage/audiences/*.yaml)")
    listing_flags(preview)
    preview.add_argument("--store", choices=("file", "nats"),
                         help="the log: file (DATA_DIR/events); with the NATS store, --store file --data-dir the output of intilery archive")  # fmt: skip
    preview.set_defaults(run=cmd_preview)
    return actions


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


@dataclass
class Preview:
    key: str
    name: str
    size: int  # people who match now
    people: int  # people in the profile database
    sample: list[dict] = field(default_factory=list)  # {profile_id, user_id, email}
    seconds: float = 0.0


def draft(path: Path, published: definitions.Definitions, environ: dict | None = None) -> definitions.Definitions:
    """The definitions to evaluate for a draft: the audiences and computed traits it names (and
    those they name), then the draft. Raises DefinitionError (``file:line: reason``)."""
    try:
        data = definitions.load_yaml(path, environ)
        if not isinstance(data, dict):
            raise ConditionError("the file holds a mapping of the definition's keys", getattr(data, "line", 1))
        key = data.get("key", path.stem)
        # the draft's file need not be named for its key (it is not published)
        audience = definitions._audience(data, path.with_name(f"{key}.yaml") if isinstance(key, str) else path)
    except ConditionError as exc:
        raise definitions.DefinitionError([exc.at(str(path))]) from None
    named, todo = set(), list(audiences_of(audience.condition))
    while todo:
        other = todo.pop()
        if other in named:
            continue
        if other == audience.key:
            raise definitions.DefinitionError([f"{path}: the draft names itself (audience {other!r}), through the "
                                               "audiences it names"])  # fmt: skip
        if other not in published.audiences:
            raise definitions.DefinitionError([f"{path}: the condition names audience {other!r}, and there is none "
                                               f"(audiences: {', '.join(sorted(published.audiences)) or 'none'})"])  # fmt: skip
        named.add(other)
        todo += audiences_of(published.audiences[other].condition)
    out = definitions.Definitions()
    out.audiences = {k: a for k, a in published.audiences.items() if k in named}  # (in their order)
    out.audiences[audience.key] = audience
    read = set().union(*(traits_of(a.condition) for a in out.audiences.values()))
    out.traits = {k: t for k, t in published.traits.items() if k in read}
    return out


def preview(config, path: Path, now: float | None = None) -> Preview:
    """The draft's answer now (raises DefinitionError, batch.BatchError)."""
    started = time.perf_counter()
    wanted = draft(path, definitions.load(definitions.folder(config)))
    key = next(reversed(wanted.audiences))
    store = batch._open(config)
    try:
        answers = batch.evaluate_all(config, wanted, now, store=store)
        matched = sorted(pid for pid, answer in answers.items() if key in answer.members)
        sample = []
        loaded = store.load_profiles(matched[:SAMPLE])
        for pid in matched[:SAMPLE]:
            idents = sorted(loaded[pid][0].members) if pid in loaded else []
            sample.append({"profile_id": pid, "user_id": next((v for k, v in idents if k == USER_ID), None),
                           "email": next((v for k, v in idents if k == EMAIL), None)})  # fmt: skip
        people = store.profile_count()
    finally:
        store.close()
    audience = wanted.audiences[key]
    return Preview(key, audience.name, len(matched), people, sample, time.perf_counter() - started)


def cmd_preview(args: argparse.Namespace) -> int:
    config = load_config(args.config, {name: getattr(args, name, None) for name in (*LISTING_FLAGS, "store")},
                         with_dev_source=False)  # fmt: skip
    path = Path(args.file)
    if not path.is_file():
        print(f"intilery: no file {args.file}", file=sys.stderr)
        return 2
    try:
        shown = preview(config, path)
    except definitions.DefinitionError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except batch.BatchError as exc:
        print(f"intilery: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps({k: v for k, v in shown.__dict__.items() if k != "seconds"}).decode())
        return 0
    print(f"{shown.key} ({shown.name}): {shown.size:,} of {shown.people:,} people match now "
          f"(not published; {shown.seconds:.1f} s)")  # fmt: skip
    for person in shown.sample:
        known = "  ".join(f"{k}:{person[k]}" for k in ("user_id", "email") if person[k])
        print(f"{person['profile_id']}  {known}".rstrip())
    return 0
