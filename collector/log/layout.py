"""Where the log keeps what: the two logs, their partitions, segment names, the time format.

DESIGN.md's layout, in one place::

    <data_dir>/events/dt=2026-11-28/hr=13/part-<instance>-<seq>.ndjson      open segment
    <data_dir>/events/dt=2026-11-28/hr=13/part-<instance>-<seq>.ndjson.gz   closed segment
    <data_dir>/rejected/dt=2026-11-28/part-<instance>-<seq>.ndjson          dead letters
    <data_dir>/.locks/<instance>.lock                                       held by the running process

Partitions are by ``receivedAt`` (UTC): by hour for events, by day for dead letters.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from pathlib import Path

EVENTS, REJECTED = "events", "rejected"
LOGS = (EVENTS, REJECTED)
LOCK_DIR = ".locks"
GZ, TMP = ".gz", ".tmp"

_NAME = re.compile(r"^part-(?P<instance>.+)-(?P<seq>\d+)\.ndjson(?P<gz>\.gz)?(?P<tmp>\.tmp)?$")
PARTITION = {
    EVENTS: re.compile(r"dt=\d{4}-\d{2}-\d{2}/hr=\d{2}"),
    REJECTED: re.compile(r"dt=\d{4}-\d{2}-\d{2}"),
}
PARTITION_GLOB = {EVENTS: "dt=*/hr=*", REJECTED: "dt=*"}


def segment_name(instance: str, seq: int) -> str:
    return f"part-{instance}-{seq:06d}.ndjson"


def parse_name(name: str) -> re.Match | None:
    """The parts of a segment's file name (``instance``, ``seq``, ``gz``, ``tmp``), or None."""
    return _NAME.match(name)


def plain_name(name: str) -> str:
    """A segment's name without ``.gz``: the same segment open and closed."""
    return name[: -len(GZ)] if name.endswith(GZ) else name


def hour_partition(epoch: float) -> str:
    return _hour_partition(int(epoch // 3600))


@lru_cache(maxsize=64)
def _hour_partition(hour: int) -> str:
    # cached: every event of an hour shares it, and strftime costs about 1 µs
    return time.strftime("dt=%Y-%m-%d/hr=%H", time.gmtime(hour * 3600))


def day_partition(epoch: float) -> str:
    return time.strftime("dt=%Y-%m-%d", time.gmtime(epoch))


def partition(log_name: str, epoch: float) -> str:
    """The partition a line received at ``epoch`` goes to in ``log_name``."""
    return day_partition(epoch) if log_name == REJECTED else hour_partition(epoch)


def partition_of_received(log_name: str, received_at: object) -> str | None:
    """The partition of a stored line's ``receivedAt`` text, or None when it is not one."""
    if isinstance(received_at, str) and re.match(r"\d{4}-\d{2}-\d{2}T\d{2}", received_at):
        day = f"dt={received_at[:10]}"
        return day if log_name == REJECTED else f"{day}/hr={received_at[11:13]}"
    return None


def partitions(root: Path, log_name: str, since: str | None = None) -> list[str]:
    """The partitions under ``root`` (the log's directory) from ``since`` on, oldest first."""
    found = (p.relative_to(root).as_posix() for p in root.glob(PARTITION_GLOB[log_name]) if p.is_dir())
    return sorted(p for p in found if since is None or p >= since)


def iso_ms(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds, as ``receivedAt`` is stored: 2026-11-28T13:04:05.678Z."""
    millis = int(epoch * 1000)
    return _iso_seconds(millis // 1000) + f".{millis % 1000:03d}Z"


@lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    # cached: strftime costs about 1 µs, and nearly every event of a second shares it
    utc = time.gmtime(seconds)
    return f"{utc.tm_year:04d}" + time.strftime("-%m-%dT%H:%M:%S", utc)  # %Y does not pad years before 1000
