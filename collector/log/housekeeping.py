"""The file store's upkeep between commits: when partitions close, and ``rejected/``'s retention.

Dead letters hold what clients sent (scrubbed, but personal data all the same): they are kept
to find out why something was refused, not for ever.
"""

from __future__ import annotations

import logging
from pathlib import Path

from collector.log import rewrite, segments
from collector.log.layout import REJECTED, day_partition, parse_name

log = logging.getLogger("intilery.store")

# How long a partition stays open after its hour (or day, for rejected/) is over: a request
# is stamped before its body arrives (up to client_timeout), so late lines keep coming for a
# while, and closing at once would open a new tiny segment for each of them.
LATE_LINES_SECONDS = 60.0
TRIM_EVERY_SECONDS = 60.0  # how often rejected/ is checked against its retention and size cap


def trim_rejected(data_dir: Path, now: float, retention_days: float, max_bytes: int) -> bool:
    """Delete closed ``rejected/`` segments past their retention, then the oldest beyond the size cap.

    Open segments are left alone. False when a rewrite held the data directory: nothing was
    deleted, the trim is for the next tick.
    """
    closed = sorted(
        (p for p in (data_dir / REJECTED).glob("dt=*/part-*.ndjson.gz") if parse_name(p.name)),
        key=lambda p: (p.parent.name, p.name),
    )
    sizes = {p: p.stat().st_size for p in closed}
    total = sum(sizes.values())
    expired = day_partition(now - retention_days * 86400) if retention_days else ""
    removed = 0
    doomed = []
    for path in closed:
        too_old = path.parent.name < expired
        too_big = max_bytes and total > max_bytes
        if not (too_old or too_big):
            break
        doomed.append(path)
        total -= sizes[path]
    if doomed:
        # not between a rewrite's check and its rename; the writer's thread never waits for
        # a rewrite (a CLI erasure's): held, the trim is left for the next tick
        with rewrite.lock(data_dir, wait=False) as held:
            if not held:
                return False
            for path in doomed:
                path.unlink(missing_ok=True)
                segments.fsync_dir(path.parent)
                removed += 1
    if removed:
        log.info("old dead letters deleted", extra={"segments": removed, "kept_bytes": total})
    return True
