"""One webhook request, in the Standard Webhooks format (https://www.standardwebhooks.com)::

    POST <url>
    webhook-id: msg_...            the delivery's id (a batch's: its own), the same on every retry
    webhook-timestamp: 1733616000  this attempt's time (receivers refuse old ones: replay protection)
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" keyed with the whsec_ secret>
                                   (two secrets during a rotation: two signatures, space-separated)
    {"type": "track", "timestamp": "...", "data": {...}}      one event
    {"type": "batch", "timestamp": "...", "data": {"batch": [...]}}

``attempt`` sends one and classifies the answer (``Outcome``): 2xx delivered; a network error, a
timeout, 408, 429 and 5xx retried (``Retry-After`` kept); a redirect (never followed) and any other
4xx dead at once; 410 also disables the destination. An address on a loopback, private, link-local
(or otherwise not public) network is refused on every connection, after DNS (``GuardedConnector``),
unless the destination allows it. No secret is ever part of an error or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp

from collector import __version__
from collector.engage.outbox.store import excerpt

USER_AGENT = f"Intilery-Webhooks/{__version__}"
RETRIED = {408, 429}
MAX_RETRY_AFTER = 86400.0  # seconds: a longer Retry-After is taken as a day


def sign(secrets: tuple[bytes, ...], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,<base64>`` for each secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in secrets)


def headers(secrets: tuple[bytes, ...], msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp), "webhook-signature": sign(secrets, msg_id, timestamp, body)}  # fmt: skip


class PrivateAddress(OSError):
    """A destination's address is on a network it may not reach."""


def refused(address: str) -> str | None:
    """Why ``address`` (an IP) is not public, or None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, what in ((ip.is_loopback, "loopback"), (ip.is_link_local, "link-local"), (ip.is_private, "private"),
                       (ip.is_multicast, "multicast"), (ip.is_unspecified, "unspecified"), (ip.is_reserved, "reserved"),
                       (not ip.is_global, "not public")):  # fmt: skip
        if test:
            return what
    return None


class GuardedConnector(aiohttp.TCPConnector):
    """A connector that refuses, on every connection and after DNS, an address that is not public."""

    async def _resolve_host(self, host, port, traces=None):  # noqa: ANN001 - aiohttp's signature
        found = await super()._resolve_host(host, port, traces)
        allowed = [r for r in found if refused(r["host"]) is None]
        if not allowed:
            address = found[0]["host"] if found else host
            raise PrivateAddress(f"{host} is {address}, a {refused(address)} address: refused (allow_private_network: "
                                 "true in the destination's file allows it)")  # fmt: skip
        return allowed


def session(allow_private_network: bool, concurrency: int) -> aiohttp.ClientSession:
    """The client of one destination (its own connections: one destination never waits for another's)."""
    make = aiohttp.TCPConnector if allow_private_network else GuardedConnector
    return aiohttp.ClientSession(connector=make(limit=concurrency, ttl_dns_cache=10), auto_decompress=True,
                                 skip_auto_headers=("User-Agent",))  # fmt: skip


@dataclass
class Outcome:
    result: str  # delivered | retry | dead | gone (410: dead, and the destination disabled)
    status: int | None = None
    error: str | None = None
    answer: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0


async def attempt(client: aiohttp.ClientSession, url: str, secrets: tuple[bytes, ...], msg_id: str, body: bytes,
                  timeout: float) -> Outcome:  # fmt: skip
    """Send ``body`` once, signed now; what came of it."""
    started = time.monotonic()
    try:
        async with client.post(url, data=body, headers=headers(secrets, msg_id, body), allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as answer:  # fmt: skip
            text = excerpt(await answer.content.read(8192))
            status = answer.status
            seconds = time.monotonic() - started
            if 200 <= status < 300:
                return Outcome("delivered", status, None, text, seconds=seconds)
            if status in RETRIED or status >= 500:
                return Outcome("retry", status, f"answered {status}", text, _retry_after(answer.headers.get("Retry-After")),
                               seconds)  # fmt: skip
            if status == 410:
                return Outcome("gone", status, "answered 410 Gone: the destination is disabled (replay enables it)", text,
                               seconds=seconds)  # fmt: skip
            if 300 <= status < 400:
                return Outcome("dead", status, f"answered {status}, a redirect (to {answer.headers.get('Location', '?')!r}):"
                               " redirects are not followed; correct the url", text, seconds=seconds)  # fmt: skip
            return Outcome("dead", status, f"answered {status}: not retried (a 4xx other than 408 and 429)", text,
                           seconds=seconds)  # fmt: skip
    except asyncio.TimeoutError:
        return Outcome("retry", None, f"no answer within {timeout:g} s", seconds=time.monotonic() - started)
    except aiohttp.ClientConnectorError as exc:
        cause = exc.os_error
        if isinstance(cause, PrivateAddress):
            return Outcome("dead", None, str(cause), seconds=time.monotonic() - started)
        return Outcome("retry", None, f"cannot connect: {cause.strerror or cause}", seconds=time.monotonic() - started)
    except PrivateAddress as exc:
        return Outcome("dead", None, str(exc), seconds=time.monotonic() - started)
    except aiohttp.InvalidURL as exc:
        return Outcome("dead", None, f"not a usable url: {exc}", seconds=time.monotonic() - started)
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome("retry", None, f"{type(exc).__name__}: {exc}"[:300], seconds=time.monotonic() - started)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
