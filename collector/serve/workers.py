"""``intilery serve --workers N``: N processes sharing one port, supervised.

Python runs one event loop on one core, so the collector scales with cores by running
several processes. Each worker is a fork of the supervisor that runs
``serve(config, reuse_port=True)`` (``serving.serve``, handed over by ``intilery serve``, so
this module imports nothing of the server): every worker binds the port with
``SO_REUSEPORT`` and the kernel spreads new connections over them. A worker has its own
event loop. With the file store, the workers do not write it: one more process, the host
writer (``hostwriter.run_writer``, handed over too), owns the store, the duplicate filter
and the group commit for all of them, so a retry that lands on another worker is still a
duplicate; the supervisor binds its socket (an abstract Unix address) before it forks.
With ``--store nats`` each worker publishes itself (JetStream drops the duplicates).
Before forking, the supervisor also makes the directory where every process keeps its
metric values (``metrics.share``), so a scrape of any worker shows the host's totals.

The supervisor::

    supervise ─ fork ─▶ host writer ─▶ run_writer(listener) ─▶ FileStore instance host_0, Dedup
              ├ fork ─▶ worker 0 ─▶ serve(reuse_port, writer=address) ─▶ WriterClient
              ├ fork ─▶ worker 1 ─▶ serve(reuse_port, writer=address) ─▶ WriterClient
              └ waits for SIGCHLD / SIGTERM / SIGINT:
                  a process died     → fork a new one in its place (a new writer recovers
                                       what the dead one left: torn line, compression,
                                       and rebuilds the filter from the store)
                  SIGTERM or SIGINT  → SIGTERM to every worker, wait for them to finish
                                       their requests; then the same for the writer, which
                                       closes its segments

A worker that keeps dying right after it starts (port in use, unreadable data directory)
is restarted with a growing delay, and after ``MAX_QUICK_FAILURES`` such deaths in a row
the supervisor stops everything and exits 1 instead of looping for ever. Workers ask the
kernel to send them SIGTERM if the supervisor itself dies, so none is left orphaned.

"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Callable

from collector import metrics
from collector.config import Config
from collector.serve.runtime import die_with

log = logging.getLogger("intilery.workers")

STARTUP_GRACE = 5.0  # a worker that dies sooner than this after starting counts as failing to start
MAX_QUICK_FAILURES = 5  # such deaths in a row before the supervisor gives up
MAX_BACKOFF = 10.0  # longest wait before restarting a failing worker
STOP_TIMEOUT = 30.0  # after SIGTERM, how long workers get before SIGKILL
_WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}  # SIGHUP: passed on to every worker


@dataclass
class _Slot:
    """One worker position: the process currently in it and its recent failures."""

    index: int  # -1: the host writer
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


Serve = Callable[..., None]  # serve(config, reuse_port=True, quiet=..., writer=address) until SIGTERM
Writer = Callable[[Config, socket.socket], None]  # run_writer(config, listener) until SIGTERM


@dataclass
class _Host:
    """What every child is started from."""

    config: Config
    serve: Serve
    reserved: socket.socket | None  # the port, when the supervisor chose it
    writer: Writer | None = None
    listener: socket.socket | None = None  # the host writer's socket
    address: str | None = None


def supervise(config: Config, serve: Serve, writer: Writer | None = None) -> int:
    """Run ``config.workers`` workers (and the host ``writer``, if given) until SIGTERM/SIGINT;
    0 after a clean stop, 1 if they cannot start."""
    reserved = None
    if config.port == 0:  # every worker must bind the same port: choose it here
        reserved = _reserve_port(config.host)
        config = replace(config, port=reserved.getsockname()[1])
    host = _Host(config, serve, reserved)
    shared = tempfile.mkdtemp(prefix="intilery-metrics-")  # every process's metric values: /metrics sums them
    metrics.share(shared)
    if writer is not None:
        from collector.serve.hostwriter import listen

        host.writer, host.address = writer, f"\0intilery-writer-{os.getpid()}-{secrets.token_hex(8)}"
        host.listener = listen(host.address)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    slots = ([_Slot(-1)] if writer is not None else []) + [_Slot(i) for i in range(config.workers)]
    try:
        for slot in slots:
            _start(slot, host)
        log.info("supervising workers", extra={"workers": config.workers, "port": config.port, "pid": os.getpid()})
        code = _watch(slots, host)
    finally:
        stopped = _stop_all([s for s in slots if s.index >= 0])  # the workers first: the writer finishes their writes
        stopped = _stop_all([s for s in slots if s.index < 0]) or stopped
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        for sock in (reserved, host.listener):
            if sock is not None:
                sock.close()
        shutil.rmtree(shared, ignore_errors=True)
    return code or stopped


def _reserve_port(host: str) -> socket.socket:
    """A free port, held (bound, not listening) with SO_REUSEPORT so the workers can bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _start(slot: _Slot, host: _Host) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        if host.reserved is not None:
            host.reserved.close()
        _child(host, slot.index, quiet=slot.index != 0 or slot.starts > 0, parent=parent)
    slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
    slot.starts += 1
    if slot.starts > 1:
        log.info("worker restarted", extra={"worker": _name(slot.index), "pid": pid})


