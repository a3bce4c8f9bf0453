"""Helpers for tests: a real collector in a subprocess and a small geo database (from
``bench``'s processes and geo database, which the benchmarks use too), waiting for a condition with a deadline, the log read whole.

Example::

    with CollectorProcess(tmp_path, sources=[{"name": "web", "write_key": "wk"}]) as collector:
        requests.post(collector.url + "/v1/track", ...)
    events = list(read_events(collector.data_dir))
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from collector.log.layout import EVENTS, LOGS
from collector.log.reader import DONE, Reader
from bench.geo import GEO_NETWORKS, build_geo_db  # noqa: F401 - the tests' one import point
from bench.processes import ChildProcess, CollectorProcess, free_port, stop_process, write_config  # noqa: F401


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    """Polls ``check()`` until it returns something truthy, and returns that; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


async def eventually(check: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "") -> Any:
    """``wait_until`` for async tests: awaits ``check()`` (sync or async) until it returns something
    truthy, and returns that.

    Fails (AssertionError) after ``timeout`` s with the last value seen; an exception raised
    by ``check`` (say, "the process died") ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}: last {last!r}")
        await asyncio.sleep(interval)


def assert_whole(data_dir: Path) -> None:
    """Every segment holds whole JSON lines (read through the log's reader); no temporary file is left."""
    data_dir = Path(data_dir)
    leftovers = [p for p in data_dir.glob("**/part-*") if p.name.endswith(".tmp")]
    assert not leftovers, f"left over: {leftovers}"
    for log_name in LOGS:
        reader = Reader(data_dir / log_name, log_name=log_name)
        for _record in reader.read():
            pass
        assert reader.quarantined == 0, f"{reader.quarantined} lines under {log_name}/ are not JSON objects"
        for segment, offset in reader.cursor.items():
            try:
                size = (data_dir / log_name / segment).stat().st_size if offset != DONE else offset
            except FileNotFoundError:  # compressed since it was read: the .gz is whole
                continue
            assert offset == size, f"torn line in {segment}"


def read_events(data_dir: Path, root: str = EVENTS, newest_first: bool = False, since: str | None = None):
    """Every stored event under ``data_dir/root`` from partitions >= ``since`` (a one-off read)."""
    return Reader(Path(data_dir) / root, since=since, newest_first=newest_first, log_name=root).events()
