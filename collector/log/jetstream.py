"""NATS JetStream stream administration: settings, creating or checking the stream, connecting.

Shared by the NATS store (which publishes) and ``intilery archive`` (which consumes).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from collector.config import Config, ConfigError
from collector.log.layout import EVENTS, REJECTED

log = logging.getLogger("intilery.store.nats")

HEADER_ID = "Nats-Msg-Id"
HEADER_PARTITION = "Intilery-Partition"
API_TIMEOUT = 5.0  # JetStream API calls at start-up (create or check the stream)
CONNECT_OPTIONS: dict[str, Any] = {
    "allow_reconnect": True,
    "max_reconnect_attempts": -1,  # never give up: the collector heals when the cluster returns
    "reconnect_time_wait": 1,
    "connect_timeout": 2,
    "ping_interval": 5,  # a silent (half-open) connection is noticed within ~15 s
    "max_outstanding_pings": 3,
}
# JetStream error codes this module reacts to
ERR_REPLICAS_NOT_SUPPORTED = 10074  # replicas > 1 on a server that is not clustered
ERR_STREAM_NAME_IN_USE = 10058
ERR_STREAM_NOT_FOUND = 10059

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_SAFE_ID = re.compile(r"[\x21-\x7e]+")


def subject_token(name: str) -> str:
    """A source name as one subject token (dots, wildcards and spaces become ``_``)."""
    return _TOKEN.sub("_", name) or "_"


def message_id_header(source: str, message_id: str) -> str:
    """The ``Nats-Msg-Id`` of a source's messageId: ``<source>/<messageId>``, so JetStream's duplicate
    window, like the collector's, keeps two sources' events apart; a digest when that is not header-safe."""
    if "/" not in source and _SAFE_ID.fullmatch(source) and _SAFE_ID.fullmatch(message_id):
        return f"{source}/{message_id}"
    key = f"{source}\0{message_id}".encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(key).hexdigest()


def server_list(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def redact(url: str) -> str:
    """The server list without passwords or tokens, for logs and /readyz."""
    return re.sub(r"//[^/@,]*@", "//***@", url)


@dataclass(frozen=True)
class StreamSettings:
    """What the stream must look like; built from the ``nats_*`` settings.

    Example::

        settings = StreamSettings.from_config(load_config(overrides={"nats_replicas": 3}))
        settings.subjects  # ('intilery.events.>', 'intilery.rejected.>')
    """

    name: str
    prefix: str
    replicas: int  # 0: 3 on a cluster, 1 on a single server
    max_age: float  # seconds, 0 = none
    max_bytes: int  # 0 = none
    duplicate_window: float  # seconds

    @classmethod
    def from_config(cls, config: Config) -> StreamSettings:
        settings = cls(
            name=config.nats_stream,
            prefix=config.nats_subject_prefix,
            replicas=config.nats_replicas,
            max_age=config.nats_retention_hours * 3600,
            max_bytes=config.nats_max_bytes,
            duplicate_window=config.nats_duplicate_window_seconds,
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ConfigError(f"nats_stream must be letters, digits, '-' or '_', not {self.name!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", self.prefix):
            raise ConfigError(f"nats_subject_prefix must be dot-separated tokens, not {self.prefix!r}")
        if not 0 <= self.replicas <= 5:
            raise ConfigError(f"nats_replicas must be 1 to 5 (or 0 for automatic), not {self.replicas}")
        if self.max_age < 0 or self.max_bytes < 0:
            raise ConfigError("nats_retention_hours and nats_max_bytes cannot be negative")
        if self.duplicate_window <= 0:
            raise ConfigError("nats_duplicate_window_seconds must be positive")
        if self.max_age and self.duplicate_window > self.max_age:
            raise ConfigError("nats_duplicate_window_seconds cannot be longer than nats_retention_hours")

    @property
    def subjects(self) -> tuple[str, str]:
        return (f"{self.prefix}.{EVENTS}.>", f"{self.prefix}.{REJECTED}.>")

    def subject(self, log_name: str, source: str) -> str:
        return f"{self.prefix}.{log_name}.{subject_token(source)}"

    def stream_config(self, replicas: int):
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        return StreamConfig(
            name=self.name,
            description="Intilery collected events (intilery serve --store nats)",
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            max_age=self.max_age,
            max_bytes=self.max_bytes or -1,
            duplicate_window=self.duplicate_window,
        )

    def mismatches(self, existing: Any) -> list[str]:
        """How an existing stream's configuration differs from these settings."""
        found = []
        if sorted(existing.subjects or []) != sorted(self.subjects):
            found.append(f"subjects {existing.subjects} (expected {list(self.subjects)})")
        if self.replicas and existing.num_replicas != self.replicas:
            found.append(f"{existing.num_replicas} replicas (nats_replicas is {self.replicas})")
        if abs((existing.max_age or 0) - self.max_age) > 0.001:
            found.append(f"max age {(existing.max_age or 0) / 3600:g} h (nats_retention_hours is {self.max_age / 3600:g})")
        existing_bytes = existing.max_bytes if existing.max_bytes and existing.max_bytes > 0 else 0
        if existing_bytes != self.max_bytes:
            found.append(f"max bytes {existing_bytes} (nats_max_bytes is {self.max_bytes})")
        if abs((existing.duplicate_window or 0) - self.duplicate_window) > 0.001:
            found.append(
                f"duplicate window {existing.duplicate_window:g} s"
                f" (nats_duplicate_window_seconds is {self.duplicate_window:g})"
            )
        storage = getattr(existing.storage, "value", existing.storage)
        if storage != "file":
            found.append(f"{storage} storage (expected file)")
        return found


async def ensure_stream(js: Any, settings: StreamSettings) -> Any:
    """Create the stream, or check the existing one; ConfigError when it differs.

    Transient failures (no JetStream leader yet, timeouts) are raised as they are, for the
    caller to retry.
    """
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        info = await _create_stream(js, settings)
        if info is not None:
            return info
        info = await js.stream_info(settings.name)  # another collector created it meanwhile
    differences = settings.mismatches(info.config)
    if differences:
        raise ConfigError(
            f"NATS stream {settings.name!r} exists with a different configuration: {'; '.join(differences)}."
            " Change the settings to match, or update the stream (nats stream edit) yourself;"
            " the collector never changes an existing stream"
        )
    return info


async def _create_stream(js: Any, settings: StreamSettings) -> Any:
    """The new stream's info, or None when it exists already (created by someone else)."""
    from nats.js.errors import APIError

    replicas = settings.replicas or 3
    while True:
        try:
            info = await js.add_stream(config=settings.stream_config(replicas))
        except APIError as exc:
            if exc.err_code == ERR_STREAM_NAME_IN_USE:
                return None
            if exc.err_code == ERR_REPLICAS_NOT_SUPPORTED and not settings.replicas and replicas > 1:
                replicas = 1  # automatic: a single server holds one replica
                continue
            if exc.err_code == ERR_REPLICAS_NOT_SUPPORTED:
                raise ConfigError(
                    f"cannot create NATS stream {settings.name!r} with {replicas} replicas: {exc.description}"
                    " (set nats_replicas to 1 on a single server)"
                ) from None
            raise
        log.info("created NATS stream", extra={"stream": settings.name, "replicas": replicas})
        return info


async def connect(config: Config, client_name: str, **callbacks: Any) -> Any:
    """A NATS connection that reconnects forever; returns once the first connection is up."""
    import nats

    return await nats.connect(servers=server_list(config.nats_url), name=client_name, **CONNECT_OPTIONS, **callbacks)


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name