def _name(index: int) -> int | str:
    return "writer" if index < 0 else index


def _child(host: _Host, index: int, quiet: bool, parent: int) -> None:
    """The body of a forked worker (or of the host writer, ``index`` -1): serve until SIGTERM/SIGINT,
    then exit (never returns)."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop handles it (reloading plans)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        die_with(parent)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WorkerTag(_name(index)))
        if index < 0:
            host.writer(host.config, host.listener)
        else:
            if host.listener is not None:
                host.listener.close()  # workers connect to it; only the writer accepts
            host.serve(host.config, reuse_port=True, quiet=quiet, writer=host.address)
        code = 0
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # anything at all: logged, and the supervisor starts another
        log.exception("worker failed", extra={"worker": _name(index)})
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _watch(slots: list[_Slot], host: _Host) -> int:
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
                if slot.pid is not None and slot.index >= 0:  # plans are the workers'
                    try:
                        os.kill(slot.pid, signal.SIGHUP)
                    except ProcessLookupError:  # died meanwhile: reaped below
                        pass
        for slot, status in _reap(slots):
            lived = time.monotonic() - slot.started
            slot.failures = slot.failures + 1 if lived < STARTUP_GRACE else 0
            delay = min(MAX_BACKOFF, 0.5 * 2 ** (slot.failures - 1)) if slot.failures else 0.0
            log.warning("worker died", extra={"worker": _name(slot.index), "status": _describe(status),
                                              "lived_seconds": round(lived, 1), "restart_in": delay})  # fmt: skip
            if slot.failures >= MAX_QUICK_FAILURES:
                log.error("a worker keeps failing at start; stopping", extra={"worker": _name(slot.index)})
                return 1
            slot.restart_at = time.monotonic() + delay
        for slot in slots:
            if slot.restart_at is not None and slot.restart_at <= time.monotonic():
                _start(slot, host)


def _reap(slots: list[_Slot]) -> list[tuple[_Slot, int]]:
    """Collect every process of ``slots`` that has exited, without waiting."""
    dead = []
    for slot in slots:
        if slot.pid is None:
            continue
        try:
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = slot.pid, 0
        if pid != 0:
            slot.pid = None
            metrics.process_gone(pid)
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
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM:
                # it had not reached its loop (which stops on SIGTERM and exits 0): it served nothing
                log.info("worker stopped while starting", extra={"worker": _name(slot.index)})
            elif os.waitstatus_to_exitcode(status) != 0:
                clean = False
                log.warning("worker stopped uncleanly", extra={"worker": _name(slot.index), "status": _describe(status)})
        if not any(s.pid is not None for s in slots):
            break
        left = deadline - time.monotonic()
        if left <= 0:
            for slot in slots:
                if slot.pid is not None:
                    log.error("worker did not stop in time; killing it", extra={"worker": _name(slot.index)})
                    os.kill(slot.pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            clean = False
            continue
        signal.sigtimedwait({signal.SIGCHLD}, min(left, 1.0))
    if clean and slots:
        log.info("all workers stopped" if slots[0].index >= 0 else "host writer stopped")
    return 0 if clean else 1
