"""Crash and rewrite recovery when a file store opens: what a crashed (or killed) process left.

A rewrite cut short is finished or rolled back; the other instances' orphan segments have a
torn last line cut (kept in ``rejected/``, or dropped where it is delivered again) and are
compressed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson

from collector.log import rewrite, segments
from collector.log.layout import EVENTS, REJECTED, day_partition, iso_ms
from collector.log.segment_log import SegmentLog
from collector.log.segments import compress

log = logging.getLogger("intilery.store")


def recover(data_dir: Path, instance: str, rejected: SegmentLog, *, torn_lines_rejected: bool) -> None:
    """Finish what a crashed (or killed) process left: a rewrite, torn lines cut (to rejected/), gzip.

    ``instance``: this store's own (its segments are not orphans); ``rejected``: where torn
    lines go when ``torn_lines_rejected``, else they are cut only (their writer delivers them again).
    """
    if rewrite.recover(data_dir):
        log.warning("finished or rolled back a rewrite cut short", extra={"data_dir": str(data_dir)})
    roots = (data_dir / EVENTS, data_dir / REJECTED)
    torn: list[bytes] = []
    for path, _instance in segments.orphan_segments(data_dir, roots, instance):
        if path.name.endswith(".tmp"):  # a compression cut short (or redone just now)
            path.unlink(missing_ok=True)
            continue
        gz = path.with_name(path.name + ".gz")
        if gz.exists():  # compressed and renamed before the crash; the original is a leftover
            path.unlink()
            continue
        tail = segments.trim_torn_tail(path)
        if tail and torn_lines_rejected:
            log.warning("moved a torn line to rejected/", extra={"segment": str(path), "bytes": len(tail)})
            torn.append(
                orjson.dumps(
                    {
                        "receivedAt": iso_ms(time.time()),
                        "source": None,
                        "code": "torn_line",
                        "message": f"partial line at the end of {path.name}, left by a crash",
                        "payload": tail.decode("utf-8", "replace"),
                    }
                )
                + b"\n"
            )
        elif tail:
            log.warning("cut a torn line left by a crash (it is delivered again)",
                        extra={"segment": str(path), "bytes": len(tail)})  # fmt: skip
        compress(path)
    if torn:
        rejected.write(day_partition(time.time()), b"".join(torn))
        rejected.sync()
