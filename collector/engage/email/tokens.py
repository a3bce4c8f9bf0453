"""The unsubscribe token: ``<person>.<list>.<mac>``, each part base64url; the MAC is HMAC-SHA256
(truncated to 128 bits) over the person's profile id and the list, keyed with the installation's
secret (``[email] unsubscribe_secret``, else generated once into ``<data_dir>/email-secret``).
Not guessable, not forgeable for another person or list, and it carries no email address (a URL
ends up in logs and proxies)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

MARKETING = "marketing"  # the one list today: every marketing message


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret(email_settings, data_dir: Path) -> bytes:
    """The HMAC key: the setting, or the data directory's generated one (made on first use)."""
    if email_settings.unsubscribe_secret:
        return email_settings.unsubscribe_secret.encode()
    path = Path(data_dir) / "email-secret"
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    if not key:
        key = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key + "\n")
        path.chmod(0o600)
    return key.encode()


def _mac(key: bytes, person: str, topic: str) -> bytes:
    return hmac.new(key, f"unsubscribe\0{person}\0{topic}".encode(), hashlib.sha256).digest()[:16]


def make(key: bytes, person: str, topic: str = MARKETING) -> str:
    return f"{_b64(person.encode())}.{_b64(topic.encode())}.{_b64(_mac(key, person, topic))}"


def read(key: bytes, token: str) -> tuple[str, str] | None:
    """``(person, list)`` of a genuine token; None for anything else (never an exception)."""
    try:
        person_b, topic_b, mac_b = token.split(".")
        person, topic, mac = _unb64(person_b).decode(), _unb64(topic_b).decode(), _unb64(mac_b)
    except (ValueError, UnicodeDecodeError):
        return None
    return (person, topic) if hmac.compare_digest(mac, _mac(key, person, topic)) else None
