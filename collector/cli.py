"""The ``intilery`` command: serve, snippet (and the tools built on the store)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from collector import __version__
from collector.config import FSYNC_POLICIES, LOG_FORMATS, STORES, Config, ConfigError, load_config
from collector.logs import setup_logging

log = logging.getLogger("intilery")


def _serve_flags(parser: argparse.ArgumentParser) -> None:
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
            "nats_publish_timeout")  # fmt: skip
    return load_config(args.config, {k: getattr(args, k, None) for k in keys})


def banner(config: Config, port: int) -> str:
    url = f"http://{config.host if ':' not in config.host else '[' + config.host + ']'}:{port}"
    from collector.store.nats import redact

    where = f"{config.nats_stream} on {redact(config.nats_url)}" if config.store == "nats" else f"{config.data_dir}/events"
    lines = [f"intilery {__version__} listening on {url}", f"  store: {config.store} ({where})"]
    if config.dev_source:
        from collector.snippet import snippet

        key = config.sources[0].write_key
        lines += [
            f"  development source 'dev', write key: {key}",
            "  paste this into your pages:",
            "",
            snippet(key, url),
        ]
    return "\n".join(lines)


async def until_signalled() -> None:
    """Returns at the first SIGINT or SIGTERM (Ctrl-C, or an operator's stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_server(config: Config, *, reuse_port: bool = False, quiet: bool = False) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and close the store."""
    from collector.app import SERVER_KWARGS, create_app, metrics_app
    from collector.limits import LimitedSite

    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10, keepalive_timeout=config.client_timeout,
                           **SERVER_KWARGS)  # fmt: skip
    runners = [runner]
    await runner.setup()
    try:
        site = LimitedSite(runner, config.host, config.port, config.max_connections, reuse_port=reuse_port or None,
                           backlog=1024)  # fmt: skip
        await site.start()
        if config.metrics_address:
            host, _, port = config.metrics_address.rpartition(":")
            private = web.AppRunner(metrics_app(app), handle_signals=False, access_log=None)
            runners.append(private)
            await private.setup()
            await web.TCPSite(private, host.strip("[]") or "127.0.0.1", int(port), reuse_port=reuse_port or None).start()
        if not quiet:
            print(banner(config, site.port), flush=True)
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


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.new_event_loop()


def cmd_serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    setup_logging(config.log_format)
    if config.workers > 1:
        from collector.workers import supervise

        return supervise(config)
    loop = new_loop()
    try:
        loop.run_until_complete(run_server(config))
    finally:
        loop.close()
    return 0


def cmd_snippet(args: argparse.Namespace) -> int:
    from collector.snippet import snippet

    print(snippet(args.write_key, args.host.rstrip("/"), consent=args.consent == "required"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from collector.demo import SITE_DIR, run_demo

    config = config_from_args(args)
    setup_logging(config.log_format)
    site_dir = Path(args.site_dir) if args.site_dir else SITE_DIR
    if not (site_dir / "index.html").is_file():
        print(f"intilery: no demo site at {site_dir} (run from a clone of the repository, or pass --site-dir)")
        return 2
    loop = new_loop()
    try:
        loop.run_until_complete(run_demo(config, args.site_port, site_dir))
    finally:
        loop.close()
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from collector.tail import follow

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(f"intilery: {data_dir} does not exist yet; waiting for events", file=sys.stderr)
    try:
        follow(data_dir, as_json=args.json, from_start=args.from_start)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intilery", description="Intilery tag + collector")
    parser.add_argument("--version", action="version", version=f"intilery {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the collector")
    _serve_flags(serve)
    serve.set_defaults(run=cmd_serve)

    demo = commands.add_parser("demo", help="run the collector and the demo shop on two origins")
    _serve_flags(demo)
    demo.add_argument("--site-port", type=int, default=8000, help="port of the demo shop (default 8000)")
    demo.add_argument("--site-dir", help="the demo site's directory (default: demo_site/ of the clone)")
    demo.set_defaults(run=cmd_demo)

    tail = commands.add_parser("tail", help="follow the event store, one line per event")
    tail.add_argument("--data-dir", default=os.environ.get("INTILERY_DATA_DIR", "data"))
    tail.add_argument("--json", action="store_true", help="print the stored JSON lines as they are")
    tail.add_argument("--from-start", action="store_true", help="print what is already stored first")
    tail.set_defaults(run=cmd_tail)

    snip = commands.add_parser("snippet", help="print the snippet to paste into a site's pages")
    snip.add_argument("--write-key", required=True)
    snip.add_argument("--host", default="http://127.0.0.1:8080", help="the collector's public URL")
    snip.add_argument("--consent", choices=["required"], help="send nothing until the page calls intilery.optIn()")
    snip.set_defaults(run=cmd_snippet)

    from collector.archive import add_parser as add_archive_parser

    add_archive_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"intilery: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
