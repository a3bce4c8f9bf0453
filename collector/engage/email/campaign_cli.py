"""``intilery campaign send --audience KEY --template NAME [--id ID] [--dry-run]`` (queue a broadcast,
a progress line on standard error as it goes) and ``intilery campaign status ID``."""

from __future__ import annotations

import argparse
import sys

import orjson

from collector.config import load_config
from collector.engage import definitions
from collector.engage.definitions import DefinitionError
from collector.engage.email import campaigns, templates
from collector.engage.outbox.store import open_outbox
from collector.profiles.cli import _open
from collector.profiles.database import db_target


def add_parser(commands) -> None:
    campaign = commands.add_parser("campaign", help="email broadcasts to an audience: send one, see its status")
    actions = campaign.add_subparsers(dest="action", required=True)
    send = actions.add_parser("send", help="queue one message per member with an email address and consent")
    send.add_argument("--audience", required=True, help="the audience's key (engage/audiences/KEY.yaml)")
    send.add_argument("--template", required=True, help="the template (engage/templates/NAME.liquid)")
    send.add_argument("--id", help="the campaign's id (default: the audience, template and UTC day's digest); "
                                   "the same id again goes on where it stopped, sending nobody a second copy")  # fmt: skip
    send.add_argument("--dry-run", action="store_true", help="count who would get it; queue nothing")
    send.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    send.add_argument("--data-dir", help="the data directory")
    send.set_defaults(run=cmd_send)
    status = actions.add_parser("status", help="a campaign's counts: queued, sent, failed, dead, skipped by reason")
    status.add_argument("id")
    status.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    status.add_argument("--data-dir", help="the data directory")
    status.set_defaults(run=cmd_status)


def _config(args):
    return load_config(args.config, overrides={"data_dir": args.data_dir}, with_dev_source=False)


def cmd_send(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        template = templates.load(definitions.folder(config), args.template)
    except DefinitionError as exc:
        for problem in exc.problems:
            print(f"intilery: {problem}", file=sys.stderr)
        return 1
    profiles = _open(config)
    if profiles is None:
        return 1
    outbox = open_outbox(db_target(config))
    try:
        def progress(walked: int, counts: dict) -> None:
            print(f"\rcampaign: {walked} members looked at, {counts.get('queued', 0)} queued", end="", file=sys.stderr, flush=True)

        try:
            counts = campaigns.send(outbox, profiles, config, args.audience, template, args.id, args.dry_run, progress)
        except templates.RenderError as exc:
            print(f"\nintilery: {exc}", file=sys.stderr)
            return 1
        print(file=sys.stderr)
    finally:
        profiles.close()
        outbox.close()
    print(orjson.dumps(counts).decode())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    outbox = open_outbox(db_target(config))
    try:
        campaigns.create(outbox)
        found = campaigns.status(outbox, args.id)
    finally:
        outbox.close()
    if found is None:
        print(f"intilery: no campaign has the id {args.id!r}", file=sys.stderr)
        return 1
    print(orjson.dumps(found).decode())
    return 0
