"""``/v1/destinations``: each destination's state, its deliveries, and replay; the access token.

    GET  /v1/destinations                              each: settings (no secret), counts by state,
                                                       disabled (why), last error; and any problem in the files
    GET  /v1/destinations/{name}/deliveries?state=dead&limit=&next=    a page of deliveries, by id
    POST /v1/destinations/{name}/replay   {"since": "2026-12-08T00:00:00Z"} or {"ids": [...]} or {}
                                          dead and failed ones due again (or those ids); enables it

Errors have the Profile API's shape, codes from ``collector.api.DESTINATION_ERRORS`` and ``PROFILE_ERRORS``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
from aiohttp import web

from collector import answers
from collector import api as routes
from collector.engage import definitions as engage
from collector.engage.destinations import definitions
from collector.engage.destinations.cli import summary
from collector.engage.destinations.sender import Database
from collector.engage.outbox.tables import STATES
from collector.engage.outbox.store import open_outbox
from collector.engage.http import EngageAPI
from collector.errors import BadRequest, NotFound
from collector.ingest import access

MAX_LIMIT, DEFAULT_LIMIT = 100, 20
MAX_BODY = 64 * 1024


class DestinationsAPI(EngageAPI):
    def __init__(self, config) -> None:
        super().__init__(config, open_outbox, definitions.load)
        self.outbox, self.destinations = self.store, self.definitions

    async def known(self, request: web.Request) -> tuple[Database, str]:
        access.check(request.headers.get("Authorization", ""), self.tokens.current())
        return await self.named(request.match_info["name"])

    async def named(self, name: str) -> tuple[Database, str]:
        """The outbox and ``name``, a destination configured or with deliveries (else a 404)."""
        db = await self.outbox()
        if name not in self.destinations()[0] and name not in await db(db.outbox.counts):
            raise NotFound("destination_not_found", f"no destination is named {name!r}")
        return db, name

    async def again(self, name: str, since: float | None = None, ids: list[str] = ()) -> dict:
        """Replay ``name``'s dead and failed deliveries (or those ``ids``) and enable it again."""
        db, name = await self.named(name)
        n = await db(db.outbox.replay, name, since=since, ids=ids)
        enabled = await db(db.outbox.enable, name)
        return {"replayed": n, "enabled_again": enabled}

    async def listing(self) -> dict:
        """``GET /v1/destinations``'s answer: each destination with its settings; the files' problems."""
        found, problems = self.destinations()
        db = await self.outbox()
        rows = await db(summary, db.outbox, found)
        for row in rows:
            if row["name"] in found:
                row["settings"] = definitions.shown(found[row["name"]])
        return {"data": rows, "problems": problems}

    async def list(self, request: web.Request) -> web.Response:
        access.check(request.headers.get("Authorization", ""), self.tokens.current())
        return answers.json(await self.listing())

    async def deliveries(self, request: web.Request) -> web.Response:
        db, name = await self.known(request)
        state = request.query.get("state") or None
        if state is not None and state not in STATES:
            raise BadRequest("invalid_parameter", f"state is one of {', '.join(STATES)}")
        try:
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest("invalid_parameter", f"limit is a whole number from 1 to {MAX_LIMIT}")
        after = request.query.get("next", "")
        found = await db(db.outbox.deliveries, name, state, limit + 1, after)
        more = len(found) > limit
        found = found[:limit]
        return answers.json({"data": found, "cursor": {"url": request.path, "has_more": more,
                                                       "next": found[-1]["id"] if more else ""}})  # fmt: skip

    async def replay(self, request: web.Request) -> web.Response:
        db, name = await self.known(request)
        raw = await request.content.read(MAX_BODY + 1)
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            body = None
        if len(raw) > MAX_BODY or not isinstance(body, dict) or set(body) - {"since", "ids"}:
            raise BadRequest("invalid_replay", "the body is {} or {\"since\": ISO 8601 time, \"ids\": [delivery id, ...]}")
        since = body.get("since")
        if since is not None:
            try:
                when = datetime.fromisoformat(str(since).replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest("invalid_replay", "since is an ISO 8601 time, such as 2026-12-08T02:00:00Z") from None
            since = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
        ids = body.get("ids", [])
        if not isinstance(ids, list) or len(ids) > 1000 or not all(isinstance(i, str) for i in ids):
            raise BadRequest("invalid_replay", "ids is a list of at most 1,000 delivery ids")
        return answers.json(await self.again(name, since, ids))


def mount(app: web.Application, config, metrics=None) -> DestinationsAPI:
    """The routes; and, given the collector's ``Metrics``, the outbox's metrics in its /metrics."""
    api = DestinationsAPI(config)
    if metrics is not None and engage.has_files(config, definitions.FOLDER):
        from collector.engage.destinations.metrics import OutboxMetrics

        metrics.register(OutboxMetrics(config))
    routes.mount(app.router, "destinations", lambda route: answers.handler(getattr(api, route.name)))

    async def closing(app: web.Application):
        yield
        await api.close()

    app.cleanup_ctx.append(closing)
    return api
