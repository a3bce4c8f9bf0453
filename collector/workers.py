"""``intilery serve --workers N``: N processes sharing one port, supervised.

Python runs one event loop on one core, so the collector scales with cores by running
several processes. Each worker is a fork of the supervisor that runs
``serve(config, reuse_port=True)`` (``serving.serve``, handed over by ``intilery serve``, so
this module imports nothing of the server): every worker binds the port with
``SO_REUSEPORT`` and the kernel spreads new connections over them. A worker has its own
event loop, its own store writer and its own store instance (the file store locks a free
``<host>_<n>`` name, so two workers never write the same segment).

The supervisor::

    supervise ─ fork ─▶ worker 0 ─▶ serve(reuse_port) ─▶ FileStore instance host_0
              ├ fork ─▶ worker 1 ─▶ serve(reuse_port) ─▶ FileStore instance host_1
              └ waits for SIGCHLD / SIGTERM / SIGINT:
                  a worker died      → fork a new one in its place (its store recovers
                                       what the dead one left: torn line, compression)
                  SIGTERM or SIGINT  → SIGTERM to every worker, wait for them to finish
                                       their requests and close their segments

A worker that keeps dying right after it starts (port in use, unreadable data directory)
is restarted with a growing delay, and after ``MAX_QUICK_FAILURES`` such deaths in a row
the supervisor stops everything and exits 1 instead of looping for ever. Workers ask the
kernel to send them SIGTERM if the supervisor itself dies, so none is left orphaned.

Each worker keeps its own duplicate filter and its own ``/metrics``: a retry that reaches
another worker within the dedup window is stored again, and a scrape sees one worker.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

from collector.config import Config

log = logging.getLogger("intilery.workers")

STARTUP_GRACE = 5.0  # a worker that dies sooner than this after starting counts as failing to start
MAX_QUICK_FAILURES = 5  # such deaths in a row before the supervisor gives up
MAX_BACKOFF = 10.0  # longest wait before restarting a failing worker
STOP_TIMEOUT = 30.0  # after SIGTERM, how long workers get before SIGKILL
_WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}  # SIGHUP: passed on to every worker
_PR_SET_PDEATHSIG = 1


@dataclass
class _Slot:
    """One worker position: the process currently in it and its recent failures."""

    index: int
    pid: int | None = None
    started: float = 0.0
    starts: int = 0
    failures: int = 0
    restart_at: float | None = None


class _WorkerTag(logging.Filter):
    """Adds ``worker=<n>`` to every log line of a worker."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


Serve = Callable[..., None]  # serve(config, reuse_port=True, quiet=...) until SIGTERM


def supervise(config: Config, serve: Serve) -> int:
    """Run ``config.workers`` workers until SIGTERM/SIGINT; 0 after a clean stop, 1 if workers cannot start."""
    reserved = None
    if config.port == 0:  # every worker must bind the same port: choose it here
        reserved = _reserve_port(config.host)
        config = replace(config, port=reserved.getsockname()[1])
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    slots = [_Slot(i) for i in range(config.workers)]
    try:
        for slot in slots:
            _start(slot, config, reserved, serve)
        log.info("supervising workers", extra={"workers": config.workers, "port": config.port, "pid": os.getpid()})
        code = _watch(slots, config, reserved, serve)
    finally:
        stopped = _stop_all(slots)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        if reserved is not None:
            reserved.close()
    return code or stopped


def _reserve_port(host: str) -> socket.socket:
    """A free port, held (bound, not listening) with SO_REUSEPORT so the workers can bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _start(slot: _Slot, config: Config, reserved: socket.socket | None, serve: Serve) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        if reserved is not None:
            reserved.close()
        _worker(config, serve, slot.index, quiet=slot.index > 0 or slot.starts > 0, parent=parent)
    slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
    slot.starts += 1
    if slot.starts > 1:
        log.info("worker restarted", extra={"worker": slot.index, "pid": pid})


def _worker(config: Config, serve: Serve, index: int, quiet: bool, parent: int) -> None:
    """The body of a forked worker: serve until SIGTERM/SIGINT, then exit (never returns)."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop handles it (reloading plans)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _die_with(parent)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WorkerTag(index))
        serve(config, reuse_port=True, quiet=quiet)
        code = 0
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # anything at all: logged, and the supervisor starts another
        log.exception("worker failed", extra={"worker": index})
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with(parent: int) -> None:
    """Ask Linux for SIGTERM when the supervisor dies (elsewhere: best effort, nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _watch(slots: list[_Slot], config: Config, reserved: socket.socket | None, serve: Serve) -> int:
    """Restart workers that die until SIGTERM/SIGINT (0), or until one cannot start (1)."""
    while True:
        now = time.monotonic()
        due = [s.restart_at for s in slots if s.restart_at is not None]
        timeout = max(0.0, min(due) - now) if due else 60.0
        info = signal.sigtimedwait(_WATCHED, timeout)
        if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
            log.info("stopping workers", extra={"signal": signal.Signals(info.si_signo).name})
            return 0
        if info is not None and info.si_signo == signal.SIGHUP:
            for slot in slots:
                if slot.pid is not None:
                    try:
                        os.kill(slot.pid, signal.SIGHUP)
                    except ProcessLookupError:  # died meanwhile: reaped below
                        pass
        for slot, status in _reap(slots):
            lived = time.monotonic() - slot.started
            slot.failures = slot.failures + 1 if lived < STARTUP_GRACE else 0
            delay = min(MAX_BACKOFF, 0.5 * 2 ** (slot.failures - 1)) if slot.failures else 0.0
            log.warning("worker died", extra={"worker": slot.index, "status": _describe(status),
                                              "lived_seconds": round(lived, 1), "restart_in": delay})  # fmt: skip
            if slot.failures >= MAX_QUICK_FAILURES:
                log.error("a worker keeps failing at start; stopping", extra={"worker": slot.index})
                return 1
            slot.restart_at = time.monotonic() + delay
        for slot in slots:
            if slot.restart_at is not None and slot.restart_at <= time.monotonic():
                _start(slot, config, reserved, serve)


def _reap(slots: list[_Slot]) -> list[tuple[_Slot, int]]:
    """Collect every worker that has exited, without waiting."""
    dead = []
    by_pid = {s.pid: s for s in slots if s.pid is not None}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        slot = by_pid.get(pid)
        if slot is not None:
            slot.pid = None
            dead.append((slot, status))
    return dead


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def _stop_all(slots: list[_Slot]) -> int:
    """SIGTERM every worker, wait for all (SIGKILL after STOP_TIMEOUT); 0 when all exited cleanly."""
    clean = True
    for slot in slots:
        if slot.pid is not None:
            try:
                os.kill(slot.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(s.pid is not None for s in slots):
        for slot, status in _reap(slots):
            if os.waitstatus_to_exitcode(status) != 0:
                clean = False
                log.warning("worker stopped uncleanly", extra={"worker": slot.index, "status": _describe(status)})
        if not any(s.pid is not None for s in slots):
            break
        left = deadline - time.monotonic()
        if left <= 0:
            for slot in slots:
                if slot.pid is not None:
                    log.error("worker did not stop in time; killing it", extra={"worker": slot.index})
                    os.kill(slot.pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            clean = False
            continue
        signal.sigtimedwait({signal.SIGCHLD}, min(left, 1.0))
    if clean:
        log.info("all workers stopped")
    return 0 if clean else 1
