"""Reading a request body: content type, size cap, gzip with a cap on the inflated size, JSON."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from aiohttp import web

from collector.errors import BadRequest, RequestTimeout, TooLarge, Unavailable, UnsupportedMediaType
from collector.api import MAX_BODY_BYTES

PLAIN_TYPES = ("application/json", "text/plain")  # as most senders write their Content-Type
ACCEPTED_TYPES = frozenset({*PLAIN_TYPES, ""})  # once parsed (parameters, case); "": no type


class BodyBudget:
    """The bytes of request bodies being read or held by handlers, bounded: past ``limit``, a 503.

    A request reserves what its body can grow to (its Content-Length, or the cap when it does
    not say; once more the cap when it is gzip, for the inflated copy) before a byte is read,
    and releases it when it is answered. Without it, clients that announce large bodies and
    stall mid-way make the collector hold every partial body until each times out.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def reserve(self, request: web.Request) -> int:
        size = min(request.content_length or MAX_BODY_BYTES, MAX_BODY_BYTES) + (MAX_BODY_BYTES if encoded(request) else 0)
        if self.held and self.held + size > self.limit:
            raise Unavailable("store_overloaded", "the collector is holding too many request bodies; retry shortly",
                              retry_after=1)  # fmt: skip
        self.held += size
        return size

    def release(self, size: int) -> None:
        self.held -= size


def check_content_type(request: web.Request) -> None:
    if request.headers.get("Content-Type") in PLAIN_TYPES:  # nothing to parse
        return
    if request.content_type == "application/octet-stream" and "Content-Type" not in request.headers:
        return  # no Content-Type at all: taken as JSON
    if request.content_type not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(
            "unsupported_content_type",
            "the body must be sent as application/json or text/plain",
        )


async def read_raw(request: web.Request, limit: int = MAX_BODY_BYTES, timeout: float = 15.0) -> bytes:
    """The body as sent; never more than ``limit`` bytes kept, nor more than ``timeout`` s spent."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge("body_too_large", f"a request body may be at most {limit // 1024} KB")
    if request.content.is_eof():  # the whole body is already here: no waiting, no deadline
        body = await request.content.read()
        if len(body) > limit:
            raise TooLarge("body_too_large", f"a request body may be at most {limit // 1024} KB")
        return body
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise TooLarge("body_too_large", f"a request body may be at most {limit // 1024} KB")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout("request_timeout", f"the body did not arrive within {timeout:g} s") from None
    except ConnectionResetError:  # the client closed before sending all it announced: client input, not a 500
        raise BadRequest("invalid_json", "the connection closed before the whole body arrived") from None
    return b"".join(chunks)


def encoded(request: web.Request) -> bool:
    """Whether the body is sent with a Content-Encoding (other than identity)."""
    return request.headers.get("Content-Encoding", "identity").strip().lower() not in ("identity", "")


def decode(request: web.Request, raw: bytes, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body inflated per Content-Encoding (gzip or none), capped at ``limit`` bytes."""
    check_content_type(request)
    if not encoded(request):
        return raw
    if request.headers["Content-Encoding"].strip().lower() != "gzip":
        raise UnsupportedMediaType("unsupported_encoding", "the only Content-Encoding supported is gzip")
    return inflate(raw, limit)


def inflate(data: bytes, limit: int) -> bytes:
    """Gzip (one member or several concatenated, RFC 1952) inflated to at most ``limit`` bytes."""
    parts, size = [], 0
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(data, limit + 1 - size)
        except zlib.error:
            raise BadRequest("invalid_gzip", "the body is not valid gzip") from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise TooLarge("body_too_large", f"a request body may be at most {limit // 1024} KB once inflated")
        if not inflater.eof:
            raise BadRequest("invalid_gzip", "the gzip body is truncated")
        parts.append(part)
        data = inflater.unused_data
        if not data:
            return b"".join(parts)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body.strip():
            raise BadRequest("invalid_json", "the body is empty; send a JSON object") from None
        raise BadRequest("invalid_json", f"the body is not valid JSON ({str(exc).split(':')[0]})") from None
