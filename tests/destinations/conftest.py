"""Destinations fixtures: real HTTP receivers on 127.0.0.1 that verify every signature with the
``standardwebhooks`` package (an independent implementation of the spec, pinned in the test extra),
definitions written as files, and a log written as segments."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from collector.config import Config

_ids = itertools.count()
PARTITION = "dt=2026-12-08/hr=02"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()


def ev(kind: str = "track", **fields) -> dict:
    event = {"type": kind, "timestamp": "2026-12-08T02:00:00.000Z", "receivedAt": "2026-12-08T02:00:00.000Z",
             "messageId": fields.pop("messageId", f"m-{next(_ids)}"), "source": "web", "userId": "u1"}  # fmt: skip
    if kind == "track":
        event["event"] = fields.pop("event", "Order Completed")
    event.update(fields)
    return event


class Log:
    """The events/ directory of a data directory, written a segment per ``write``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.segments = data_dir, 0

    def write(self, events: list[dict]) -> None:
        directory = self.data_dir / "events" / PARTITION
        directory.mkdir(parents=True, exist_ok=True)
        self.segments += 1
        path = directory / f"part-test_0-{self.segments:06d}.ndjson"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        tmp.rename(path)


@dataclass
class Received:
    headers: dict
    body: bytes
    at: float
    verified: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: ``answer(request_number, received)`` gives (status, headers, delay) or None (200)."""

    secret: str = SECRET
    answer: Callable | None = None
    got: list[Received] = field(default_factory=list)
    url: str = ""
    hold: asyncio.Event | None = None  # set: requests are answered (until then each waits)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        received = Received(headers, body, time.time(), verified)
        self.got.append(received)
        said = self.answer(len(self.got), received) if self.answer else None
        status, extra, delay = said or (200, {}, 0)
        if delay:
            await asyncio.sleep(delay)
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=status, headers=extra, text="ok" if status < 300 else f"no: {status}")

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.got]

    def events(self) -> list[dict]:
        """Every event received (batches opened), in order."""
        found = []
        for r in self.got:
            body = r.json
            found.extend(body["data"]["batch"] if body["type"] == "batch" else [body["data"]])
        return found


@pytest.fixture
async def receivers():
    """``await make(answer=...)``: a receiver on a free port of 127.0.0.1 (stopped at the end)."""
    runners = []

    async def make(**kw) -> Receiver:
        receiver = Receiver(**kw)
        app = web.Application()
        app.router.add_post("/{tail:.*}", receiver.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/hook"
        runners.append(runner)
        return receiver

    yield make
    for runner in runners:
        await runner.cleanup()


def write_destination(engage: Path, name: str, **settings) -> Path:
    """``engage/destinations/<name>.yaml`` (JSON is YAML)."""
    settings.setdefault("secret", SECRET)
    settings.setdefault("allow_private_network", True)
    folder = engage / "destinations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(settings))
    return path


@pytest.fixture
def setup(tmp_path):
    """A config whose data and engage folders are in tmp_path, and its log."""
    config = Config(data_dir=tmp_path / "data", engage_dir=tmp_path / "engage")
    return config, Log(config.data_dir)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for the module (tests/profiles/pg.py)."""
    from tests.profiles.pg import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()
