"""Dead letters: what ``rejected/`` keeps of a rejected request or message, and how.

A record is ``{receivedAt, source, code, message, payload}`` (plus ``index`` for a message
inside a batch). The payload is kept as sent, except that client addresses in it follow the
source's IP mode, so ``rejected/`` holds no full IP a source asked not to keep. A body that
is not UTF-8 is kept as ``payloadBase64``; one refused unread (over the size cap) as its
declared size alone, ``payloadBytes`` (with ``payload`` null).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import orjson

from collector.config import Source
from collector.enrich.ip import anonymize, valid_ip
from collector.log.layout import iso_ms

_ADDRESS_LIKE = re.compile(r"[0-9A-Fa-f:.]{7,45}")


def private_text(text: str, source: Source) -> str:
    """Addresses inside an unparsable body, anonymised or removed per the source's ip mode."""

    def hide(match: re.Match) -> str:
        ip = valid_ip(match.group())
        if ip is None:
            return match.group()
        return anonymize(ip) if source.ip_mode == "anonymize" else ""

    return text if source.ip_mode == "full" else _ADDRESS_LIKE.sub(hide, text)


def private(payload: Any, source: Source) -> Any:
    """A rejected message's client-sent context.ip, anonymised or dropped per the source's ip mode."""
    if isinstance(payload, str):
        return private_text(payload, source)
    context = payload.get("context") if isinstance(payload, dict) else None
    if source.ip_mode == "full" or not isinstance(context, dict) or "ip" not in context:
        return payload
    context = dict(context)
    ip = valid_ip(context.pop("ip"))
    if ip is not None and source.ip_mode == "anonymize":
        context["ip"] = anonymize(ip)
    return {**payload, "context": context}


def record(source: Source, received_at: float, code: str, message: str, **payload: Any) -> bytes:
    """One NDJSON line for rejected/; ``payload`` is ``payload=...`` (or ``payloadBase64``) and ``index``."""
    if "payload" in payload:
        payload["payload"] = private(payload["payload"], source)
    entry = {"receivedAt": iso_ms(received_at), "source": source.name, "code": code, "message": message, **payload}
    try:
        return orjson.dumps(entry) + b"\n"
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: keep it as JSON text
        entry["payload"] = deep_text(entry.get("payload"))
        return orjson.dumps(entry) + b"\n"


def deep_text(payload: Any) -> str:
    try:
        return json.dumps(payload, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        return "(nested too deeply to keep)"


def body_payload(body: bytes | None, declared_bytes: int | None = None) -> dict:
    """A request body as sent: text when it is UTF-8, else base64; one refused unread (over the cap): its size."""
    if body is None:
        return {"payload": None, "payloadBytes": declared_bytes}
    try:
        return {"payload": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payloadBase64": base64.b64encode(body).decode()}
