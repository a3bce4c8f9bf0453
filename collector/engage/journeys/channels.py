"""What a journey's ``send`` step sends through: a channel, named in the step (``{destination: crm}``).

A channel checks its target when the definitions are read (``check``: a reason, or None) and makes
the outbox delivery of one send (``delivery``): its id derived from the run and the step (so a
run re-executing a step after a kill inserts the same id, which the outbox keeps once), the outbox
lane it goes to, and its payload. The delivery is written in the same transaction as the run's
move past the step: a send is in the outbox exactly once, and sent at least once with that id.

``destination``: a webhook destination (``engage/destinations/<name>.yaml``), its lane of the
outbox; the body is Standard Webhooks' with ``"type": "journey.send"``. The email channel (issue
on email) registers itself here under ``email`` (``{email: TEMPLATE}``): ``CHANNELS["email"] = ...``.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from typing import Protocol

import orjson


class Channel(Protocol):
    def check(self, target: object, compiler) -> str | None: ...

    def delivery(self, run: dict, node, now: float) -> tuple[str, str, str]:
        """``(id, lane, payload JSON)``: the outbox row of one send."""
        ...


def delivery_id(run_id: str, step: int, kind: str = "send") -> str:
    """The id of what a run's step puts out: the same for the same run and step, always."""
    return "msg_" + hashlib.blake2b(f"journey\0{run_id}\0{step}\0{kind}".encode(), digest_size=16).hexdigest()


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Destination:
    def check(self, target: object, compiler) -> str | None:
        if not isinstance(target, str) or not target:
            return "'send: {destination: NAME}' names a destination (a file of engage/destinations/)"
        if target not in compiler.destinations:
            known = ", ".join(sorted(compiler.destinations)) or "none"
            return f"'send' names destination {target!r}, and engage/destinations/ has no such file (destinations: {known})"
        return None

    def delivery(self, run: dict, node, now: float) -> tuple[str, str, str]:
        entry = run["entry"]
        data = {"journey": run["journey"], "version": run["version"], "run": run["id"], "step": node.label,
                "instance": run["instance"] or None, "userId": entry.get("userId"),
                "anonymousId": entry.get("anonymousId"), "event": entry}  # fmt: skip
        body = {"type": "journey.send", "timestamp": iso(now), "data": data}
        return delivery_id(run["id"], run["pc"]), node.target, orjson.dumps(body).decode()


class Email:
    """``send: {email: TEMPLATE}``: the outbox's ``email`` lane; the message is rendered for the person
    when it is sent (``collector/engage/email/sender.py``), the entering event as ``event``."""

    def check(self, target: object, compiler) -> str | None:
        if not isinstance(target, str) or not target:
            return "'send: {email: NAME}' names a template (a file of engage/templates/, NAME.liquid)"
        known = getattr(compiler, "templates", None)
        if known is not None and target not in known:
            return f"'send' names template {target!r}, and engage/templates/ has no such file (templates: {', '.join(sorted(known)) or 'none'})"
        return None

    def delivery(self, run: dict, node, now: float) -> tuple[str, str, str]:
        i = delivery_id(run["id"], run["pc"])
        payload = {"id": i, "render": node.target, "person": run["person"], "event": run["entry"], "created": now,
                   "journey": run["journey"]}  # fmt: skip
        return i, "email", orjson.dumps(payload).decode()


CHANNELS: dict[str, Channel] = {"destination": Destination(), "email": Email()}
