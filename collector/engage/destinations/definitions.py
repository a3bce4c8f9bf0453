"""``engage/destinations/<name>.yaml``: a destination a file, the file's name its name::

    kind: webhook                    # the only kind yet
    url: https://example.com/hook    # http or https; no redirect is followed
    secret: ${HOOK_SECRET}           # whsec_<base64>; a list of two during a rotation (two signatures)
    filter: {field: type, op: eq, value: track}   # a condition on the event (conditions.py, fields only)
    consent_categories: [analytics]  # every one true in context.consent.categoryPreferences
    mapping: {order: {"@path": "$.properties.order_id"}}   # the webhook's data reshaped (mapping.py)
    batch_size: 1                    # > 1: up to this many events a request ("type": "batch")
    retry_schedule: [5s, 5m, 30m, 2h, 5h, 10h, 14h, 20h, 24h]   # the waits after each failed attempt
    timeout: 15s                     # per request
    concurrency: 4                   # requests in flight at once, for this destination alone
    allow_private_network: false     # true: loopback, private and link-local addresses allowed
    forward_deletes: false           # true: a privacy.delete webhook for each erasure (privacy.py)
    enabled: true

``load(root)`` reads them all (``DefinitionError``: one ``file:line: reason`` each); ``check(root)``
gives the same lines as a list, for ``intilery engage check``. ``${NAME}`` is taken from the
environment (``definitions.load_yaml``); a secret is never part of an error.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


from collector.engage.conditions import Condition, ConditionError, duration, parse
from collector.engage.definitions import _KEY, _check_keys, load_kind, problems
from collector.engage.destinations import mapping as mappings

FOLDER = "destinations"
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)  # seconds: the Standard Webhooks spec's
TIMEOUT = 15.0
CONCURRENCY = 4
MAX_BATCH = 1000
ALLOWED = {"kind", "url", "secret", "filter", "consent_categories", "mapping", "batch_size", "retry_schedule",
           "timeout", "concurrency", "allow_private_network", "forward_deletes", "enabled", "description"}  # fmt: skip


@dataclass(frozen=True)
class Destination:
    name: str
    url: str
    secrets: tuple[bytes, ...] = field(repr=False)  # the keys (decoded); never shown
    filter: Condition | None = None
    consent_categories: tuple[str, ...] = ()
    mapping: Any = None
    batch_size: int = 1
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    timeout: float = TIMEOUT
    concurrency: int = CONCURRENCY
    allow_private_network: bool = False
    forward_deletes: bool = False
    enabled: bool = True
    path: str = ""


def load(root: Path, environ: dict | None = None) -> dict[str, Destination]:
    """Every destination under ``root/destinations`` (none when the folder does not exist)."""
    return load_kind(root, FOLDER, destination, environ)


def check(root: Path, environ: dict | None = None) -> list[str]:
    """The problems of the destinations under ``root`` (``file:line: reason`` each); none: []."""
    return problems(lambda: load(root, environ))


def destination(data: dict, path: Path) -> Destination:
    lines = getattr(data, "lines", {})
    if not _KEY.match(path.stem):
        raise ConditionError(f"the file's name {path.stem!r} is the destination's: letters, digits, '_' and '-' (up to 100)")
    _check_keys(data, ALLOWED, {"url", "secret"})
    kind = data.get("kind", "webhook")
    if kind != "webhook":
        raise ConditionError(f"unknown kind {kind!r}: the kinds are webhook", lines.get("kind"))
    url = data["url"]
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConditionError("'url' is an http:// or https:// address with a host", lines.get("url"))
    secret = data["secret"]
    listed = secret if isinstance(secret, list) else [secret]
    if not listed or len(listed) > 2:
        raise ConditionError("'secret' is one whsec_ secret, or a list of two during a rotation", lines.get("secret"))
    keys = tuple(_secret(s, lines.get("secret")) for s in listed)
    condition = parse(data["filter"], people=False) if data.get("filter") is not None else None
    categories = data.get("consent_categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) and c for c in categories):
        raise ConditionError("'consent_categories' is a list of category names", lines.get("consent_categories"))
    mapped = data.get("mapping")
    if mapped is not None:
        mappings.check(mapped, lines.get("mapping"))
    schedule = data.get("retry_schedule", None)
    if schedule is None:
        waits = RETRY_SCHEDULE
    else:
        if not isinstance(schedule, list):
            raise ConditionError("'retry_schedule' is a list of waits (5s, 5m, 2h, 1d; [] : never retried)",
                                 lines.get("retry_schedule"))  # fmt: skip
        waits = tuple(duration(w, lines.get("retry_schedule")) for w in schedule)
    return Destination(
        name=path.stem, url=url, secrets=keys, filter=condition, consent_categories=tuple(categories), mapping=mapped,
        batch_size=_whole(data, "batch_size", 1, 1, MAX_BATCH), retry_schedule=waits,
        timeout=duration(data["timeout"], lines.get("timeout")) if "timeout" in data else TIMEOUT,
        concurrency=_whole(data, "concurrency", CONCURRENCY, 1, 64),
        allow_private_network=_flag(data, "allow_private_network", False), forward_deletes=_flag(data, "forward_deletes", False),
        enabled=_flag(data, "enabled", True), path=str(path),
    )  # fmt: skip


def _secret(value: Any, line: int | None) -> bytes:
    if not isinstance(value, str) or not value.startswith("whsec_"):
        raise ConditionError("'secret' is a Standard Webhooks secret: whsec_ and base64 (write it ${NAME}, from "
                             "the environment)", line)  # fmt: skip
    try:
        key = base64.b64decode(value[6:], validate=True)
    except (binascii.Error, ValueError):
        raise ConditionError("'secret' after whsec_ is not base64", line) from None
    if not 24 <= len(key) <= 64:
        raise ConditionError(f"'secret' holds {len(key)} bytes: the spec asks for 24 to 64", line)
    return key


def _whole(data: dict, key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConditionError(f"{key!r} is a whole number from {low} to {high}", getattr(data, "lines", {}).get(key))
    return value


def _flag(data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConditionError(f"{key!r} is true or false", getattr(data, "lines", {}).get(key))
    return value


def shown(dest: Destination) -> dict:
    """The destination as ``GET /v1/destinations`` and the CLI show it: no secret."""
    return {"name": dest.name, "kind": "webhook", "url": dest.url, "batch_size": dest.batch_size,
            "retry_schedule": list(dest.retry_schedule), "timeout": dest.timeout, "concurrency": dest.concurrency,
            "consent_categories": list(dest.consent_categories), "filtered": dest.filter is not None,
            "mapped": dest.mapping is not None, "allow_private_network": dest.allow_private_network,
            "enabled": dest.enabled, "secrets": len(dest.secrets)}  # fmt: skip


