"""Validation of one message against the Segment spec, with the limits of ``collector.api``.

``validate(raw, default_type)`` returns the message (normalised in place: the Intilery
``event``-style discriminator becomes ``type``, numeric ids become strings) or raises
``Invalid`` with a machine code and a sentence.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from collector.api import MAX_BATCH_MESSAGES, MAX_BODY_BYTES, MAX_ID_CHARS, MAX_MESSAGE_BYTES  # noqa: F401
from collector.api import TYPES as CALLS
from collector.errors import Invalid

TYPES = frozenset(CALLS)
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
_STRING_FIELDS = ("event", "name", "category")
_ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId")
TIMESTAMP_FIELDS = ("timestamp", "originalTimestamp", "sentAt")


def parse_timestamp(value: Any, field: str) -> float:
    """ISO-8601 text to epoch seconds; a time with no zone is taken as UTC."""
    if not isinstance(value, str):
        raise Invalid("invalid_timestamp", f"{field} must be an ISO-8601 string")
    try:
        try:
            parsed = datetime.fromisoformat(value)  # Python 3.11 reads a "Z" suffix itself
        except ValueError:  # a lower-case "z", or a "Z" where 3.11 does not expect one
            parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc).timestamp()
        return parsed.timestamp()
    except (ValueError, OverflowError, OSError):
        raise Invalid("invalid_timestamp", f"{field} is not an ISO-8601 date-time") from None


def _ident(message: dict, field: str) -> None:
    value = message.get(field)
    if value is None:
        message.pop(field, None)  # null is absent, like an empty string: it is no id
        return
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid("invalid_field", f"{field} must be a string")
    if not isinstance(value, str):
        message[field] = value = str(value)
    if len(value) > MAX_ID_CHARS:
        raise Invalid("invalid_field", f"{field} is longer than {MAX_ID_CHARS} characters")
    if not value:
        del message[field]


def validate(message: Any, default_type: str | None) -> dict:
    if not isinstance(message, dict):
        raise Invalid("invalid_message", "a message must be a JSON object")
    kind = message.get("type")
    if kind is None:
        event = message.get("event")
        if isinstance(event, str) and event in TYPES:  # Intilery's server API: {"event": "identify", ...}
            kind = event
            del message["event"]
        elif default_type is not None:
            kind = default_type
        else:
            raise Invalid("missing_type", "type is required (track, page, screen, identify, group or alias)")
        message["type"] = kind
    if not isinstance(kind, str) or kind not in TYPES:  # a list or an object cannot even be looked up
        raise Invalid("unknown_type", "type must be one of track, page, screen, identify, group, alias")
    if default_type is not None and kind != default_type:
        raise Invalid("type_mismatch", f"this endpoint takes {default_type} messages, not {kind}")

    for field in _ID_FIELDS:
        _ident(message, field)
    for field in _OBJECT_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, dict):
            raise Invalid("invalid_field", f"{field} must be an object")
    for field in _STRING_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, str):
            raise Invalid("invalid_field", f"{field} must be a string")
    message_id = message.get("messageId")
    if message_id is not None and (not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_ID_CHARS):
        raise Invalid("invalid_field", f"messageId must be a non-empty string of at most {MAX_ID_CHARS} characters")

    if "userId" not in message and "anonymousId" not in message:
        raise Invalid("missing_id", "userId or anonymousId is required")
    if kind == "track" and not message.get("event"):
        raise Invalid("missing_event", "a track message needs an event name")
    if kind == "group" and "groupId" not in message:
        raise Invalid("missing_group_id", "a group message needs a groupId")
    if kind == "alias" and ("userId" not in message or "previousId" not in message):
        raise Invalid("missing_previous_id", "an alias message needs both userId and previousId")
    return message

