"""The process's runtime: its event loop, and waiting for an operator's stop.

Used by every long-running command (serve, demo, archive) and nothing HTTP-specific, so the
log's commands can use it without importing the server.
"""

from __future__ import annotations

import asyncio
import signal


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
