"""The audiences' HTTP API, with the access token (DESIGN.md, "Using the data")::

    GET /v1/audiences                       {"data": [{"key", "name", "size", "updated_at"}, ...]}
    GET /v1/audiences/{key}/members         ?limit= (1-100, default 10) &next=: a page of
                                            {"profile_id", "user_id", "anonymous_id", "entered_at"}

and, in the Profile API's traits (``profiles/api.py`` asks ``trait_classes``): the person's computed
traits among their traits, their audiences as ``"<key>": true`` (as Segment's Engage makes an
audience a trait of its key), ``?class=audience`` only the audiences, ``?class=computed_trait`` only
the computed traits.

The audiences listed are the **definitions in force**: those the profile builder keeps in the profile
database (``engage_state`` ``in_force``, ``backfill.py``), not the folder's files as they are now.
So every reader on every host sees the definitions the memberships were computed for: a definition
added or changed shows once its backfill is complete (never as an empty or half audience), and a
file with a mistake changes nothing (the builder reads the folder at start, every 2 s and on SIGHUP,
and keeps the definitions in force on a mistake). They are parsed again only when their text
changes (``InForce``). The sizes and members are the profile database's (``reads.py``), read through
the Profile API's store (the same token, the same 503 while it is built again). An audience no
longer in force is not listed, and its members are a 404.
"""

from __future__ import annotations

import time

from aiohttp import web

from collector import answers
from collector import api as routes
from collector.engage.audiences import reads
from collector.engage.audiences.backfill import parse_saved, saved
from collector.engage.definitions import Definitions
from collector.errors import NotFound
from collector.ingest import access
from collector.profiles import search

PERIODS = tuple(reads.PERIODS)  # the console's series: a point a day, or an hour


class InForce:
    """The definitions in force, as the profile database keeps them; parsed again when their text changes."""

    def __init__(self) -> None:
        self.texts: dict | None = None
        self.definitions = Definitions()

    def of(self, store) -> Definitions:
        texts = saved(store, "in_force") or {}
        store.commit()  # a read opens a transaction on PostgreSQL: end it
        if texts != self.texts:
            self.definitions, self.texts = parse_saved(texts), texts  # one assignment each: a request sees old or new
        return self.definitions

    def backfilling(self, store) -> bool:
        """Whether new definitions are being counted over the log (they take over when done)."""
        found = saved(store, "backfill") is not None
        store.commit()
        return found


def keys(definitions: Definitions) -> list[str]:
    """The audiences' keys, in name order (then key)."""
    audiences = definitions.audiences
    return sorted(audiences, key=lambda k: (audiences[k].name.lower(), k))


def audience(definitions: Definitions, key: str):
    found = definitions.audiences.get(key)
    if found is None:
        known = ", ".join(sorted(definitions.audiences)) or "none is in force"
        raise NotFound("audience_not_found", f"no audience has the key {key!r} (audiences: {known})")
    return found


def listing(definitions: Definitions, store) -> list[dict]:
    """Every audience in force: key, name, size now, last change (for the API, the CLI and the console)."""
    ordered = keys(definitions)
    if not ordered:
        return []
    found = reads.summaries(store, ordered)
    audiences = definitions.audiences
    return [{"key": key, "name": audiences[key].name, "size": found[key].size, "updated_at": reads.iso(found[key].updated_at)}
            for key in ordered]  # fmt: skip


def trait_classes(in_force: InForce) -> dict:
    """The Profile API's trait classes this package answers: class name -> ``(store, profile id) -> traits``."""

    def audience(store, pid: str) -> dict:
        defined = in_force.of(store).audiences
        if not defined:  # nothing in force: no more queries
            return {}
        return {key: True for key in reads.of_person(store, pid) if key in defined}

    def computed_trait(store, pid: str) -> dict:
        defined = in_force.of(store).traits
        if not defined:
            return {}
        return {name: value for name, value in reads.computed_traits(store, pid).items() if name in defined}

    return {"computed_trait": computed_trait, "audience": audience}


class AudiencesAPI:
    """The two routes, on the Profile API's store and token."""

    def __init__(self, config, profiles, in_force: InForce) -> None:
        self.config, self.profiles, self.in_force = config, profiles, in_force
        self.tokens = access.Token(config)

    def authorize(self, request: web.Request) -> None:
        access.check(request.headers.get("Authorization", ""), self.tokens.current())

    async def list(self, request: web.Request) -> web.Response:
        self.authorize(request)
        store = self.profiles.db()
        return answers.json({"data": listing(self.in_force.of(store), store)})

    async def members(self, request: web.Request) -> web.Response:
        self.authorize(request)
        limit, after = search.limit(request.query.get("limit")), search.cursor(request.query.get("next"))
        store = self.profiles.db()
        found = audience(self.in_force.of(store), request.match_info["key"])
        page, more = reads.members(store, found.key, limit, after)
        next_cursor = search.encode(page[-1]["profile_id"]) if more and page else ""
        return answers.json({"data": page, "cursor": {"url": request.path, "has_more": more, "next": next_cursor}})


def person(in_force: InForce, store, pid: str) -> dict:
    """One person's audiences (key, name, entered_at) and computed traits, for the console's profile page."""
    defined = in_force.of(store).audiences
    mine = reads.of_person(store, pid) if defined else {}
    return {
        "audiences": [{"key": key, "name": defined[key].name, "entered_at": reads.iso(entered)}
                      for key, entered in mine.items() if key in defined],  # fmt: skip
        "engage_traits": trait_classes(in_force)["computed_trait"](store, pid),
    }


def sizes(in_force: InForce, store, period: str, now: float | None = None) -> dict:
    """The console's audiences page: each audience in force with its size over the last 30 days (or
    hours); ``backfilling`` while new definitions are being counted over the log."""
    definitions = in_force.of(store)
    backfilling = in_force.backfilling(store)
    if not definitions.audiences:
        return {"period": period, "at": [], "sizes": {}, "audiences": [], "backfilling": backfilling}
    series = reads.sizes_over_time(store, keys(definitions), time.time() if now is None else now, period)
    return {**series, "audiences": listing(definitions, store), "backfilling": backfilling}


AUDIENCES = web.AppKey("audiences", InForce)


def mount(app: web.Application, config, profiles) -> InForce:
    """Route the audiences' API on ``app`` (``profiles``: the app's ``profiles.api.ProfileAPI``), give the
    Profile API its trait classes; the definitions in force are returned, and kept as ``app[AUDIENCES]``."""
    in_force = app[AUDIENCES] = InForce()
    handlers = AudiencesAPI(config, profiles, in_force)
    profiles.trait_classes.update(trait_classes(in_force))
    routes.mount(app.router, "audiences", lambda route: answers.handler(getattr(handlers, route.name)))
    return in_force
