"""Serving: ``run_server``, the banner, and ``intilery serve``.

``run_server`` serves one process until SIGINT/SIGTERM (on ``runtime.new_loop``, waiting
with ``runtime.until_signalled``), reading the tracking plans again on SIGHUP;
``serve_flags`` and ``config_from_args`` are the flags that serve and demo share.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import signal
import socket
from typing import Any

from aiohttp import web

from collector import __version__
from collector.config import FSYNC_POLICIES, LOG_FORMATS, STORES, Config, ConfigError, load_config, unread_local_config
from collector.engage.definitions import at_start
from collector.logs import setup_logging
from collector.plans.enforce import Plans
from collector.serve.runtime import new_loop, until_signalled

log = logging.getLogger("intilery")


def serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8080)")
    parser.add_argument("--data-dir", help="where the file store writes (default ./data)")
    parser.add_argument("--store", choices=STORES, help="file (default) or nats")
    parser.add_argument("--fsync", choices=FSYNC_POLICIES, help="always (default), interval or never")
    parser.add_argument("--geoip", help="MaxMind-format .mmdb for context.location")
    parser.add_argument("--trusted-proxy", action="append", dest="trusted_proxies", metavar="CIDR",
                        help="a proxy whose X-Forwarded-For is believed (repeatable)")  # fmt: skip
    parser.add_argument("--workers", type=int, help="worker processes sharing the port (default 1)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json")
    parser.add_argument("--no-profiles", dest="profiles", action="store_const", const=False,
                        help="do not run the profile builder in this process")  # fmt: skip
    parser.add_argument("--profiles-db", help="profile database: SQLite path (default DATA_DIR/profiles.db) or postgresql://...")
    parser.add_argument("--nats-url", help="NATS server(s) for --store nats")
    parser.add_argument("--nats-replicas", type=int, help="JetStream stream replicas (default 3 on a cluster, 1 alone)")
    parser.add_argument("--nats-stream", help="JetStream stream name (default INTILERY)")
    parser.add_argument("--nats-retention-hours", type=float, help="how long the stream keeps events (default 168)")
    parser.add_argument("--nats-duplicate-window", type=float, dest="nats_duplicate_window_seconds", metavar="SECONDS",
                        help="JetStream drops a repeated messageId within this window (default 120)")  # fmt: skip
    parser.add_argument("--nats-publish-timeout", type=float, metavar="SECONDS",
                        help="answer 503 when JetStream has not acknowledged within this (default 5)")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> Config:
    keys = ("host", "port", "data_dir", "store", "fsync", "geoip", "trusted_proxies", "workers", "log_format",
            "nats_url", "nats_replicas", "nats_stream", "nats_retention_hours", "nats_duplicate_window_seconds",
            "nats_publish_timeout", "profiles", "profiles_db")  # fmt: skip
    return load_config(args.config, {k: getattr(args, k, None) for k in keys})


def profiles_line(config: Config) -> str:
    """Where the profiles are and where the access token is (never the token, nor a database
    password: this may be logged)."""
    from collector.ingest.access import access_token
    from collector.log.jetstream import redact
    from collector.profiles.database import db_target

    _, path = access_token(config)
    token = f"access token in {path}" if path else "access token from the configuration"
    builder = "built beside the collector" if config.profiles else "not built here (--no-profiles)"
    return f"  profiles:   {redact(db_target(config))}, {builder}; Profile API {token}"


class PortInUse(ConfigError):
    """The address to listen on is taken: one line naming it and the flag that moves it."""

    def __init__(self, host: str, port: int, flag: str = "--port") -> None:
        super().__init__(f"port {port} on {host} is in use (another collector or demo?): stop it, or pass {flag} N")


def check_port(host: str, port: int, flag: str = "--port", reuse_port: bool = False) -> None:
    """Raise ``PortInUse`` when ``host:port`` cannot be bound (as aiohttp binds: SO_REUSEADDR), before
    anything starts: a worker that cannot bind would otherwise be restarted, traceback after traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port, flag) from None
            if exc.errno == errno.EACCES:
                raise ConfigError(f"port {port} on {host} needs more privileges: pass {flag} N (1024 or above)") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror} (is --host an address of this machine?)") from None


def key_hint(key: str) -> str:
    """A write key as the banner shows it: enough to tell which, not the whole (a banner may be logged)."""
    return key if len(key) <= 8 else f"{key[:3]}…{key[-4:]}"


