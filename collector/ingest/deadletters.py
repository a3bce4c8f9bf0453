"""Dead letters as ingest keeps them: the payload scrubbed per the source's IP mode, then the log's line.

Client addresses in a rejected payload follow the source's IP mode (anonymised or removed), so
``rejected/`` holds no full IP a source asked not to keep, and a ``writeKey`` in it is removed.
The line's format (and ``body_payload``) is the log's: ``collector/log/deadletters.py``.
"""

from __future__ import annotations

import re
from typing import Any

from collector.config import Source
from collector.ingest.enrich.ip import anonymize, valid_ip
from collector.log.deadletters import line

_ADDRESS_LIKE = re.compile(r"[0-9A-Fa-f:.]{7,45}")
_WRITE_KEY = re.compile(r'"writeKey"\s*:\s*"(?:[^"\\]|\\.)*"?')


def private_text(text: str, source: Source) -> str:
    """An unparsable body without its write key, its addresses anonymised or removed per the source's ip mode."""
    text = _WRITE_KEY.sub('"writeKey":"(removed)"', text)

    def hide(match: re.Match) -> str:
        ip = valid_ip(match.group())
        if ip is None:
            return match.group()
        return anonymize(ip) if source.ip_mode == "anonymize" else ""

    return text if source.ip_mode == "full" else _ADDRESS_LIKE.sub(hide, text)


def private(payload: Any, source: Source) -> Any:
    """A rejected message without its writeKey, its client-sent context.ip anonymised or dropped per the ip mode."""
    if isinstance(payload, str):
        return private_text(payload, source)
    if isinstance(payload, dict) and "writeKey" in payload:
        payload = {k: v for k, v in payload.items() if k != "writeKey"}
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
    return line(source.name, received_at, code, message, **payload)
