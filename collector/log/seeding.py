"""The duplicate filter seeded at start from the file log: the ids stored in the last window."""

from __future__ import annotations

import time
from pathlib import Path

from collector.log.layout import EVENTS, hour_partition, iso_ms
from collector.log.reader import Reader


def recent_ids(data_dir: Path, window: float, limit: int) -> list[tuple[str, str]]:
    """The (source, messageId) of events stored in the last ``window`` seconds, oldest first: the newest ``limit``."""
    now = time.time()
    since = iso_ms(now - window)
    ids: list[tuple[str, str]] = []
    reader = Reader(data_dir / EVENTS, since=hour_partition(now - window), newest_first=True)
    for event in reader.events():
        message_id = event.get("messageId")
        if isinstance(message_id, str) and str(event.get("receivedAt", "")) >= since:
            ids.append((event.get("source"), message_id))
            if len(ids) >= limit:
                break
    ids.reverse()
    return ids