def config_lines(config: Config) -> list[str]:
    """The configuration in force and the sources it has (for ``serve`` and ``demo``)."""
    lines = [f"  config:     {config.config_file or 'none (defaults)'}"]
    unread = unread_local_config(config)
    if unread:
        lines.append(f"              {unread}")
    if not config.dev_source:
        shown = []
        for source in config.sources:
            origins = ", ".join(source.allowed_origins) if source.allowed_origins not in ((), ("*",)) else "any origin"
            shown.append(f"{source.name} (key {key_hint(source.write_key)}, {origins})")
        lines.append("  sources:    " + "; ".join(shown))
    return lines


def banner(config: Config, port: int, where: str) -> str:
    """What ``intilery serve`` prints at start: the address, the configuration and its sources, the
    store (``where`` its events go)."""
    url = f"http://{config.host if ':' not in config.host else '[' + config.host + ']'}:{port}"
    lines = [f"intilery {__version__} listening on {url}", *config_lines(config), f"  store:      {config.store} ({where})"]
    lines.append(profiles_line(config))
    if config.dev_source:
        from collector.serve.snippet import snippet

        key = config.sources[0].write_key
        lines += [
            f"  sources:    development source 'dev' (any origin), write key: {key}",
            "  paste this into your pages:",
            "",
            snippet(key, url),
        ]
    return "\n".join(lines)


async def run_server(config: Config, *, reuse_port: bool = False, quiet: bool = False, writer: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and close the store."""
    from collector.app import SERVER_KWARGS, STATE, create_app, metrics_app
    from collector.ingest.limits import LimitedSite

    app = create_app(config, profiles_builder=config.profiles, writer=writer)
    # at once, in the same step as the plans' "loaded" log line (a worker ignores SIGHUP until here)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_plans, app[STATE].pipeline.plans)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10, keepalive_timeout=config.client_timeout,
                           **SERVER_KWARGS)  # fmt: skip
    runners = [runner]
    await runner.setup()
    try:
        site = LimitedSite(runner, config.host, config.port, config.max_connections, reuse_port=reuse_port or None,
                           backlog=1024)  # fmt: skip
        try:
            await site.start()
        except OSError as exc:  # taken between check_port and here
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(config.host, config.port) from None
            raise
        if config.metrics_address:
            host, _, port = config.metrics_address.rpartition(":")
            private = web.AppRunner(metrics_app(app), handle_signals=False, access_log=None)
            runners.append(private)
            await private.setup()
            await web.TCPSite(private, host.strip("[]") or "127.0.0.1", int(port), reuse_port=reuse_port or None).start()
        if not quiet:
            print(banner(config, site.port, app[STATE].store.where), flush=True)
        # Everything loaded so far lives as long as the process: keep it out of the garbage
        # collector's scans, and collect less often (full collections set the p99; bench/README).
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)
        await until_signalled()
        log.info("shutting down: finishing in-flight requests, closing segments")
    finally:
        for each in reversed(runners):
            await each.cleanup()
    log.info("stopped")


def reload_plans(plans: Plans) -> None:
    """SIGHUP: the tracking plans read again (a bad one logged, the old one kept); the engage
    definitions by the companions that use them (the profile builder, the destinations and
    journeys processes: passed on to them)."""
    from collector.engage.destinations.service import SENDER
    from collector.engage.journeys.service import JOURNEYS
    from collector.profiles.service import BUILDER

    for companion in (BUILDER, SENDER, JOURNEYS):
        companion.pass_on(signal.SIGHUP)
    if not plans.sources:
        log.info("SIGHUP: no source has a tracking plan to reload")
        return
    plans.reload()


def cmd_serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    setup_logging(config.log_format)
    at_start(config)
    check_port(config.host, config.port, reuse_port=config.workers > 1)
    if config.workers > 1:
        from collector.serve.hostwriter import run_writer
        from collector.serve.workers import supervise

        return supervise(config, serve, run_writer if config.store == "file" else None)
    serve(config)
    return 0


def serve(config: Config, *, reuse_port: bool = False, quiet: bool = False, writer: str | None = None) -> None:
    """Serve on a new event loop until SIGINT/SIGTERM (one process; a worker of several, committing
    through the host ``writer`` at that address when there is one)."""
    loop = new_loop()
    try:
        loop.run_until_complete(run_server(config, reuse_port=reuse_port, quiet=quiet, writer=writer))
    finally:
        loop.close()


def add_parser(commands: Any) -> None:
    """Register ``intilery serve``."""
    serve = commands.add_parser("serve", help="run the collector")
    serve_flags(serve)
    serve.set_defaults(run=cmd_serve)
