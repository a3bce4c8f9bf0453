"""Configuration: frozen dataclasses built from defaults < intilery.toml < INTILERY_* < flags.

Example::

    config = load_config(path="intilery.toml", overrides={"port": 9000})
    config.sources[0].write_key
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

IP_MODES = ("anonymize", "full", "drop")
FSYNC_POLICIES = ("always", "interval", "never")
STORES = ("file", "nats")
LOG_FORMATS = ("text", "json")
# Values that never identify a person (compared trimmed, lower-cased); ``blocked_ids`` replaces them.
BLOCKED_IDS = ("", "null", "undefined", "none", "nan", "0", "-1", "anonymous", "guest", "[object object]",
               "unknown", "true", "false", "not_authenticated")  # fmt: skip
DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
PLAN_ENFORCEMENT = ("flag", "reject")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


@dataclass(frozen=True)
class Source:
    """A sender of events, identified by its write key."""

    name: str
    write_key: str
    allowed_origins: tuple[str, ...] = ("*",)
    ip_mode: str = "anonymize"
    trust_client_ip: bool = False
    drop_bots: bool = False
    rate_limit: float = 0.0  # requests per second for this source; 0: no limit
    rate_burst: int = 0  # 0: twice the rate
    first_party: bool = False  # the collector sets the itl_aid cookie (collector/ingest/firstparty.py)
    cookie_domain: str = ""  # itl_aid's Domain; "": host-only
    tracking_plan: str = ""  # a plan file (YAML or JSON, collector/plans/); relative to the config file
    plan_enforcement: str = "flag"  # flag: stored with context.violations; reject: 400 plan_violation

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins


@dataclass(frozen=True)
class Email:
    """``[email]`` (every key also ``INTILERY_EMAIL_<KEY>``): the SMTP relay, the sender, one-click
    unsubscribe, DKIM and the pace of sending (collector/engage/email/, docs/email.md)."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls, tls (implicit TLS) or none
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)  # put it in INTILERY_EMAIL_SMTP_PASSWORD, not the file
    smtp_timeout: float = 30.0
    from_: str = ""  # "Shop <news@shop.example>"; the file's key is ``from``
    reply_to: str = ""
    public_url: str = ""  # the collector's public address: unsubscribe links are <public_url>/u/TOKEN
    unsubscribe_secret: str = field(default="", repr=False)  # the tokens' HMAC key; "": generated into data/email-secret
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key_file: Path | None = None
    rate_per_second: float = 10.0
    frequency_cap: str = ""  # "3/day": at most 3 marketing messages a person a day; "": none
    quiet_hours: str = ""  # "21:00-08:00" in the person's time zone; "": none
    retry_schedule: tuple[float, ...] = (60.0, 300.0, 1800.0, 7200.0, 21600.0)  # seconds before each retry


EMAIL_SECURITY = ("starttls", "tls", "none")
_CAP = re.compile(r"^\s*(\d+)\s*/\s*(hour|day|week)\s*$")
_HOURS = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)\s*$")
CAP_PERIODS = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}


