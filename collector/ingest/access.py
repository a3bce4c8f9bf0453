"""The access token: the secret that reads stored data (the Profile API; DESIGN "Two kinds of secret").

Write keys are public (they sit in every page) and only send events; the access token is the
other kind. It is ``access_token`` in ``intilery.toml`` (or ``INTILERY_ACCESS_TOKEN``); when
none is configured one is generated into ``<data_dir>/access-token`` (mode 0600) and kept.
It is sent as HTTP Basic with the token as user name (as Segment's Profile API), or as
``Authorization: Bearer <token>``. It is never logged.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import time
from pathlib import Path

from collector.errors import Unauthorized

TOKEN_FILE = "access-token"


def access_token(config) -> tuple[str, Path | None]:
    """The token, and the file it was read from or generated into (None when configured)."""
    if config.access_token:
        return config.access_token, None
    path = Path(config.data_dir) / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:  # written whole beside it, then linked: workers starting at once all read one token
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("at_" + secrets.token_urlsafe(24) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            if path.exists() and not path.read_text().strip():
                path.unlink()  # an empty file left by an older version
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it meanwhile: theirs is the token
        finally:
            os.unlink(tmp)
        token = path.read_text().strip()
    os.chmod(path, 0o600)
    return token, path


class Token:
    """The access token in force: the configured one, or the file's as it is now. A changed
    ``access-token`` file takes effect without a restart (its inode, size and mtime are looked at,
    at most every ``LOOK_EVERY`` seconds); every route that needs the token checks it through one."""

    LOOK_EVERY = 1.0

    def __init__(self, config) -> None:
        self.config = config
        self._value: str | None = None
        self._stamp: tuple | None = None
        self._looked = 0.0

    def current(self) -> str:
        if self.config.access_token:
            return self.config.access_token
        now = time.monotonic()
        if self._value is None or now - self._looked >= self.LOOK_EVERY:
            self._looked = now
            stamp = _stamp(Path(self.config.data_dir) / TOKEN_FILE)
            if self._value is None or stamp != self._stamp:
                self._value = access_token(self.config)[0]  # read, or made when there is none
                self._stamp = _stamp(Path(self.config.data_dir) / TOKEN_FILE)
        return self._value

    def check(self, authorization: str) -> None:
        check(authorization, self.current())


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def presented(authorization: str) -> str | None:
    """The token an ``Authorization`` header carries (Basic user name, or Bearer), or None."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode("utf-8").split(":", 1)[0] or None
        except ValueError:
            return None
    return None


def check(authorization: str, token: str) -> None:
    """Raises ``Unauthorized`` unless the header carries exactly ``token`` (compared in constant time)."""
    given = presented(authorization)
    if given is None:
        raise Unauthorized("missing_access_token", "an access token is required (HTTP Basic user name, or Bearer)")
    if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode()):
        raise Unauthorized("invalid_access_token", "the access token is not valid")
