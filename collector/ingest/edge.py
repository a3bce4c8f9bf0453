"""The edge of a request: who sends it (write key, origin, rate limits), CORS, the client.

Everything decided before the body is validated: ``Gate.admit`` finds the source of a write
key (every key compared in full, in constant time), checks the browser origin against the
source's ``allowed_origins`` and spends a token of the source's rate limit.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from aiohttp import web
from yarl import URL

from collector.api import sentence
from collector.config import Config, Source
from collector.ingest.enrich.ip import client_ip, is_trusted_proxy
from collector.errors import Forbidden, Unauthorized
from collector.ingest.pipeline import RequestInfo
from collector.ingest.limits import TokenBuckets

# RudderStack's SDK v3 sends its event ordering and retry bookkeeping in headers of its own
# (collector/compat/rudderstack.py): a browser sends them only when the preflight allows them.
RUDDERSTACK_HEADERS = "AnonymousId, SentAt, Rsa-Recovered, Rsa-Retry-Attempt, Rsa-Retry-Reason, Rsa-Since-First-Attempt, Rsa-Since-Last-Attempt"
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, Authorization, X-Write-Key, " + RUDDERSTACK_HEADERS,
    "Access-Control-Max-Age": "86400",
}


class Gate:
    """The sources of a configuration, by write key, with their rate limits."""

    def __init__(self, config: Config) -> None:
        self.sources = config.sources
        self.source_limits = {s.name: TokenBuckets(s.rate_limit, s.rate_burst) for s in config.sources if s.rate_limit > 0}

    def source_for(self, key: str) -> Source | None:
        """The source with this write key; every key is compared in constant time."""
        found = None
        given = key.encode("utf-8", "surrogatepass")  # header bytes that are not UTF-8 arrive as surrogates
        for source in self.sources:
            if hmac.compare_digest(source.write_key.encode(), given):
                found = source
        return found

    def authenticate(self, key: Any, origin: str | None) -> Source:
        if key is None or key == "":
            raise Unauthorized("missing_write_key", sentence("missing_write_key"))
        source = self.source_for(key) if isinstance(key, str) else None
        if source is None:
            raise Unauthorized("invalid_write_key", sentence("invalid_write_key"))
        if origin is not None and not source.allows_origin(origin):
            raise Forbidden("origin_not_allowed", sentence("origin_not_allowed"))
        return source

    def admit(self, key: Any, request: web.Request, origin: str | None = None) -> Source:
        """Authenticate, check the origin (``Origin`` unless given), spend a token of the source's rate limit."""
        source = self.authenticate(key, origin or request.headers.get("Origin"))
        limits = self.source_limits.get(source.name)
        if limits is not None:
            limits.take(source.name, "source")
        return source


def header_key(request: web.Request) -> str | None:
    """The write key of the headers: the HTTP Basic user name, else ``X-Write-Key``."""
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").split(":", 1)[0]
        except ValueError:  # not base64, not ASCII, not UTF-8 (binascii.Error is a ValueError)
            raise Unauthorized("invalid_write_key", "the Authorization header is not valid HTTP Basic") from None
        if user:
            return user
    return request.headers.get("X-Write-Key") or None


def page_origin(request: web.Request) -> str | None:
    """The origin of the page behind a request: ``Origin``, else that of ``Referer`` (an ``<img>`` sends no Origin)."""
    origin = request.headers.get("Origin")
    if origin:
        return origin
    referer = request.headers.get("Referer")
    try:
        return str(URL(referer).origin()) if referer else None
    except ValueError:  # not an absolute URL: no origin to check
        return None


def cors(request: web.Request) -> dict:
    origin = request.headers.get("Origin")
    # The origin is echoed on every answer (errors included) so a browser can read the
    # status and not retry a 4xx; whether the origin may send is decided per source.
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "Retry-After", "Vary": "Origin"}


def request_info(config: Config, request: web.Request, received_at: float) -> RequestInfo:
    """What the request tells about every message in it: when, the client address, the agent."""
    ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), config.trusted_proxies)
    agent = request.headers.get("User-Agent")
    if agent is not None and not agent.isascii():  # bytes that are not UTF-8 arrive as surrogates, which JSON cannot store
        agent = agent.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return RequestInfo(received_at, ip, agent)


# --- what a trusted proxy says about the browser's request -------------------------------------
def forwarded(request: web.Request, header: str, trusted_proxies: tuple) -> str | None:
    """The value of ``X-Forwarded-Host`` or ``-Proto`` that the outermost trusted proxy set, or None.

    Believed only from a trusted peer. A proxy that appends puts its own value last, so what comes
    before may be the client's: one value is taken per trusted hop (the peer, and each trusted
    address at the right end of ``X-Forwarded-For``), counted from the right."""
    if not is_trusted_proxy(request.remote, trusted_proxies):
        return None
    values = [v.strip() for v in request.headers.get(header, "").split(",") if v.strip()]
    if not values:
        return None
    hops = 1
    for address in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        if not is_trusted_proxy(address.strip(), trusted_proxies):
            break
        hops += 1
    return values[max(0, len(values) - hops)]


def is_https(request: web.Request, trusted_proxies: tuple) -> bool:
    """Whether the browser reached us over HTTPS: TLS here, or a trusted proxy's ``X-Forwarded-Proto``."""
    return request.secure or (forwarded(request, "X-Forwarded-Proto", trusted_proxies) or "").lower() == "https"


def public_host(request: web.Request, trusted_proxies: tuple) -> str:
    """``host[:port]`` the browser asked for: a trusted proxy's ``X-Forwarded-Host``, else ``Host``."""
    return forwarded(request, "X-Forwarded-Host", trusted_proxies) or request.host
