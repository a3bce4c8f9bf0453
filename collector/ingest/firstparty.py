"""First-party mode: the collector sets the visitor's ``itl_aid`` cookie itself.

Safari deletes what scripts store (``document.cookie``, localStorage) after 7 days without a
visit; a cookie set by the server on the site's own host is kept (Chrome caps it at 400 days).
For a source with ``first_party = true``, the answer to a same-site batch carries::

    Set-Cookie: itl_aid=<anonymousId>; Max-Age=34560000; Path=/; SameSite=Lax[; Domain=<cookie_domain>][; Secure]
    Set-Cookie: itl_aid_fresh=1; HttpOnly; Max-Age=86400; ...

``itl_aid`` is readable, so the tag prefers it to minting an id; ``itl_aid_fresh`` says the id was
set within a day, so a visitor whose request brings both cookies, with ``itl_aid`` equal to the
request's anonymousId, gets no Set-Cookie: at most one a day, and no state on the server.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from yarl import URL

from collector.config import Config, Source
from collector.ingest.edge import is_https

ID_COOKIE = "itl_aid"
FRESH_COOKIE = "itl_aid_fresh"
ID_MAX_AGE = 400 * 86400  # Chrome's cap on any cookie's lifetime
FRESH_MAX_AGE = 86400  # the id is set again at most once a day
SAME_SITE = ("same-origin", "same-site")  # Sec-Fetch-Site values that may get the cookie
# What a cookie value may be without quoting (RFC 6265 cookie-octets, less a few); the tag's ids are UUIDs.
COOKIE_VALUE = re.compile(r"[A-Za-z0-9._~:@+-]{1,200}")


def visitor_id(messages: list[Any]) -> str | None:
    """The anonymousId of the batch's newest message (after a ``reset()`` the new one), if fit for a cookie."""
    for message in reversed(messages):
        if isinstance(message, dict) and "anonymousId" in message:
            aid = message["anonymousId"]
            return aid if isinstance(aid, str) and COOKIE_VALUE.fullmatch(aid) else None
    return None


def same_site(request: web.Request, source: Source) -> bool:
    """Whether the page that sent the request is on this site: Sec-Fetch-Site, else the Origin's host.

    Without Fetch Metadata (Safari before 16.4) the Origin must be the request's host, or under
    the source's cookie_domain. A request with neither header is not a browser's: no cookie.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in SAME_SITE
    origin = request.headers.get("Origin")
    try:
        host = URL(origin).host if origin else None
    except ValueError:
        return False
    site = source.cookie_domain or request.host.rpartition(":")[0] or request.host
    return bool(host) and (host == site or host.endswith("." + site))


def cookies_due(request: web.Request, source: Source, config: Config, aid: str | None) -> list[str]:
    """The Set-Cookie values the answer carries: none unless same-site and the id is new or a day old."""
    if aid is None or not same_site(request, source):
        return []
    sent = request.cookies
    if sent.get(ID_COOKIE) == aid and FRESH_COOKIE in sent:
        return []
    attributes = "; Path=/; SameSite=Lax"
    if source.cookie_domain:
        attributes += "; Domain=" + source.cookie_domain
    if is_https(request, config.trusted_proxies):
        attributes += "; Secure"
    return [
        f"{ID_COOKIE}={aid}; Max-Age={ID_MAX_AGE}{attributes}",
        f"{FRESH_COOKIE}=1; Max-Age={FRESH_MAX_AGE}; HttpOnly{attributes}",
    ]
