"""The framework ceiling: a bare aiohttp app that reads the body, parses it with orjson, answers 200.

Same Python, same event loop (uvloop) and the same runner settings as the collector
(``collector.app.SERVER_KWARGS``), so the distance between the two is what the collector
itself costs::

    python -m bench.ceiling --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson
from aiohttp import web

from collector.app import SERVER_KWARGS
from collector.serve.runtime import new_loop

ANSWER = b'{"success":true,"accepted":1,"rejected":[]}'


async def handle(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=ANSWER, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/{kind}", handle)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, **SERVER_KWARGS)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    loop = new_loop()
    try:
        loop.run_until_complete(serve(args.host, args.port))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
