"""One attempt to hand a message to the relay (aiosmtplib), its outcome classified as a sender of
bulk mail must: a connection that fails, times out or drops, and any 4xx, is ``retry`` (on the
schedule, the same message); a 5xx is ``dead``, and a 5xx refusing the recipient also marks the
address undeliverable (``refused``), so no later message is tried there. The relay's answer is kept
with every email address in it replaced (``redact``): none reaches a log line or a stored error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import aiosmtplib

_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def redact(text: str) -> str:
    return _ADDRESS.sub("<address>", text)


@dataclass
class Outcome:
    result: str  # delivered | retry | dead
    status: int | None = None
    error: str | None = None
    answer: str | None = None
    refused: bool = False  # the recipient refused for good: mark the address undeliverable
    seconds: float = 0.0


async def attempt(settings, sender: str, recipient: str, raw: bytes) -> Outcome:
    started = time.monotonic()
    security = settings.smtp_security
    try:
        _, answer = await aiosmtplib.send(
            raw, sender=sender, recipients=[recipient], hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_user or None, password=settings.smtp_password or None,
            use_tls=security == "tls", start_tls=security == "starttls", timeout=settings.smtp_timeout)  # fmt: skip
        return Outcome("delivered", 250, None, redact(answer)[:500], seconds=time.monotonic() - started)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refusal = exc.recipients[0] if exc.recipients else None
        code = refusal.code if refusal is not None else 550
        text = redact(f"{code} {refusal.message if refusal is not None else exc}")
        if 400 <= code < 500:
            return Outcome("retry", code, f"the relay deferred the recipient: {text}", text, seconds=time.monotonic() - started)
        return Outcome("dead", code, f"the relay refused the recipient: {text}", text, refused=True,
                       seconds=time.monotonic() - started)  # fmt: skip
    except aiosmtplib.SMTPResponseException as exc:
        text = redact(f"{exc.code} {exc.message}")
        if 400 <= exc.code < 500 or exc.code < 0:
            return Outcome("retry", exc.code, f"the relay answered {text}", text, seconds=time.monotonic() - started)
        return Outcome("dead", exc.code, f"the relay answered {text}", text, seconds=time.monotonic() - started)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        what = type(exc).__name__
        return Outcome("retry", None, redact(f"could not reach the relay {settings.smtp_host}:{settings.smtp_port}: "
                                             f"{what}: {exc}"), seconds=time.monotonic() - started)  # fmt: skip
