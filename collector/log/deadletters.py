"""Dead letters: what ``rejected/`` keeps of a rejected request or message, and how.

A record is ``{receivedAt, source, code, message, payload}`` (plus ``index`` for a message
inside a batch). The payload is kept as sent, except that client addresses in it follow the
source's IP mode, so ``rejected/`` holds no full IP a source asked not to keep, and a
``writeKey`` in it is removed: that scrubbing is ingest's (``collector/ingest/deadletters.py``,
whose ``record`` every writer of a dead letter calls); this module holds the line's format.
Only what can be scrubbed is kept: a body that is not UTF-8 is kept as text with its
undecodable bytes replaced (then scrubbed); one that could not be read or inflated (over the size cap, gzip that does not inflate) as its size alone,
``payloadBytes``, with ``payload`` null.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from collector.log.layout import iso_ms


def line(source_name: str, received_at: float, code: str, message: str, **payload: Any) -> bytes:
    """One NDJSON line for rejected/; ``payload`` is ``payload=...`` (or ``payloadBase64``) and ``index``,
    already scrubbed by the caller (``collector.ingest.deadletters.record``)."""
    entry = {"receivedAt": iso_ms(received_at), "source": source_name, "code": code, "message": message, **payload}
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


def body_payload(body: bytes | None, size: int | None = None) -> dict:
    """A request body as text (bytes that are not UTF-8 replaced, so what is kept can be scrubbed);
    one that was not read or could not be inflated (``body`` None): its ``size`` alone."""
    if body is None:
        return {"payload": None, "payloadBytes": size}
    return {"payload": body.decode("utf-8", "replace")}
