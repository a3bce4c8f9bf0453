"""``/v1/journeys``: each journey's counts, and a person's runs; the access token.

    GET /v1/journeys                          each journey (configured, or with runs), per version:
                                              entered, active, waiting per step, exited, converted,
                                              completed; and any problem in the files
    GET /v1/journeys/{key}/runs?profile=user_id:ann    the person's runs: their step and next timer

Errors have the Profile API's shape, codes from ``collector.api.JOURNEY_ERRORS`` and ``PROFILE_ERRORS``.
"""

from __future__ import annotations

from aiohttp import web

from collector import answers
from collector import api as routes
from collector.engage.journeys import definitions
from collector.engage.journeys.reads import person_runs, summary
from collector.engage.journeys.store import open_journeys
from collector.engage.http import EngageAPI
from collector.errors import BadRequest, NotFound
from collector.ingest import access

KINDS = ("user_id", "anonymous_id", "email")


class JourneysAPI(EngageAPI):
    def __init__(self, config) -> None:
        super().__init__(config, open_journeys, definitions.load)
        self.journeys = self.definitions

    async def list(self, request: web.Request) -> web.Response:
        access.check(request.headers.get("Authorization", ""), self.tokens.current())
        return answers.json(await self.listing())

    async def listing(self) -> dict:
        """``GET /v1/journeys``'s answer: each journey's counts; the files' problems."""
        found, problems = self.journeys()
        db = await self.store()
        return {"data": await db(summary, db.outbox, found), "problems": problems}

    async def of_person(self, idents: list[tuple[str, str]]) -> list[dict]:
        """The runs of every journey of the person having any of ``idents`` ``(type, value)``."""
        db = await self.store()
        return await db(person_runs, db.outbox, None, [i for i in idents if i[0] in KINDS], self.journeys()[0])

    async def runs(self, request: web.Request) -> web.Response:
        access.check(request.headers.get("Authorization", ""), self.tokens.current())
        key = request.match_info["key"]
        profile = request.query.get("profile", "")
        kind, _, value = profile.partition(":")
        if kind not in KINDS or not value:
            raise BadRequest("invalid_parameter", "profile is user_id:VALUE, anonymous_id:VALUE or email:VALUE")
        db = await self.store()
        found = await db(person_runs, db.outbox, key, [(kind, value)])
        if not found and key not in self.journeys()[0]:
            known = await db(db.outbox._all, "SELECT 1 FROM journey_runs WHERE journey = ? LIMIT 1", (key,))
            await db(db.outbox.commit)
            if not known:
                raise NotFound("journey_not_found", f"no journey has the key {key!r}")
        return answers.json({"data": found})


def mount(app: web.Application, config) -> JourneysAPI:
    api = JourneysAPI(config)
    routes.mount(app.router, "journeys", lambda route: answers.handler(getattr(api, route.name)))

    async def closing(app: web.Application):
        yield
        await api.close()

    app.cleanup_ctx.append(closing)
    return api
