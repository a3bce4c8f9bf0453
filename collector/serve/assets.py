"""Files the collector serves as they are: the built tag and the OpenAPI document."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from typing import Any

from aiohttp import web

TAG = web.AppKey("tag", dict)


def _json_error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"success": False, "code": code, "message": message}, status=status)


def load_tag() -> dict[str, Any]:
    """The built tag shipped in the package, with its gzip form and ETag, read once."""
    try:
        source = resources.files("collector").joinpath("static/intilery.js").read_bytes()
    except (FileNotFoundError, OSError):
        return {}
    return {
        "body": source,
        "gzip": gzip.compress(source, compresslevel=9, mtime=0),
        "etag": '"' + hashlib.sha256(source).hexdigest()[:20] + '"',
    }


async def tag(request: web.Request) -> web.Response:
    """GET /intilery.js: cacheable (ETag, 304), gzip when the browser accepts it."""
    built = request.app[TAG]
    if not built:
        return _json_error("not_built", "intilery.js is not built; see tag/README.md", 404)
    headers = {
        "ETag": built["etag"],
        "Cache-Control": "public, max-age=300",
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
    }
    if built["etag"] in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=built["gzip"], content_type="application/javascript", charset="utf-8", headers=headers)
    return web.Response(body=built["body"], content_type="application/javascript", charset="utf-8", headers=headers)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of this HTTP API (collector/static/openapi.json)."""
    spec = resources.files("collector").joinpath("static/openapi.json")
    try:
        return web.Response(body=spec.read_bytes(), content_type="application/json")
    except (FileNotFoundError, OSError):
        return _json_error("not_found", "no OpenAPI document in this build", 404)
