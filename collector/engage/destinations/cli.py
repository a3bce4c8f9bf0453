"""``intilery destinations``: each destination's counts and last error; ``run`` (fill and send),
``failed NAME`` (dead deliveries with the answer that killed them), ``replay NAME [--since T] [--id ID]``,
``try NAME FILE.json`` (the request a sample event would make, sent nowhere)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from collector.engage.cli import engage_config, engage_flags
from collector.engage.definitions import DefinitionError
from collector.engage.destinations import consumer, definitions, service, webhooks
from collector.engage.outbox.store import open_outbox
from collector.profiles.database import db_target


def _common(parser: argparse.ArgumentParser) -> None:
    engage_flags(parser, "the outbox")


def add_parser(commands: Any) -> None:
    command = commands.add_parser("destinations", help="webhook destinations: counts, failures, replay, try, run")
    _common(command)
    command.set_defaults(run=cmd_list)
    actions = command.add_subparsers(dest="action")
    run = actions.add_parser("run", help="follow the log, fill the outbox and send it, until stopped")
    _common(run)
    run.set_defaults(run=cmd_run)
    failed = actions.add_parser("failed", help="a destination's dead deliveries, with the answer that killed each")
    failed.add_argument("name")
    failed.add_argument("--limit", type=int, default=20)
    _common(failed)
    failed.set_defaults(run=cmd_failed)
    replay = actions.add_parser("replay", help="send a destination's dead and failed deliveries again (enables it)")
    replay.add_argument("name")
    replay.add_argument("--since", help="only deliveries created at or after this time (ISO 8601)")
    replay.add_argument("--id", action="append", default=[], help="only this delivery (any state); repeatable")
    _common(replay)
    replay.set_defaults(run=cmd_replay)
    tried = actions.add_parser("try", help="print the request a sample event would make (nothing is sent)")
    tried.add_argument("name")
    tried.add_argument("file", help="a JSON file holding one event")
    _common(tried)
    tried.set_defaults(run=cmd_try)


def cmd_run(args: argparse.Namespace) -> int:
    from collector.logs import setup_logging

    config = engage_config(args)
    setup_logging(config.log_format)
    return service.run(config)


def _destinations(config) -> dict | None:
    try:
        return service.load(config)
    except DefinitionError as exc:
        print("\n".join(f"intilery: {p}" for p in exc.problems), file=sys.stderr)
        return None


def _outbox(config):
    target = db_target(config)
    if not target.startswith("postgres") and not Path(target).is_file():
        return None
    return open_outbox(target)


def summary(outbox, destinations: dict) -> list[dict]:
    """Each destination (configured, or with deliveries): its counts, whether disabled, its last error."""
    counts = outbox.counts() if outbox is not None else {}
    disabled = outbox.disabled() if outbox is not None else {}
    stats = outbox.stats() if outbox is not None else {}
    found = []
    for name in sorted(set(destinations) | set(counts)):
        c = counts.get(name, {})
        item = {"name": name, "configured": name in destinations,
                "enabled": name in destinations and destinations[name].enabled and name not in disabled,
                **{s: c.get(s, 0) for s in ("delivered", "pending", "in_flight", "failed", "dead")},
                **{s: int(stats.get(name, {}).get(f"outcome:{s}", 0)) for s in ("filtered", "no_consent")},
                "disabled": disabled[name][1] if name in disabled else None,
                "last_error": outbox.last_error(name) if outbox is not None else None}  # fmt: skip
        found.append(item)
    return found


def cmd_list(args: argparse.Namespace) -> int:
    config = engage_config(args)
    destinations = _destinations(config)
    if destinations is None:
        return 1
    outbox = _outbox(config)
    try:
        rows = summary(outbox, destinations)
    finally:
        if outbox is not None:
            outbox.close()
    if not rows:
        print(f"intilery: no destinations (files in {definitions.FOLDER}/ of the engage folder)", file=sys.stderr)
        return 0
    print(f"{'destination':24} {'delivered':>9} {'pending':>8} {'failed':>7} {'dead':>6} {'not sent':>8}  last error")
    for r in rows:
        last = r["last_error"]
        said = f"{_when(last['at'])} {last['error']}" if last else "-"
        flag = "" if r["enabled"] else (" (disabled: " + (r["disabled"] or "enabled: false") + ")" if r["configured"] else " (no file)")
        skipped = r["filtered"] + r["no_consent"]  # the filter, or no consent
        print(f"{r['name']:24} {r['delivered']:>9} {r['pending'] + r['in_flight']:>8} {r['failed']:>7} {r['dead']:>6} "
              f"{skipped:>8}  {said}{flag}")  # fmt: skip
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    outbox = _outbox(engage_config(args))
    if outbox is None:
        print("intilery: no outbox yet", file=sys.stderr)
        return 1
    try:
        dead = outbox.deliveries(args.name, "dead", args.limit)
    finally:
        outbox.close()
    for d in dead:
        print(f"{d['id']}  {_when(d['updated'])}  attempts {d['attempts']}  status {d['last_status'] or '-'}  {d['last_error']}")
        if d["last_answer"]:
            print(f"    answer: {d['last_answer'][:300]}")
    if not dead:
        print(f"intilery: {args.name} has no dead deliveries", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            print(f"intilery: --since {args.since!r} is not an ISO 8601 time (2026-12-08T02:00:00Z)", file=sys.stderr)
            return 2
        since = (since if since.tzinfo else since.replace(tzinfo=timezone.utc)).timestamp()
    outbox = _outbox(engage_config(args))
    if outbox is None:
        print("intilery: no outbox yet", file=sys.stderr)
        return 1
    try:
        n = outbox.replay(args.name, since=since, ids=args.id)
        enabled = outbox.enable(args.name)
    finally:
        outbox.close()
    print(f"{n} deliveries of {args.name} due again{' (the destination is enabled again)' if enabled else ''}")
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    config = engage_config(args)
    destinations = _destinations(config)
    if destinations is None:
        return 1
    dest = destinations.get(args.name)
    if dest is None:
        print(f"intilery: no destination {args.name!r} (there are: {', '.join(sorted(destinations)) or 'none'})",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        event = orjson.loads(Path(args.file).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"intilery: {args.file}: cannot read a JSON event: {exc}", file=sys.stderr)
        return 1
    if not isinstance(event, dict):
        print(f"intilery: {args.file} holds one event, a JSON object", file=sys.stderr)
        return 1
    reason, body = consumer.sample(dest, event)
    if reason is not None:
        print({"filtered": "not sent: the destination's filter does not hold for this event",
               "no_consent": "not sent: the event's context.consent.categoryPreferences does not say true to every one of "
                             + ", ".join(dest.consent_categories)}[reason])  # fmt: skip
        return 0
    raw = orjson.dumps(body)
    msg_id = consumer.delivery_id(dest.name, event)
    print(f"POST {dest.url}")
    for name, value in webhooks.headers(dest.secrets, msg_id, raw).items():
        print(f"{name}: {value}")
    print()
    print(raw.decode())  # the bytes signed, as sent
    return 0


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
