"""Client IP: the trusted-proxy rule and the per-source IP modes."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.9:443"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def _trusted(addr, proxies: Iterable[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in proxies)


def is_trusted_proxy(peer: str | None, proxies: tuple[Network, ...]) -> bool:
    """Whether the socket peer is one of the trusted proxies (whose X-Forwarded-* headers are believed)."""
    addr = _parse(peer) if peer and proxies else None
    return addr is not None and _trusted(addr, proxies)


def client_ip(peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str | None:
    """The socket peer, unless it is a trusted proxy: then the right-most untrusted X-Forwarded-For hop."""
    if forwarded_for is not None and len(forwarded_for) > _CACHED_HEADER_CHARS:
        return _client_ip(peer, forwarded_for, proxies)
    return _cached_client_ip(peer, forwarded_for, proxies)


def _client_ip(peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str | None:
    addr = _parse(peer) if peer else None
    if addr is None:
        return None
    if not proxies or not forwarded_for or not _trusted(addr, proxies):
        return str(addr)
    for hop in reversed(forwarded_for.split(",")):
        hop_addr = _parse(hop)
        if hop_addr is None:
            break  # a garbled hop: trust nothing to its left
        addr = hop_addr
        if not _trusted(hop_addr, proxies):
            break
    return str(addr)


def valid_ip(text: object) -> str | None:
    """A client-sent ``context.ip`` normalised, or None when it is not an address."""
    if not isinstance(text, str):
        return None
    return _normalised(text) if len(text) <= _CACHED_CHARS else _normalise(text)


def _normalise(text: str) -> str | None:
    addr = _parse(text)
    return str(addr) if addr is not None else None


# Parsing with ipaddress costs 3-7 µs, and the same addresses come again and again; only
# short texts are cached, so a client cannot fill the cache with large strings.
_CACHED_CHARS = 64
_CACHED_HEADER_CHARS = 256
_normalised = lru_cache(maxsize=10_000)(_normalise)
_cached_client_ip = lru_cache(maxsize=10_000)(_client_ip)


@lru_cache(maxsize=10_000)
def anonymize(ip: str) -> str:
    """IPv4 to its /24, IPv6 to its /48 (the rest zeroed)."""
    addr = ipaddress.ip_address(ip)
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)
