"""Who may use the console: the access token (``collector.ingest.access``), never a write key.

A script sends ``Authorization: Bearer <token>`` (or Basic, as the Profile API takes) on any
console route. A person signs in once with a form; the answer sets a session cookie:
HttpOnly, SameSite=Strict, Secure when the page came over HTTPS (TLS here, or
``X-Forwarded-Proto: https`` from a ``trusted_proxies`` address). The cookie is
``<expiry>.<HMAC-SHA256 of the expiry, keyed by the token>``: it holds no secret, every
worker (and a restarted collector) checks it alike, and it stops working when the token
changes or after ``SESSION_SECONDS``. Everything is compared in constant time.

SameSite=Strict keeps the cookie from other sites, not from other origins of the same site
(another port of the host: the demo's shop). So a POST that rests on the cookie must say it
comes from the console's own page (``check_same_origin``): ``Sec-Fetch-Site: same-origin``,
or, from a browser without it, an ``Origin`` naming this host. A page cannot forge either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from collector.ingest import access
from collector.ingest.edge import is_https, public_host
from collector.errors import Forbidden, Unauthorized

COOKIE = "intilery_console"
SESSION_SECONDS = 12 * 3600


def _mac(token: str, expiry: int, nonce: str) -> str:
    return hmac.new(token.encode(), f"intilery-console-session:{expiry}:{nonce}".encode(), hashlib.sha256).hexdigest()


def session_value(token: str, now: float | None = None) -> str:
    """A new session cookie's value, valid for ``SESSION_SECONDS`` from ``now``; each sign-in's is its
    own (a nonce), so signing one session out leaves the others alone."""
    expiry = int(now if now is not None else time.time()) + SESSION_SECONDS
    nonce = secrets.token_hex(8)
    return f"{expiry}.{nonce}.{_mac(token, expiry, nonce)}"


def valid_session(value: str, token: str, now: float | None = None) -> bool:
    expiry, _, rest = value.partition(".")
    nonce, _, mac = rest.partition(".")
    if not expiry.isdigit() or len(expiry) > 12 or len(nonce) != 16:
        return False
    if int(expiry) <= (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(mac.encode(), _mac(token, int(expiry), nonce).encode())


class SignedOut:
    """Sessions signed out before they expired, refused by every worker from then on (and the open
    streams of such a session closed): a hash of each cookie value and its expiry, one a line, in
    ``<data_dir>/.console/signed-out`` (expired lines dropped at each sign-out)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / ".console" / "signed-out"
        self._stamp: tuple | None = None
        self._hashes: frozenset[str] = frozenset()

    def add(self, value: str) -> None:
        expiry = value.partition(".")[0]
        if not expiry.isdigit():
            return
        now = int(time.time())
        lines = [line for line in self._lines() if int(line.split(" ")[1]) > now]
        lines.append(f"{_hash(value)} {expiry}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".signed-out.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.rename(tmp, self.path)

    def __contains__(self, value: str) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._hashes, self._stamp = frozenset(line.split(" ")[0] for line in self._lines()), stamp
        return _hash(value) in self._hashes

    def _lines(self) -> list[str]:
        try:
            return [line for line in self.path.read_text().splitlines() if line.count(" ") == 1]
        except FileNotFoundError:
            return []


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def authorize(request: web.Request, token: str, signed_out: SignedOut | None = None) -> None:
    """Raises ``Unauthorized`` unless the request carries the token, or a valid session cookie that
    was not signed out."""
    header = request.headers.get("Authorization")
    if header is not None:
        access.check(header, token)
        return
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        raise Unauthorized("missing_access_token", "the console needs the access token: sign in, or send it as Bearer")
    if not valid_session(cookie, token):
        raise Unauthorized("invalid_access_token", "the console session is not valid (expired, or the token changed)")
    if signed_out is not None and cookie in signed_out:
        raise Unauthorized("invalid_access_token", "the console session was signed out")


def check_form_token(given: str, token: str) -> None:
    if not given:
        raise Unauthorized("missing_access_token", "type the access token to sign in")
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), token.encode()):
        raise Unauthorized("invalid_access_token", "the access token is not valid")


def set_session(response: web.StreamResponse, request: web.Request, token: str, trusted_proxies: tuple = ()) -> None:
    response.set_cookie(COOKIE, session_value(token), max_age=SESSION_SECONDS, path="/console", httponly=True,
                        samesite="Strict", secure=is_https(request, trusted_proxies))  # fmt: skip


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console")


def check_same_origin(request: web.Request, trusted_proxies: tuple = ()) -> None:
    """Raises ``Forbidden`` unless a POST comes from the console's own origin, or carries the token itself."""
    if request.headers.get("Authorization") is not None:
        return  # the token itself (checked by ``authorize``): no other page has it to send
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site == "same-origin":
            return
    elif (origin := request.headers.get("Origin")) and origin != "null":
        parts = urlsplit(origin)
        host = public_host(request, trusted_proxies)
        if parts.scheme in ("http", "https") and host and parts.netloc.lower() == host.lower():
            return
    raise Forbidden("cross_origin_request", "the console takes a POST on its session cookie only from its own page "
                    "(Sec-Fetch-Site: same-origin, or an Origin of this host); a script sends the token as Bearer")  # fmt: skip
