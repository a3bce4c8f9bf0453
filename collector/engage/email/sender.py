"""The outbox's ``email`` lane: what journeys and campaigns queue (``compose``: one delivery, the
message rendered for the person when it is queued), sent through the relay at most
``rate_per_second``::

    outbox (lane "email") ── claim ──▶ checks at send time ──▶ message.build ──▶ smtp.attempt
           ◀── record: delivered | failed (next_at on the schedule) | dead (5xx, or skipped: why) ──┘

The checks, each a skip counted in the outbox's stats (``skipped:<reason>``) and recorded on the
delivery as ``dead`` with the reason: ``undeliverable`` (a relay refused the address for good),
``unsubscribed`` (marketing: the person left with one click), ``frequency_cap`` (marketing: the
cap reached in its period). A delivery keeps its id on every retry, and so its ``Message-ID``.
A sender killed mid-send leaves the delivery in flight until its lease ends, then sends it again:
at least once, the same message.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import orjson

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.config import frequency_cap, quiet_hours
from collector.engage.email import message, smtp, store, templates, tokens, variables
from collector.engage.outbox.store import excerpt

log = logging.getLogger("intilery.email")

LANE = "email"
POLL = 0.2
LEASE_SLACK = 5.0
JITTER = 0.1


def unsubscribe_url(settings, key: bytes, pid: str) -> str:
    return f"{settings.public_url.rstrip('/')}/u/{tokens.make(key, pid)}"


def compose(settings, key: bytes, template: templates.Template, person: dict, delivery_id: str, now: float,
            event: dict | None = None) -> dict | None:  # fmt: skip
    """The outbox payload of one message to ``person`` (``variables.of_person``); None when they have
    no email address."""
    address = person["traits"].get("email")
    if not isinstance(address, str) or "@" not in address:
        return None
    pid = person["profile_id"]
    if template.kind == "marketing" and not settings.public_url:
        raise templates.RenderError("marketing email needs [email] public_url (its unsubscribe link points there)")
    url = unsubscribe_url(settings, key, pid) if template.kind == "marketing" else ""
    rendered = templates.render(template, {**person, "event": event or {}, "unsubscribe_url": url})
    return {"id": delivery_id, "to": address, "profile_id": pid, "template": template.name, "kind": rendered.kind,
            "subject": rendered.subject, "html": rendered.html, "text": rendered.text, "created": now,
            "unsubscribe_url": url, "timezone": person["traits"].get("timezone")}  # fmt: skip


def held_until(window: tuple[int, int] | None, zone: object, now: float) -> float | None:
    """The end of the quiet hours (epoch seconds) when ``now`` is within them in the person's time zone
    (an IANA name; UTC when unknown or not a zone); None: not quiet now."""
    if window is None:
        return None
    try:
        tz = ZoneInfo(zone) if isinstance(zone, str) and zone else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        tz = timezone.utc
    local = datetime.fromtimestamp(now, tz)
    minute = local.hour * 60 + local.minute
    start, end = window
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    wait = (end - minute) % 1440 or 1440
    at = (local.replace(second=0, microsecond=0) + timedelta(minutes=wait))
    return at.timestamp()


class EmailLane:
    """Claims the ``email`` lane's due deliveries and sends them, ``concurrency`` at a time, paced."""

    def __init__(self, settings, db, key: bytes, concurrency: int = 4, root=None, profiles=None) -> None:
        """``root``: the engage folder, ``profiles``: a profile store (read on the database thread): for
        a journey's sends, rendered when sent."""
        self.settings, self.db, self.key, self.concurrency = settings, db, key, concurrency
        self.root, self.profiles = root, profiles
        self.dkim_key = message.dkim_key(settings)
        self.sender = message.sender_address(settings)
        self.cap = frequency_cap(settings)
        self.quiet = quiet_hours(settings)
        self.next_slot = 0.0
        self.wake = asyncio.Event()

    async def pace(self) -> None:
        """At most ``rate_per_second`` attempts a second."""
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + 1.0 / self.settings.rate_per_second
        if slot > now:
            await asyncio.sleep(slot - now)

    async def run(self, stop: asyncio.Event) -> None:
        outbox = self.db.outbox
        await self.db(store.create, outbox)
        while not stop.is_set():
            try:
                groups = await self.db(outbox.claim, LANE, 1, self.settings.smtp_timeout + LEASE_SLACK, self.concurrency)
            except Exception:
                log.exception("the outbox could not be read; trying again")
                groups = []
            if not groups:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), POLL)
                except asyncio.TimeoutError:
                    pass
                continue
            outcomes = await asyncio.gather(*(self.send(group[0]) for group in groups), return_exceptions=True)
            done = []
            for group, outcome in zip(groups, outcomes):
                if isinstance(outcome, BaseException):
                    log.error("an email could not be sent: %s", smtp.redact(repr(outcome)))
                    await self.db(outbox.release, [group[0][0]])
                elif outcome["ids"]:  # none: held (quiet hours), already put back
                    done.append(outcome)
            await self.db(outbox.record, done)

    def render(self, job: dict) -> dict | str:
        """A journey's send: the template rendered for the person now, or why not (a skip's reason)."""
        if self.root is None or self.profiles is None:
            raise templates.RenderError("this sender has no engage folder or profile database to render a journey's email")
        template = templates.load(self.root, job["render"])
        event = job.get("event") or {}
        pid = next((found for kind, field in (("user_id", "userId"), ("anonymous_id", "anonymousId")) if event.get(field)
                    for found in [self.profiles.find(kind, str(event[field]))] if found), None)  # fmt: skip
        person = variables.of_person(self.profiles, pid) if pid else None
        self.profiles.commit()
        if person is None:
            return "no_profile"
        if template.kind == "marketing" and person["traits"].get("email_consent") is False:
            return "no_consent"
        made = compose(self.settings, self.key, template, person, job["id"], job["created"], job.get("event"))
        return "no_email" if made is None else made

    def hold(self, delivery_id: str, until: float) -> None:
        outbox = self.db.outbox
        outbox.begin()
        outbox._run("UPDATE outbox SET state = 'pending', next_at = ?, last_error = 'held: quiet hours' "
                    "WHERE id = ? AND state = 'in_flight'", (until, delivery_id))  # fmt: skip
        outbox.bump({(LANE, "held:quiet_hours"): 1})
        outbox.commit()

    async def skip(self, ids: list[str], reason: str) -> dict:
        await self.db(self.db.outbox.bump, {(LANE, f"skipped:{reason}"): len(ids)})
        await self.db(self.db.outbox.commit)
        return {"ids": ids, "state": "dead", "error": f"skipped: {reason}", "destination": LANE}

    async def send(self, row: tuple) -> dict:
        delivery_id, _, raw_payload, attempts = row
        payload = orjson.loads(raw_payload)
        db, outbox = self.db, self.db.outbox
        if payload.get("render"):
            try:
                made = await db(self.render, payload)
            except (templates.DefinitionError, templates.RenderError) as exc:
                return {"ids": [delivery_id], "state": "dead", "error": smtp.redact(str(exc)), "destination": LANE}
            if isinstance(made, str):
                return await self.skip([delivery_id], made)
            payload = made
        to = message.recipient(payload)
        pid, marketing = payload.get("profile_id", ""), payload.get("kind") == "marketing"
        if await db(store.undeliverable, outbox, to):
            return await self.skip([delivery_id], "undeliverable")
        if marketing and await db(store.unsubscribed, outbox, pid, tokens.MARKETING):
            return await self.skip([delivery_id], "unsubscribed")
        if marketing and self.cap and attempts == 0:
            count, period = self.cap
            if await db(store.sent_since, outbox, pid, time.time() - period) >= count:
                return await self.skip([delivery_id], "frequency_cap")
        if marketing and self.quiet:
            until = held_until(self.quiet, payload.get("timezone"), time.time())
            if until is not None:  # held, not tried: due again at the window's end
                await db(self.hold, delivery_id, until)
                return {"ids": [], "state": "pending", "destination": LANE}
        raw = message.build(payload, self.settings, payload.get("unsubscribe_url") or None, self.dkim_key)
        await self.pace()
        outcome = await smtp.attempt(self.settings, self.sender, to, raw)
        now = time.time()
        state, next_at, error = outcome.result, 0.0, outcome.error
        if outcome.result == "delivered":
            await db(store.note_sent, outbox, pid, payload.get("kind", ""), now)
        elif outcome.result == "retry":
            schedule = self.settings.retry_schedule
            if attempts + 1 > len(schedule):
                state, error = "dead", f"{error}; the retry schedule is used up after {attempts + 1} attempt(s)"
            else:
                state, next_at = "failed", now + schedule[attempts] * random.uniform(1 - JITTER, 1 + JITTER)
        elif outcome.refused:
            await db(store.mark_undeliverable, outbox, to, outcome.answer or "", now)
        if state != "delivered":
            log.warning("an email was not delivered", extra={"delivery": delivery_id, "state": state, "reason": error})
        request = excerpt(f"MAIL FROM / RCPT TO <recipient>\nMessage-ID: <{delivery_id}>\nSubject: {payload.get('subject', '')}")
        return {"ids": [delivery_id], "state": state, "next_at": next_at, "status": outcome.status, "error": error,
                "request": request, "answer": outcome.answer, "destination": LANE,
                "seconds": outcome.seconds if outcome.status is not None else None}  # fmt: skip
