"""What both SDK front doors share: the source of a write key, JSON answers, where the collector is."""

from __future__ import annotations

from aiohttp import web

from collector import answers
from collector.config import Config, Source
from collector.ingest.edge import Gate, is_https, public_host
from collector.errors import CollectorError, NotFound

# The configuration documents are public (a write key is no secret: it is in every page), read by
# scripts on any site: readable cross-origin, and cacheable for a few minutes like the tag.
PUBLIC = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300", "Vary": "Accept-Encoding"}
# An answer that names the collector's address (Segment's apiHost) differs by the headers it is read from.
BY_HOST = {"Vary": "Accept-Encoding, Host, X-Forwarded-Host, X-Forwarded-Proto"}


def source_of(gate: Gate, key: str | None) -> Source:
    """The source with write key ``key``, else a 404 (``unknown_source``)."""
    source = gate.source_for(key) if key else None
    if source is None:
        raise NotFound("unknown_source", "no source has this write key")
    return source


def collector_host(request: web.Request, config: Config) -> tuple[str, str]:
    """``(protocol, host[:port])`` the browser reached this collector at: behind a trusted proxy, the
    scheme and host it says (``edge.forwarded``), since a proxy that rewrites Host would otherwise
    hand visitors its internal address."""
    proxies = config.trusted_proxies
    return ("https" if is_https(request, proxies) else "http"), public_host(request, proxies)


def answer(payload: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return answers.json(payload, status, {**PUBLIC, **(headers or {})})


def error(exc: CollectorError) -> web.Response:
    return answers.error(exc, {**PUBLIC, "Cache-Control": "no-store"})
