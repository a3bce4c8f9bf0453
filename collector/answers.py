"""The JSON answers of every route: one body, one error shape, one way to turn an error into it.

    answers.json({"ok": 1})                       # 200, Content-Type: application/json
    answers.error(exc)                            # {"success": false, "code", "message"}, its status (and Retry-After)
    router.add_get(path, answers.handler(method)) # a handler whose CollectorError becomes ``error``
"""

from __future__ import annotations

from typing import Awaitable, Callable

import orjson
from aiohttp import web

from collector.errors import CollectorError

JSON = {"Content-Type": "application/json"}


def json(payload: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return json_bytes(orjson.dumps(payload), status, headers)


def json_bytes(body: bytes, status: int = 200, headers: dict | None = None) -> web.Response:
    """A body serialised already (the fast path of an ingest answer)."""
    return web.Response(body=body, status=status, headers={**headers, **JSON} if headers else JSON)


def error(exc: CollectorError, headers: dict | None = None) -> web.Response:
    """The answer of an error: its status, machine code and sentence; ``Retry-After`` when it has one."""
    headers = dict(headers or {})
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return json({"success": False, "code": exc.code, "message": exc.message}, exc.status, headers)


def handler(method: Callable[[web.Request], Awaitable[web.StreamResponse]],
            headers: Callable[[CollectorError], dict] = lambda exc: {}) -> Callable:  # fmt: skip
    """``method`` answering a ``CollectorError`` with ``error`` (``headers(exc)`` added)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await method(request)
        except CollectorError as exc:
            return error(exc, headers(exc))

    return handle
