"""The builder's pauses beside its collector: its run delay and the collector's CPU, from ``/proc``."""

from __future__ import annotations

import os
import time
from typing import Callable

YIELD_FACTOR = 5  # on a contended core the builder pauses this many times what its batch took ...
YIELD_MAX = 5.0  # ... for at most this many seconds, so profiles never stop
BUSY = 0.5  # of a CPU: a collector using more than this wants its core


class Yielding:
    """The builder's ``keep_going`` beside the collector: its collector first, also on a shared core.

    Nice 10 alone still leaves the builder a tenth of a core the collector wants, and more of
    the moments the collector waits for a disk. So between batches the builder looks at how long
    it waited for a CPU (Linux's run delay, ``/proc/self/schedstat``) against how long it ran,
    and at how busy its collector (``collector``, a pid) was meanwhile: waiting longer than
    running while the collector used more than ``BUSY`` of a CPU means the collector wants the
    core, and the builder pauses for ``YIELD_FACTOR`` times the batch's time on and waiting for
    the CPU (at most ``YIELD_MAX`` s): it then takes a few percent of that core. With an idle
    core, or an idle collector (catching up after a load, whatever else runs), it never pauses;
    elsewhere than Linux it never pauses either."""

    def __init__(self, keep_going: Callable[[], bool], collector: int) -> None:
        self.keep_going, self.collector, self.pauses, self.paused = keep_going, collector, 0, 0.0
        self.last = self._sample()

    def _sample(self) -> tuple[int, int, float, float] | None:
        stat, cpu = _schedstat(), _cpu_seconds(self.collector)
        return None if stat is None or cpu is None else (*stat, cpu, time.monotonic())

    def __call__(self) -> bool:
        now = self._sample()
        if now is not None and self.last is not None:
            ran, waited = now[0] - self.last[0], now[1] - self.last[1]
            busy = (now[2] - self.last[2]) > BUSY * (now[3] - self.last[3])
            if waited > ran > 0 and busy and self.keep_going():
                pause = min(YIELD_MAX, YIELD_FACTOR * (ran + waited) / 1e9)
                self.pauses, self.paused = self.pauses + 1, self.paused + pause
                until = time.monotonic() + pause
                while self.keep_going() and (left := until - time.monotonic()) > 0:
                    time.sleep(min(left, 0.2))  # a stop is taken within 0.2 s
                now = self._sample()
        self.last = now
        return self.keep_going()


def _cpu_seconds(pid: int) -> float | None:
    """The CPU seconds a process has used (None where Linux does not say, or it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _schedstat() -> tuple[int, int] | None:
    """This thread's nanoseconds on a CPU and waiting for one (None where Linux does not say)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            ran, waited, _ = f.read().split()
    except (OSError, ValueError):
        return None
    return int(ran), int(waited)
