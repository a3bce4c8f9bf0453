"""The process's runtime: its event loop, waiting for an operator's stop, its memory, and its
end with its parent (``die_with``: a worker, the profile builder).

Used by every long-running command (serve, demo, archive) and nothing HTTP-specific, so the
log's commands can use it without importing the server.

Memory (glibc's malloc, Linux; nothing is done elsewhere): every thread that allocates gets a
malloc arena of its own, up to 8 per core, each keeping its own freed memory; each freed block
that had its own mapping raises the size from which blocks get one (up to 32 MB), so a
request's large transient buffers come to be cut from the heap, which they fragment; and freed
memory inside the heap (not at its top) stays resident. The ``intilery`` command limits the
arenas and keeps that size at glibc's default of 128 KiB (``tune_malloc``, before any thread
starts), and the collector's app trims every second (``trim_malloc``): under the overload,
about 150 → 135 MB at the peak with the rest of issue 19's changes (bench/README).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import signal
import sys

MALLOC_ARENAS = 2  # the event loop's and one for the store's writer and compression threads
MMAP_THRESHOLD = 128 * 1024  # bytes: a block this large has a mapping of its own, freed with it
TRIM_EVERY = 1.0  # seconds; a trim of the collector's heap takes about 1 ms
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's malloc.h


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.new_event_loop()


async def until_signalled() -> None:
    """Returns at the first SIGINT or SIGTERM (Ctrl-C, or an operator's stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim  # musl has none of them
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """At most ``arenas`` malloc arenas, and blocks of ``mmap_threshold`` bytes or more in mappings of
    their own, for good: to be called before any thread starts (an arena is a thread's at its first
    allocation). False where malloc is not glibc's."""
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1 and libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1


def trim_malloc() -> bool:
    """Hand malloc's free pages back to the system (``malloc_trim``); False when none were."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1


async def trim_malloc_periodically(every: float = TRIM_EVERY) -> None:
    """``trim_malloc`` every ``every`` seconds, until cancelled (does nothing without glibc)."""
    if _glibc() is None:
        return
    while True:
        await asyncio.sleep(every)
        trim_malloc()


_PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """Ask Linux for SIGTERM when ``parent`` (a pid: the supervisor, or the collector) dies
    (elsewhere: best effort, nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
