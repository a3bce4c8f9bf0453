"""The message as it goes to the relay, made from an outbox payload at each attempt, the same
every time: ``Message-ID: <delivery id@sender's domain>`` and ``Date`` the delivery's creation, so
a retry is the same message (a receiver or a person sees one, not two).

Marketing mail carries RFC 8058's pair, ``List-Unsubscribe: <https://.../u/TOKEN>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``; with DKIM configured the signature covers
them (``SIGNED``), as Gmail and Yahoo require to show their unsubscribe button.
"""

from __future__ import annotations

from email.headerregistry import Address
import hashlib
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from datetime import datetime, timezone
from pathlib import Path

import dkim

SIGNED = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"mime-version", b"content-type",
          b"list-unsubscribe", b"list-unsubscribe-post")  # fmt: skip


# CRLF, and a header folded only past SMTP's 998 (a long unsubscribe URL stays one word, not RFC 2047-encoded)
POLICY = policy.SMTP.clone(max_line_length=998)


def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def build(payload: dict, settings, unsubscribe_url: str | None, dkim_key: bytes | None = None) -> bytes:
    """The message's bytes: ``payload`` (``id``, ``to``, ``subject``, ``html``, ``text``, ``kind``,
    ``created``) and the settings (``from_``, ``reply_to``, DKIM)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.from_
    msg["To"] = payload["to"]
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["Subject"] = payload["subject"]
    msg["Date"] = format_datetime(datetime.fromtimestamp(payload["created"], timezone.utc))
    msg["Message-ID"] = f"<{payload['id']}@{domain_of(settings.from_)}>"
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(payload["text"])
    msg.add_alternative(payload["html"], subtype="html")
    msg.set_boundary("=_" + hashlib.blake2b(payload["id"].encode(), digest_size=12).hexdigest())  # not random: a retry is the same bytes
    raw = msg.as_bytes()
    if dkim_key is not None and settings.dkim_domain:
        present = {line.split(b":", 1)[0].strip().lower() for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                   if b":" in line and not line[:1].isspace()}  # fmt: skip
        signature = dkim.sign(raw, settings.dkim_selector.encode(), settings.dkim_domain.encode(), dkim_key,
                              include_headers=[h for h in SIGNED if h in present], linesep=b"\r\n")  # fmt: skip
        raw = signature + raw
    return raw


def dkim_key(settings) -> bytes | None:
    return Path(settings.dkim_key_file).read_bytes() if settings.dkim_key_file else None


def recipient(payload: dict) -> str:
    return getaddresses([payload["to"]])[0][1]


def sender_address(settings) -> str:
    return parseaddr(settings.from_)[1]


__all__ = ["build", "dkim_key", "recipient", "sender_address", "domain_of", "Address"]
