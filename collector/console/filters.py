"""What one viewer asks to see: the filters of ``GET /console/stream``, applied on the server.

    source=web  type=track  event=Order Completed  user=<userId or anonymousId>
    status=accepted|rejected  q=<free text, case-insensitive, anywhere in the stored line>

Each given filter must hold (AND); an empty one is no filter. A rejected message is matched
on what its payload says (its type, event, ids) and its code (``q``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import orjson

from collector.api import MAX_ID_CHARS, TYPES
from collector.errors import BadRequest

ACCEPTED, REJECTED = "accepted", "rejected"
FIELDS = ("source", "type", "event", "user", "status", "q")


class Item:
    """One record of the log, summarised once for every viewer's filter; its SSE frame made when first sent."""

    __slots__ = ("key", "status", "source", "type", "event", "user_id", "anonymous_id", "received_at", "line", "record",
                 "_frame")  # fmt: skip

    def __init__(self, key: str, status: str, record: dict, line: bytes) -> None:
        self.key = key  # its place in the log: "<log>/<segment>@<end offset>" (files) or "<log>#<sequence>" (NATS)
        self.status = status  # accepted | rejected
        self.record, self.line = record, line  # parsed, and as stored
        (self.source, self.type, self.event, self.user_id, self.anonymous_id, self.received_at) = summary(record, status)
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The Server-Sent Event: the key as id, the status as event type, the stored line as data."""
        if self._frame is None:
            data = orjson.dumps({"key": self.key, "status": self.status, "raw": self.line.decode("utf-8", "replace")})
            self._frame = b"id: " + self.key.encode() + b"\nevent: " + self.status.encode() + b"\ndata: " + data + b"\n\n"
        return self._frame


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def summary(record: dict, status: str) -> tuple[str, str, str, str, str, str]:
    """``(source, type, event, userId, anonymousId, receivedAt)`` of a stored event or dead letter."""
    message = record
    if status == REJECTED:
        message = rejected_message(record.get("payload"))
    name = message.get("event") if message.get("type", "track") == "track" else message.get("name")
    return (_text(record.get("source")), _text(message.get("type")), _text(name), _text(message.get("userId")),
            _text(message.get("anonymousId")), _text(record.get("receivedAt")))  # fmt: skip


def rejected_message(payload: object) -> dict:
    """The message a dead letter holds: its payload, parsed when it was kept as the body's text."""
    if isinstance(payload, str) and payload.startswith("{"):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return {}
    return payload if isinstance(payload, dict) else {}


@dataclass(frozen=True)
class Filter:
    source: str = ""
    type: str = ""
    event: str = ""
    user: str = ""
    status: str = ""
    q: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filter:
        """The filters of a query string; a bad one raises ``BadRequest`` (invalid_parameter)."""
        values = {name: query.get(name, "").strip() for name in FIELDS}
        for name, value in values.items():
            if len(value) > MAX_ID_CHARS:
                raise BadRequest("invalid_parameter", f"{name} is at most {MAX_ID_CHARS} characters")
        if values["status"] not in ("", ACCEPTED, REJECTED):
            raise BadRequest("invalid_parameter", "status is accepted or rejected")
        if values["type"] not in ("", *TYPES):
            raise BadRequest("invalid_parameter", "type is one of " + ", ".join(TYPES))
        values["q"] = values["q"].lower()
        return cls(**values)

    @property
    def everything(self) -> bool:
        return not (self.source or self.type or self.event or self.user or self.status or self.q)

    def matches(self, item: Item) -> bool:
        if self.status and item.status != self.status:
            return False
        if self.source and item.source != self.source:
            return False
        if self.type and item.type != self.type:
            return False
        if self.event and item.event != self.event:
            return False
        if self.user and self.user not in (item.user_id, item.anonymous_id):
            return False
        if self.q and self.q not in item.line.decode("utf-8", "replace").lower():
            return False
        return True
