"""``intilery tail``: follow the file log store and print each new event as it is written.

It keeps working across rotation: a segment that is closed and compressed while being
followed is finished from its ``.gz`` (from the same offset), and new segments are picked up.
"""

from __future__ import annotations

import gzip
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

import orjson

from collector.store.segments import parse_name


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


class Follower:
    """Remembers how far each segment has been read; ``poll()`` returns the new whole lines."""

    def __init__(self, root: Path, from_start: bool = False) -> None:
        self.root = root
        self.offsets: dict[str, int] = {}  # segment stem (…ndjson) -> bytes read
        if not from_start:
            for path in self._segments():
                self.offsets[self._stem(path)] = self._size(path)

    def _segments(self) -> list[Path]:
        found = [p for p in self.root.glob("**/part-*.ndjson*") if (m := parse_name(p.name)) and not m["tmp"]]
        return sorted(found, key=lambda p: (p.parent.as_posix(), p.name))

    @staticmethod
    def _stem(path: Path) -> str:
        return str(path)[: -len(".gz")] if path.suffix == ".gz" else str(path)

    @staticmethod
    def _size(path: Path) -> int:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return len(fh.read())
        return path.stat().st_size

    def poll(self) -> list[bytes]:
        lines: list[bytes] = []
        for path in self._segments():
            stem = self._stem(path)
            if path.suffix == ".gz" and Path(stem).exists():
                continue  # being compressed: read the original
            offset = self.offsets.get(stem, 0)
            try:
                if path.suffix == ".gz":
                    with gzip.open(path, "rb") as fh:
                        data = fh.read()[offset:]
                else:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        data = fh.read()
            except (FileNotFoundError, EOFError, OSError):
                continue  # renamed or half-written meanwhile: next poll
            whole = data[: data.rfind(b"\n") + 1]
            self.offsets[stem] = offset + len(whole)
            lines.extend(whole.splitlines())
        return lines


def follow(
    data_dir: Path,
    *,
    as_json: bool = False,
    from_start: bool = False,
    interval: float = 0.3,
    out: TextIO = sys.stdout,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    follower = Follower(Path(data_dir) / "events", from_start)
    while keep_going():
        for line in follower.poll():
            if as_json:
                out.write(line.decode("utf-8", "replace") + "\n")
            else:
                try:
                    out.write(describe(orjson.loads(line)) + "\n")
                except orjson.JSONDecodeError:
                    continue
        out.flush()
        time.sleep(interval)
