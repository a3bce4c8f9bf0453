"""The Profile API: Segment's paths, so its clients work unchanged.

    GET /v1/spaces/{space}/collections/users/profiles/{type}:{value}/traits        ?include=a,b  ?class=
    GET .../events          the person's events, newest first, from the log (?limit ≤ 100, ?next)
    GET .../external_ids    every identifier: type, first and last seen, source
    GET .../metadata        profile id, created, updated, profiles merged into it, refused links
    GET /v1/spaces/{space}/collections/users/profiles?q=grace   finding a person (search.py), paged

Authenticated with the access token (``collector.ingest.access``), never with a write key. Errors
have the ingest API's shape, ``{"success": false, "code", "message"}``, codes from
``collector.api.PROFILE_ERRORS``. Events are read from the log store through its reader, at
the segment offsets the builder indexed (``events`` table), or the stream sequences on the
NATS store: a page reads only its own events.

The traits answer is the person's own traits and the builder's computed ones, then those of each
trait class another package gives (``trait_classes``: the engage package's ``computed_trait`` and
``audience``, Segment's ``?class=`` names), so this package imports nothing of theirs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections import defaultdict
from pathlib import Path
from typing import AsyncIterator, Callable

import orjson
from aiohttp import web

from collector import answers
from collector.ingest import access
from collector import api as routes
from collector.errors import BadRequest, NotFound, Unavailable
from collector.log.layout import EVENTS
from collector.log.reader import Reader
from collector.profiles import search, views
from collector.profiles.rules import PROFILE_FORM, parse_profile

log = logging.getLogger("intilery.profiles.api")



class ProfileAPI:
    """What the handlers share: the store (read side), the log, the token, the space."""

    def __init__(self, config, store_factory) -> None:
        self.config, self.store_factory = config, store_factory
        self.tokens = access.Token(config)
        self.store = None
        # ?class= name -> (store, profile id) -> traits; mounted by the engage package (audiences/routes.py)
        self.trait_classes: dict[str, Callable[[object, str], dict]] = {}
        self.stream = config.store == "nats"
        if self.stream:
            from collector.log.stream_reader import StreamReader

            self.reader = StreamReader(config)
        else:
            self.reader = Reader(Path(config.data_dir) / EVENTS)

    @property
    def token(self) -> str:
        return self.tokens.current()

    def db(self):
        if self.store is not None and self.store.outdated:  # made anew by the builder since?
            self.close_store()
        if self.store is None:
            self.store = self.store_factory()
        if self.store.outdated:
            raise Unavailable("profiles_unavailable", "the profile database is being built again; retry shortly")
        return self.store

    def resolve(self, request: web.Request) -> str:
        """Authenticate, check the space, find the profile of the path's ``{type}:{value}``."""
        access.check(request.headers.get("Authorization", ""), self.token)
        if request.match_info["space"] != self.config.profiles_space:
            raise NotFound("unknown_space", "no such space")
        return self.find(request.match_info["profile"])

    def find(self, profile: str) -> str:
        """The profile id of ``{type}:{value}`` (``BadRequest``, ``NotFound`` when there is none)."""
        parsed = parse_profile(profile)
        if parsed is None:
            raise BadRequest("invalid_profile_id", "the profile is " + PROFILE_FORM)
        pid = self.db().find(*parsed)
        if pid is None:
            raise NotFound("profile_not_found", "no profile holds that identifier")
        return pid

    def find_people(self, query: str, limit: str | None = None, after: str | None = None) -> dict:
        """A page of the people ``query`` matches (``search.py``), with the cursor of the next."""
        parsed = search.parse(query, tuple(self.config.identifier_traits))
        found, next_cursor = search.search(self.db(), parsed, search.limit(limit), search.cursor(after))
        return {"data": found, "cursor": {"has_more": bool(next_cursor), "next": next_cursor}}

    async def profiles(self, request: web.Request) -> web.Response:
        """``GET .../profiles?q=`` (no ``q``: everyone), ``limit``, ``next``."""
        access.check(request.headers.get("Authorization", ""), self.token)
        if request.match_info["space"] != self.config.profiles_space:
            raise NotFound("unknown_space", "no such space")
        page = self.find_people(request.query.get("q", ""), request.query.get("limit"), request.query.get("next"))
        page["cursor"]["url"] = request.path
        return answers.json(page)

    async def traits(self, request: web.Request) -> web.Response:
        pid = self.resolve(request)
        wanted = request.query.get("class")
        if wanted is not None:
            if wanted not in self.trait_classes:
                known = " or ".join(sorted(self.trait_classes)) or "not available (nothing defines a class)"
                raise BadRequest("invalid_parameter", f"class is {known}")
            traits = self.trait_classes[wanted](self.db(), pid)
        else:
            traits = views.traits(self.db(), pid) or {}
            for of_class in self.trait_classes.values():
                traits.update(of_class(self.db(), pid))
        include = request.query.get("include")
        if include is not None:
            names = [n for n in (s.strip() for s in include.split(",")) if n]
            if not names:
                raise BadRequest("invalid_parameter", "include names at least one trait")
            traits = {k: traits[k] for k in names if k in traits}
        return answers.json({"traits": traits, "cursor": {"url": request.path, "has_more": False, "next": ""}})

    async def events(self, request: web.Request) -> web.Response:
        pid = self.resolve(request)
        data, next_cursor = await self.events_page(pid, search.limit(request.query.get("limit")), _cursor(request.query.get("next")))
        return answers.json({"data": data, "cursor": {"url": request.path, "has_more": bool(next_cursor), "next": next_cursor}})

    async def events_page(self, pid: str, limit: int, before: str | None = None) -> tuple[list[dict], str]:
        """A page of the profile's events, newest first, read from the log; and the next page's cursor ("" at the end)."""
        rows = self.db().events(pid, limit + 1, before)
        more, rows = len(rows) > limit, rows[:limit]
        by_segment: dict[str, list[int]] = defaultdict(list)
        for _, _, segment, position in rows:
            by_segment[segment].append(position)
        lines = {}
        if not self.stream:  # gzip seeks: decompressions of closed segments, off the event loop
            lines = await asyncio.to_thread(self._lines_at, by_segment)
        for segment, positions in by_segment.items() if self.stream else ():
            try:
                lines[segment] = await self.reader.lines_at(segment, positions)
            except Exception:  # the stream cannot be read now (servers down, a timeout)
                log.warning("the Profile API could not read events from the NATS stream", exc_info=True)
                raise Unavailable("profiles_unavailable", "the log cannot be read now; retry shortly") from None
        data = []
        for _, message_id, segment, position in rows:
            record = lines[segment].get(position)
            if record is not None and record.event.get("messageId") == message_id:
                data.append(record.event)  # a segment rewritten since (an erasure) no longer has it there
        return data, _encode(rows[-1][0]) if more and rows else ""

    def _lines_at(self, by_segment: dict[str, list[int]]) -> dict[str, dict]:
        return {segment: self.reader.lines_at(segment, positions) for segment, positions in by_segment.items()}

    async def everything(self, profile: str, limit: str | None = None) -> dict:
        """One profile whole, for the console: identifiers, traits, computed traits, metadata, latest events."""
        pid = self.find(profile)
        computed = views.computed_traits(self.db(), pid) or {}
        traits = views.traits(self.db(), pid) or {}
        events, _ = await self.events_page(pid, search.limit(limit))
        return {
            "profile_id": pid,
            "external_ids": views.external_ids(self.db(), pid) or [],
            "traits": {k: v for k, v in traits.items() if k not in computed},
            "computed_traits": computed,
            "metadata": views.metadata(self.db(), pid),
            "events": events,
        }

    async def external_ids(self, request: web.Request) -> web.Response:
        pid = self.resolve(request)
        return answers.json({"data": views.external_ids(self.db(), pid) or [], "cursor": {"url": request.path, "has_more": False, "next": ""}})

    async def metadata(self, request: web.Request) -> web.Response:
        pid = self.resolve(request)
        return answers.json({"metadata": views.metadata(self.db(), pid)})

    def close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    async def close(self) -> None:
        self.close_store()
        if self.stream:
            await self.reader.close()


def _encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _cursor(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, ValueError):
        key = ""
    if "|" not in key:
        raise BadRequest("invalid_parameter", "next is a cursor from a previous page")
    return key


PROFILE_API = web.AppKey("profile_api", ProfileAPI)


def mount(app: web.Application, config, store_factory) -> ProfileAPI:
    """Route the Profile API on ``app``; the store is opened at the first request, closed with the app."""
    api = app[PROFILE_API] = ProfileAPI(config, store_factory)
    routes.mount(app.router, "profiles", lambda route: answers.handler(getattr(api, route.name)))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await api.close()

    app.cleanup_ctx.append(lifecycle)
    return api
