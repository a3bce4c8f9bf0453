"""``intilery demo``: the collector and the demo shop, on two origins, in one command.

The shop's pages carry the snippet as a site owner pastes it, pointing at
``http://127.0.0.1:8080`` with the demo write key; when the collector runs elsewhere the
site server rewrites that address in the pages it serves.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from collector.config import Config, Source
from collector.logs import setup_logging
from collector.serve.runtime import new_loop, until_signalled
from collector.ingest.access import access_token
from collector.engage.definitions import at_start
from collector.serve.serving import PortInUse, check_port, config_from_args, config_lines, profiles_line, serve_flags

log = logging.getLogger("intilery.demo")

DEMO_WRITE_KEY = "wk_demo_shop"
PASTED_HOST = "http://127.0.0.1:8080"
SITE_DIR = Path(__file__).resolve().parents[2] / "demo_site"
DEMO_EMAIL = "ann@example.com"  # the shop's sign-in form suggests it (demo_site/signin.html)


def demo_user_id(email: str = DEMO_EMAIL) -> str:
    """The userId the shop gives a customer who signs in with ``email`` (``shop.signIn`` in demo_site/assets/shop.js)."""
    return "u_" + re.sub(r"[^a-z0-9]+", "_", email.lower())


def demo_config(config: Config, site_url: str) -> Config:
    """The demo source (its key is in the pages) allowed from the site's origin only, beside the
    configured sources, or the development source ``dev`` (its key in ``data/dev-write-key``, the
    README's HTTP examples use it while the demo runs)."""
    demo = Source(name="demo", write_key=DEMO_WRITE_KEY, allowed_origins=(site_url,))
    return replace(config, sources=(*config.sources, demo), dev_source=False)


def site_app(site_dir: Path, collector_url: str) -> web.Application:
    """Static files; HTML pages get the collector address rewritten; /app/* is the single-page section."""

    async def page(request: web.Request) -> web.StreamResponse:
        rel = request.match_info.get("path", "") or "index.html"
        if rel.startswith("app/") or rel == "app":
            rel = "app/index.html"
        path = (site_dir / rel).resolve()
        if site_dir not in path.parents or not path.is_file():
            path = site_dir / "404.html"
            status = 404
        else:
            status = 200
        if path.suffix != ".html":
            return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
        html = path.read_text(encoding="utf-8").replace(PASTED_HOST, collector_url)
        return web.Response(text=html, content_type="text/html", status=status, headers={"Cache-Control": "no-cache"})

    app = web.Application()
    app.router.add_get("/{path:.*}", page)
    return app


def token_hint(config: Config) -> str:
    """How to read the access token (the demo's own data directory: printing its path, not the token)."""
    _, path = access_token(config)
    return f"cat {path}" if path else "access_token in the configuration"


def command() -> str:
    """How to run ``intilery`` from here: its name when it is on PATH, else its path (e.g. ``.venv/bin/intilery``)."""
    script = Path(sys.executable).parent / "intilery"
    if not script.exists() or shutil.which("intilery") == str(script):
        return "intilery"
    return os.path.relpath(script) if script.is_relative_to(Path.cwd()) else str(script)


async def run_demo(config: Config, site_port: int, site_dir: Path = SITE_DIR) -> None:
    from collector.app import SERVER_KWARGS, create_app

    site_url = f"http://{config.host}:{site_port}"
    collector_url = f"http://{config.host}:{config.port}"
    config = demo_config(config, site_url)
    runners = [
        web.AppRunner(create_app(config, profiles_builder=config.profiles), handle_signals=False, shutdown_timeout=5,
                      **SERVER_KWARGS),
        web.AppRunner(site_app(site_dir.resolve(), collector_url), handle_signals=False, access_log=None),
    ]
    try:
        for runner, port, flag in zip(runners, (config.port, site_port), ("--port", "--site-port")):
            await runner.setup()
            try:
                await web.TCPSite(runner, config.host, port).start()
            except OSError as exc:  # taken since cmd_demo's check
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(config.host, port, flag) from None
                raise
        profiles = f"{collector_url}/v1/spaces/{config.profiles_space}/collections/users/profiles"
        dev = any(s.name == "dev" for s in config.sources)
        _, token_path = access_token(config)
        token = f'"$(cat {token_path}):"' if token_path else '"$TOKEN:"'
        print(
            f"intilery demo\n"
            f"  demo shop:  {site_url}/   (open this in a browser)\n"
            f"  collector:  {collector_url}   (write key {DEMO_WRITE_KEY}, origin {site_url} allowed)\n"
            + (f"              from a terminal, the dev source's key: cat {config.data_dir}/dev-write-key\n" if dev else "")
            + "\n".join(config_lines(config)) + "\n"
            f"  events:     {config.data_dir.resolve()}/events/dt=*/hr=*/part-*.ndjson\n"
            f"  console:    {collector_url}/console   (live events, dashboard, profiles, privacy)\n"
            f"              sign in with the access token: {token_hint(config)}\n"
            f"  watch them: {command()} tail --data-dir {config.data_dir}\n"
            f"{profiles_line(config)}\n"
            f"  customer:   sign in to the shop as {DEMO_EMAIL}: user id {demo_user_id()}\n"
            f"  her traits: curl -u {token} {profiles}/user_id:{demo_user_id()}/traits\n"
            f"  find one:   curl -u {token} '{profiles}?q=ann'   ({command()} profile search ann)\n"
            f"  Ctrl-C stops both.",
            flush=True,
        )
        await until_signalled()
        log.info("stopping the demo")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def add_parser(commands: Any) -> None:
    """Register ``intilery demo``."""
    demo = commands.add_parser("demo", help="run the collector and the demo shop on two origins")
    serve_flags(demo)
    demo.add_argument("--site-port", type=int, default=8000, help="port of the demo shop (default 8000)")
    demo.add_argument("--site-dir", help="the demo site's directory (default: demo_site/ of the clone)")
    demo.set_defaults(run=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    setup_logging(config.log_format)
    site_dir = Path(args.site_dir) if args.site_dir else SITE_DIR
    if not (site_dir / "index.html").is_file():
        print(f"intilery: no demo site at {site_dir} (run from a clone of the repository, or pass --site-dir)",
              file=sys.stderr)
        return 2
    if config.engage_dir is None and not config.config_file:  # the shop's audiences and computed traits
        config = replace(config, engage_dir=site_dir / "engage")
    at_start(config)
    check_port(config.host, config.port)
    check_port(config.host, args.site_port, "--site-port")
    loop = new_loop()
    try:
        loop.run_until_complete(run_demo(config, args.site_port, site_dir))
    finally:
        loop.close()
    return 0
