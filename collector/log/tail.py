"""``intilery tail``: follow the file log store and print each new event as it is written.

It reads through the log's one ``Reader``: across rotation and compression, whole lines
only, each closed segment decompressed at most once, and nothing opened while idle.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from collector.log.layout import EVENTS
from collector.log.reader import Reader


def describe(event: dict) -> str:
    """One readable line: time, type, event or page name, user, a few context fields."""
    context = event.get("context") if isinstance(event.get("context"), dict) else {}
    name = event.get("event") or event.get("name") or event.get("groupId") or event.get("previousId") or ""
    user = event.get("userId")
    who = f"user={user}" if user else f"anon={str(event.get('anonymousId', ''))[:12]}"
    parts = [str(event.get("receivedAt", ""))[11:23], f"{event.get('type', '?'):8}", f"{str(name)[:28]:28}", who]
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    if page.get("path"):
        parts.append(f"page={page['path']}")
    browser, os_ = context.get("browser") or {}, context.get("os") or {}
    if browser.get("name"):
        parts.append(f"ua={browser['name']}/{os_.get('name', '?')}/{(context.get('device') or {}).get('type', '?')}")
    location = context.get("location") or {}
    if location.get("city") or location.get("countryCode"):
        parts.append(f"loc={location.get('city', '')},{location.get('countryCode', '')}")
    if context.get("ip"):
        parts.append(f"ip={context['ip']}")
    if event.get("source"):
        parts.append(f"source={event['source']}")
    return "  ".join(parts)


def follow(
    data_dir: Path,
    *,
    as_json: bool = False,
    from_start: bool = False,
    interval: float = 0.3,
    out: TextIO = sys.stdout,
    keep_going: Callable[[], bool] = lambda: True,
) -> Reader:
    """Print each new event until ``keep_going()`` is false; returns the reader (its stats)."""
    root = Path(data_dir) / EVENTS
    reader = Reader(root) if from_start else Reader.at_end(root)
    while keep_going():
        for record in reader.read():
            out.write(record.line.decode("utf-8", "replace") if as_json else describe(record.event))
            out.write("\n")
        out.flush()
        time.sleep(interval)
    return reader


def add_parser(commands: Any) -> None:
    """Register ``intilery tail``."""
    tail = commands.add_parser("tail", help="follow the event store, one line per event")
    tail.add_argument("--data-dir", default=os.environ.get("INTILERY_DATA_DIR", "data"),
                      help="the collector's data directory (default ./data, or INTILERY_DATA_DIR)")  # fmt: skip
    tail.add_argument("--json", action="store_true", help="print the stored JSON lines as they are")
    tail.add_argument("--from-start", action="store_true", help="print what is already stored first")
    tail.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(f"intilery: {data_dir} does not exist yet; waiting for events", file=sys.stderr)
    try:
        follow(data_dir, as_json=args.json, from_start=args.from_start)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0