def _email(raw: Any, environ: dict) -> Email:
    """``[email]`` from the file, then ``INTILERY_EMAIL_*``; every mistake a sentence naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError("[email] must be a table")
    raw = dict(raw)
    if "from" in raw:
        raw["from_"] = raw.pop("from")
    names = [f for f in Email.__dataclass_fields__]
    unknown = set(raw) - set(names)
    if unknown:
        raise ConfigError(f"[email]: unknown keys {sorted(k.rstrip('_') for k in unknown)}")
    for name in names:
        env = environ.get("INTILERY_EMAIL_" + name.rstrip("_").upper())
        if env is not None:
            raw[name] = env
    values: dict[str, Any] = {}
    for name, value in raw.items():
        default = Email.__dataclass_fields__[name].default
        key = name.rstrip("_")
        try:
            if name == "dkim_key_file":
                values[name] = Path(value) if value else None
            elif name == "retry_schedule":
                items = value.split(",") if isinstance(value, str) else value
                values[name] = tuple(float(v) for v in items)
                if any(v < 0 for v in values[name]):
                    raise ValueError("a wait is negative")
            elif isinstance(default, bool) or not isinstance(default, (int, float)):
                if not isinstance(value, str):
                    raise ValueError("not a string")
                values[name] = value
            else:
                if isinstance(value, bool):
                    raise ValueError("not a number")
                values[name] = type(default)(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[email] {key}: cannot use {value!r} ({exc})") from None
    email = Email(**values)
    if email.smtp_security not in EMAIL_SECURITY:
        raise ConfigError(f"[email] smtp_security must be one of {', '.join(EMAIL_SECURITY)}, not {email.smtp_security!r}")
    if not 0 < email.smtp_port < 65536:
        raise ConfigError(f"[email] smtp_port must be between 1 and 65535, not {email.smtp_port}")
    if email.rate_per_second <= 0:
        raise ConfigError("[email] rate_per_second must be more than 0")
    if email.frequency_cap and not _CAP.match(email.frequency_cap):
        raise ConfigError(f"[email] frequency_cap is a count per hour, day or week such as '3/day', not {email.frequency_cap!r}")
    if email.quiet_hours and not _HOURS.match(email.quiet_hours):
        raise ConfigError(f"[email] quiet_hours is a window such as '21:00-08:00', not {email.quiet_hours!r}")
    if email.public_url and not email.public_url.startswith(("https://", "http://")):
        raise ConfigError(f"[email] public_url is the collector's public address such as https://c.example.com, not {email.public_url!r}")
    dkim = [bool(email.dkim_domain), bool(email.dkim_selector), email.dkim_key_file is not None]
    if any(dkim) and not all(dkim):
        raise ConfigError("[email] DKIM needs dkim_domain, dkim_selector and dkim_key_file together")
    if email.dkim_key_file is not None and not email.dkim_key_file.is_file():
        raise ConfigError(f"[email] dkim_key_file {str(email.dkim_key_file)!r} does not exist")
    return email


def frequency_cap(email: Email) -> tuple[int, float] | None:
    """``(count, seconds)`` of the cap, or None."""
    found = _CAP.match(email.frequency_cap) if email.frequency_cap else None
    return (int(found[1]), CAP_PERIODS[found[2]]) if found else None


def quiet_hours(email: Email) -> tuple[int, int] | None:
    """``(start, end)`` in minutes after midnight, or None."""
    found = _HOURS.match(email.quiet_hours) if email.quiet_hours else None
    return (int(found[1]) * 60 + int(found[2]), int(found[3]) * 60 + int(found[4])) if found else None


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    store: str = "file"
    fsync: str = "always"
    fsync_interval: float = 1.0
    geoip: Path | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    workers: int = 1
    log_format: str = "text"
    sources: tuple[Source, ...] = ()
    segment_max_bytes: int = 128 * 1024 * 1024
    max_pending_bytes: int = 64 * 1024 * 1024
    max_body_bytes_in_flight: int = 64 * 1024 * 1024  # request bodies being read or held; past it, 503
    rejected_retention_days: float = 30.0  # closed rejected/ segments older than this are deleted (0: kept)
    rejected_max_bytes: int = 1024 * 1024 * 1024  # and the oldest beyond this total (0: no cap)
    dedup_window_hours: float = 24.0
    dedup_max_entries: int = 500_000
    ua_cache_size: int = 10_000
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "INTILERY"
    nats_replicas: int = 0  # 0: 3 on a cluster, 1 on a single server
    nats_subject_prefix: str = "intilery"
    nats_retention_hours: float = 168.0  # the stream's max age; 0 keeps events until nats_max_bytes
    nats_max_bytes: int = 0  # 0: no size limit
    nats_duplicate_window_seconds: float = 120.0
    nats_publish_timeout: float = 5.0
    archive_consumer: str = "intilery-archive"
    ip_rate_limit: float = 0.0  # requests per second per client IP; 0: no limit
    ip_rate_burst: int = 0  # 0: twice the rate
    client_timeout: float = 15.0  # seconds a client may take to send headers or a body, or sit idle
    max_connections: int = 10_000
    metrics_token: str = ""  # when set, GET /metrics needs "Authorization: Bearer <token>"
    metrics_address: str = ""  # "host:port": serve /metrics there, not on the ingest port
    access_token: str = ""  # reads stored data (Profile API); "" : generated into data/access-token
    profiles: bool = True  # serve and demo run the profile builder in-process (--no-profiles)
    profiles_db: str = ""  # "" : <data_dir>/profiles.db; or postgresql://...
    profiles_space: str = "default"
    identifier_traits: tuple[str, ...] = ("email",)
    blocked_ids: tuple[str, ...] = BLOCKED_IDS
    max_anonymous_ids: int = 100
    max_emails: int = 5
    engage_dir: Path | None = None  # None: engage/ beside the configuration file (collector/engage/definitions.py)
    email: Email = field(default_factory=Email)  # [email] (collector/engage/email/)
    dev_source: bool = field(default=False, compare=False)
    config_file: str = field(default="", compare=False)  # the TOML file read ("" : none), for the banner


# setting name -> type used to read it from the environment or a flag
SETTINGS: dict[str, type] = {
    "host": str,
    "port": int,
    "data_dir": Path,
    "store": str,
    "fsync": str,
    "fsync_interval": float,
    "geoip": Path,
    "trusted_proxies": tuple,
    "workers": int,
    "log_format": str,
    "segment_max_bytes": int,
    "max_pending_bytes": int,
    "max_body_bytes_in_flight": int,
    "rejected_retention_days": float,
    "rejected_max_bytes": int,
    "dedup_window_hours": float,
    "dedup_max_entries": int,
    "ua_cache_size": int,
    "nats_url": str,
    "nats_stream": str,
    "nats_replicas": int,
    "nats_subject_prefix": str,
    "nats_retention_hours": float,
    "nats_max_bytes": int,
    "nats_duplicate_window_seconds": float,
    "nats_publish_timeout": float,
    "archive_consumer": str,
    "ip_rate_limit": float,
    "ip_rate_burst": int,
    "client_timeout": float,
    "max_connections": int,
    "metrics_token": str,
    "metrics_address": str,
    "access_token": str,
    "profiles": bool,
    "profiles_db": str,
    "profiles_space": str,
    "identifier_traits": list,
    "blocked_ids": list,
    "max_anonymous_ids": int,
    "max_emails": int,
    "engage_dir": Path,
}


def _coerce(name: str, value: Any) -> Any:
    kind = SETTINGS[name]
    try:
        if kind is tuple:
            if isinstance(value, str):
                value = [v for v in (s.strip() for s in value.split(",")) if v]
            return tuple(ipaddress.ip_network(v, strict=False) for v in value)
        if kind is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError("not a list of strings")
            return tuple(value)
        if kind is bool:
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.strip().lower() in ("1", "true", "yes", "on")
            if not isinstance(value, bool):
                raise ValueError("not true or false")
            return value
        if kind is Path:
            return Path(value) if value not in (None, "") else None
        if kind is int and isinstance(value, bool):
            raise ValueError("not a number")
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from None


def _source(raw: Any, index: int, base: Path = Path(".")) -> Source:
    if not isinstance(raw, dict):
        raise ConfigError(f"[[source]] #{index + 1} must be a table")
    unknown = set(raw) - {f for f in Source.__dataclass_fields__}
    if unknown:
        raise ConfigError(f"[[source]] #{index + 1}: unknown keys {sorted(unknown)}")
    for key in ("name", "write_key"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"[[source]] #{index + 1}: {key!r} must be a non-empty string")
    origins = raw.get("allowed_origins", ["*"])
    if isinstance(origins, str):
        origins = [origins]
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise ConfigError(f"source {raw['name']!r}: allowed_origins must be a list of strings")
    mode = raw.get("ip_mode", "anonymize")
    if mode not in IP_MODES:
        raise ConfigError(f"source {raw['name']!r}: ip_mode must be one of {', '.join(IP_MODES)}")
    first_party = bool(raw.get("first_party", False))
    plan = raw.get("tracking_plan", "")
    if not isinstance(plan, str):
        raise ConfigError(f"source {raw['name']!r}: tracking_plan must be a file name")
    enforcement = raw.get("plan_enforcement", "flag")
    if enforcement not in PLAN_ENFORCEMENT:
        raise ConfigError(f"source {raw['name']!r}: plan_enforcement must be one of {', '.join(PLAN_ENFORCEMENT)}")
    return Source(
        name=raw["name"],
        write_key=raw["write_key"],
        allowed_origins=tuple(o.rstrip("/") for o in origins),
        ip_mode=mode,
        trust_client_ip=bool(raw.get("trust_client_ip", False)),
        drop_bots=bool(raw.get("drop_bots", False)),
        rate_limit=_number(raw, "rate_limit", float),
        rate_burst=_number(raw, "rate_burst", int),
        first_party=first_party,
        cookie_domain=_cookie_domain(raw, first_party),
        tracking_plan=str(base / plan) if plan else "",
        plan_enforcement=enforcement,
    )


def _cookie_domain(raw: dict, first_party: bool) -> str:
    value = raw.get("cookie_domain", "")
    if value and not first_party:
        raise ConfigError(f"source {raw['name']!r}: cookie_domain needs first_party = true")
    domain = value.lstrip(".").lower() if isinstance(value, str) else None
    if domain is None or (domain and not DOMAIN.fullmatch(domain)):
        raise ConfigError(f"source {raw['name']!r}: cookie_domain must be a domain name such as example.com, not {value!r}")
    return domain


def _number(raw: dict, key: str, kind: type) -> Any:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"source {raw['name']!r}: {key} must be a number >= 0")
    return kind(value)


def _check(config: Config) -> Config:
    for name, allowed in (("fsync", FSYNC_POLICIES), ("store", STORES), ("log_format", LOG_FORMATS)):
        if getattr(config, name) not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(config, name)!r}")
    if not 0 < config.port < 65536 and config.port != 0:
        raise ConfigError(f"port must be between 1 and 65535, not {config.port}")
    if config.metrics_address and config.metrics_address.rpartition(":")[2].isdigit() is False:
        raise ConfigError(f"metrics_address must be host:port, not {config.metrics_address!r}")
    if config.max_anonymous_ids < 1 or config.max_emails < 1:
        raise ConfigError("max_anonymous_ids and max_emails must be at least 1")
    if config.workers < 1:
        raise ConfigError("workers must be at least 1")
    keys = [s.write_key for s in config.sources]
    if len(set(keys)) != len(keys):
        raise ConfigError("two sources share a write key")
    names = [s.name for s in config.sources]
    if len(set(names)) != len(names):
        raise ConfigError("two sources share a name")
    if config.geoip is not None and not config.geoip.is_file():
        raise ConfigError(f"geoip database {str(config.geoip)!r} does not exist")
    return config


def dev_source(data_dir: Path) -> Source:
    """The development source used when no source is configured; its key survives restarts."""
    key_file = data_dir / "dev-write-key"
    try:
        key = key_file.read_text().strip()
    except OSError:
        key = ""
    if not key:
        key = "wk_dev_" + secrets.token_urlsafe(12)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            key_file.write_text(key + "\n")
        except OSError:
            pass
    return Source(name="dev", write_key=key)


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    with_dev_source: bool = True,
) -> Config:
    """Read the file (if any), then INTILERY_* variables, then ``overrides`` (flags).

    With no source configured, a development source is made (``with_dev_source``), its key
    kept in the data directory; tools that take no events (the archive) say False.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get("INTILERY_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    sources_raw = raw.pop("source", [])
    if not isinstance(sources_raw, list):
        raise ConfigError("[[source]] must be an array of tables")
    email = _email(raw.pop("email", {}), environ)
    if "trusted_proxy" in raw:
        raw["trusted_proxies"] = raw.pop("trusted_proxy")
    unknown = set(raw) - set(SETTINGS)
    if unknown:
        raise ConfigError(f"unknown settings in {str(path)!r}: {', '.join(sorted(unknown))}")

    values: dict[str, Any] = {k: _coerce(k, v) for k, v in raw.items()}
    for name in SETTINGS:
        env = environ.get("INTILERY_" + name.upper())
        if env is None and name == "trusted_proxies":
            env = environ.get("INTILERY_TRUSTED_PROXY")
        if env is not None:
            values[name] = _coerce(name, env)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)

    config = Config(**values, email=email, sources=tuple(_source(s, i, Path(path).parent if path else Path("."))
                                                   for i, s in enumerate(sources_raw)))  # fmt: skip
    if path:
        config = replace(config, config_file=str(path))
    if not config.sources and with_dev_source:
        config = replace(config, sources=(dev_source(config.data_dir),), dev_source=True)
    return _check(config)


LOCAL_CONFIG = "intilery.toml"


def unread_local_config(config: Config) -> str:
    """A warning when ``./intilery.toml`` is there but not the configuration in force ("" : none):
    only ``--config`` and ``INTILERY_CONFIG`` are read, and a newcomer expects the file to be."""
    here = Path(LOCAL_CONFIG)
    if not here.is_file() or (config.config_file and Path(config.config_file).resolve() == here.resolve()):
        return ""
    return f"./{LOCAL_CONFIG} is not read: pass --config {LOCAL_CONFIG} (or set INTILERY_CONFIG)"
