"""From parsed messages to stored lines: validate, enrich, serialise (the per-event path)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from collector.config import Source
from collector.ingest.enrich import ip as iputil
from collector.ingest.enrich.geo import Geo
from collector.ingest.enrich.useragent import UserAgentParser
from collector.errors import Invalid
from collector.log.layout import iso_ms
from collector.api import MAX_MESSAGE_BYTES, sentence
from collector.plans.enforce import Plans, rejection_sentence
from collector.plans.plan import Plan
from collector.ingest.validate import parse_timestamp, validate


YEAR_1 = -62135596800.0  # 0001-01-01T00:00:00Z, the earliest time ISO-8601 writes without a sign
TOO_DEEP = "a message may nest objects and arrays at most 254 levels deep"


class RequestInfo(NamedTuple):
    """What the request itself tells about every message in it."""

    received_at: float
    ip: str | None
    user_agent: str | None

    @property
    def received_iso(self) -> str:
        return iso_ms(self.received_at)


@dataclass
class Outcome:
    lines: list[bytes]
    ids: list[str]
    rejected: list[dict]  # {"index", "code", "message"}
    bots_dropped: int = 0
    suppressed: int = 0  # from people on the suppression list (collector.privacy): answered, not stored
    violations: dict[int, list] = field(default_factory=dict)  # index -> what a rejected message broke of the plan
    unkept: set[int] = field(default_factory=set)  # rejected messages of a suppressed person: not kept in rejected/


def merge_under(base: dict, over: dict) -> dict:
    """``over`` merged on top of ``base``, recursively for nested objects."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = merge_under(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return merged


class Pipeline:
    def __init__(self, user_agents: UserAgentParser, geo: Geo | None, plans: Plans | None = None,
                 suppression=None) -> None:  # fmt: skip
        self.user_agents = user_agents
        self.geo = geo
        self.plans = plans  # None, or empty, when no source has a tracking plan
        self.suppression = suppression  # collector.privacy.suppression.Suppression, or None

    def process(
        self,
        messages: list[Any],
        source: Source,
        request: RequestInfo,
        default_type: str | None = None,
        outer_context: dict | None = None,
        outer_sent_at: Any = None,
        check_size: bool = False,
    ) -> Outcome:
        outcome = Outcome([], [], [])
        received_iso = request.received_iso
        plan = self.plans.get(source.name) if self.plans else None  # once a request: no plan, no cost
        flagged = None
        suppression = self.suppression if self.suppression is not None and self.suppression.hashes else None
        for index, raw in enumerate(messages):
            try:
                if check_size and len(orjson.dumps(raw)) > MAX_MESSAGE_BYTES:
                    raise Invalid("message_too_large", sentence("message_too_large"))
                message = validate(raw, default_type)
                if outer_context:
                    message["context"] = merge_under(outer_context, message.get("context") or {})
                if suppression is not None and suppression.matches(message):  # after the outer context
                    outcome.suppressed += 1
                    continue
                if outer_sent_at is not None and "sentAt" not in message:
                    message["sentAt"] = outer_sent_at
                self._timestamps(message, request.received_at, received_iso)
                if plan is not None:
                    flagged = self._plan(plan, source, message, index, outcome)
            except Invalid as exc:
                outcome.rejected.append({"index": index, "code": exc.code, "message": exc.message})
                if suppression is not None and suppression.matches_raw(raw, outer_context):
                    outcome.unkept.add(index)  # a suppressed person's: answered, never kept in rejected/
                continue
            except (orjson.JSONEncodeError, RecursionError):  # size check or context merge: nested too deep
                outcome.rejected.append({"index": index, "code": "invalid_message", "message": TOO_DEEP})
                continue
            message_id = message.get("messageId") or str(uuid.uuid4())
            message["messageId"] = message_id
            message["receivedAt"] = received_iso
            message["source"] = source.name
            if self._context(message, source, request) and source.drop_bots:
                outcome.bots_dropped += 1
                continue
            if flagged:
                message["context"]["violations"] = flagged
            try:
                outcome.lines.append(orjson.dumps(message) + b"\n")
            except orjson.JSONEncodeError:
                outcome.rejected.append({"index": index, "code": "invalid_message", "message": TOO_DEEP})
                continue
            outcome.ids.append(message_id)
        return outcome

    def _plan(self, plan: Plan, source: Source, message: dict, index: int, outcome: Outcome) -> list | None:
        """The tracking-plan stage: the violations to flag, or ``Invalid`` (plan_violation) to reject."""
        checked = self.plans.check(plan, source, message)
        if checked is None:
            return None
        found, rejected = checked
        if rejected:
            outcome.violations[index] = found
            raise Invalid("plan_violation", rejection_sentence(found))
        return found

    @staticmethod
    def _timestamps(message: dict, received_at: float, received_iso: str) -> None:
        """``timestamp`` = receivedAt - (sentAt - originalTimestamp), never in the future."""
        original_text, original_field = message.get("originalTimestamp"), "originalTimestamp"
        if original_text is None:
            original_text, original_field = message.get("timestamp"), "timestamp"  # an error names what was sent
            if original_text is not None:
                message["originalTimestamp"] = original_text
        sent_text = message.get("sentAt")
        sent = parse_timestamp(sent_text, "sentAt") if sent_text is not None else None
        if original_text is None:
            corrected = received_at
        else:
            # the tag sends both as one text: parsed once
            original = sent if original_text == sent_text else parse_timestamp(original_text, original_field)
            corrected = received_at - (sent - original) if sent is not None else original
        if corrected >= received_at:  # no clock skew to correct (the tag's sentAt is its originalTimestamp), or the future
            message["timestamp"] = received_iso
        else:
            message["timestamp"] = iso_ms(max(corrected, YEAR_1))  # absurd skew: not before year 1

    def _context(self, message: dict, source: Source, request: RequestInfo) -> bool:
        """Fill ``context`` (ip, location, user agent); True when the sender is a known bot."""
        context = dict(message.get("context") or {})
        message["context"] = context

        ip = iputil.valid_ip(context.get("ip")) if source.trust_client_ip else None
        ip = ip or request.ip
        if ip is not None:
            if self.geo is not None:
                location = self.geo.locate(ip)
                if location is not None:
                    context["location"] = location
            if source.ip_mode == "anonymize":
                context["ip"] = iputil.anonymize(ip)
            elif source.ip_mode == "full":
                context["ip"] = ip
        if source.ip_mode == "drop" or ip is None:
            context.pop("ip", None)

        agent = context.get("userAgent")
        if not isinstance(agent, str) or not agent:
            agent = request.user_agent
        if agent:
            context["userAgent"] = agent
            parsed = self.user_agents.parse(agent[:1024])
            context.update(parsed)
            return "bot" in parsed
        return False
