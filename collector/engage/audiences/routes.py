"""The audiences' HTTP API, with the access token (DESIGN.md, "Using the data")::

    GET /v1/audiences                       {"data": [{"key", "name", "size", "updated_at"}, ...]}
    GET /v1/audiences/{key}/members         ?limit= (1-100, default 10) &next=: a page of
                                            {"profile_id", "user_id", "anonymous_id", "entered_at"}

and, in the Profile API's traits (``profiles/api.py`` asks ``trait_classes``): the person's computed
traits among their traits, their audiences as ``"<key>": true`` (as Segment's Engage makes an
audience a trait of its key), ``?class=audience`` only the audiences, ``?class=computed_trait`` only
the computed traits.

The names and keys are the definitions' (``definitions.load``), read at start (a bad file is a
configuration error there) and again on SIGHUP (``InForce.reload``: a bad file is logged and the
definitions in force stay). The sizes and members are the profile database's (``reads.py``), read
through the Profile API's store (the same token, the same 503 while it is built again). An
audience whose definition is gone is not listed, and its members are a 404, whatever rows remain.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from collector import answers
from collector import api as routes
from collector.config import ConfigError
from collector.engage.audiences import reads
from collector.engage.definitions import DefinitionError, Definitions, folder, load
from collector.errors import NotFound
from collector.ingest import access
from collector.profiles import search

log = logging.getLogger("intilery.engage")
PERIODS = tuple(reads.PERIODS)  # the console's series: a point a day, or an hour


class InForce:
    """The definitions in force: loaded at start, read again by ``reload`` (SIGHUP), the last good kept."""

    def __init__(self, config, definitions: Definitions | None = None) -> None:
        self.config = config
        if definitions is None:
            try:
                definitions = load(folder(config))
            except DefinitionError as exc:
                raise ConfigError(f"the engage definitions in {folder(config)} have mistakes:\n{exc}") from None
        self.definitions = definitions

    def reload(self) -> bool:
        """Read the definitions again; on a mistake log it and keep those in force. True when reloaded."""
        try:
            fresh = load(folder(self.config))
        except DefinitionError as exc:
            log.error("engage definitions not reloaded, the previous ones stay in force:\n%s", exc)
            return False
        changed = fresh.digest != self.definitions.digest
        self.definitions = fresh  # one assignment: a request sees the old definitions or the new ones
        log.info("engage definitions reloaded", extra={"audiences": len(fresh.audiences), "traits": len(fresh.traits),
                                                        "changed": changed})  # fmt: skip
        return True

    def keys(self) -> list[str]:
        """The audiences' keys, in name order (then key)."""
        audiences = self.definitions.audiences
        return sorted(audiences, key=lambda k: (audiences[k].name.lower(), k))

    def audience(self, key: str):
        found = self.definitions.audiences.get(key)
        if found is None:
            known = ", ".join(sorted(self.definitions.audiences)) or "none is defined"
            raise NotFound("audience_not_found", f"no audience has the key {key!r} (audiences: {known})")
        return found


def listing(in_force: InForce, store) -> list[dict]:
    """Every audience defined: key, name, size now, last change (for the API, the CLI and the console)."""
    keys = in_force.keys()
    if not keys:
        return []
    found = reads.summaries(store, keys)
    audiences = in_force.definitions.audiences
    return [{"key": key, "name": audiences[key].name, "size": found[key].size, "updated_at": reads.iso(found[key].updated_at)}
            for key in keys]  # fmt: skip


def trait_classes(in_force: InForce) -> dict:
    """The Profile API's trait classes this package answers: class name -> ``(store, profile id) -> traits``."""

    def audience(store, pid: str) -> dict:
        defined = in_force.definitions.audiences
        if not defined:  # nothing defined: no query (a traits read costs what it did)
            return {}
        return {key: True for key in reads.of_person(store, pid) if key in defined}

    def computed_trait(store, pid: str) -> dict:
        defined = in_force.definitions.traits
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
        return answers.json({"data": listing(self.in_force, self.profiles.db())})

    async def members(self, request: web.Request) -> web.Response:
        self.authorize(request)
        audience = self.in_force.audience(request.match_info["key"])
        limit, after = search.limit(request.query.get("limit")), search.cursor(request.query.get("next"))
        page, more = reads.members(self.profiles.db(), audience.key, limit, after)
        next_cursor = search.encode(page[-1]["profile_id"]) if more and page else ""
        return answers.json({"data": page, "cursor": {"url": request.path, "has_more": more, "next": next_cursor}})


def person(in_force: InForce, store, pid: str) -> dict:
    """One person's audiences (key, name, entered_at) and computed traits, for the console's profile page."""
    defined = in_force.definitions.audiences
    mine = reads.of_person(store, pid) if defined else {}
    return {
        "audiences": [{"key": key, "name": defined[key].name, "entered_at": reads.iso(entered)}
                      for key, entered in mine.items() if key in defined],  # fmt: skip
        "engage_traits": trait_classes(in_force)["computed_trait"](store, pid),
    }


def sizes(in_force: InForce, store, period: str, now: float | None = None) -> dict:
    """The console's audiences page: each audience with its size over the last 30 days (or hours)."""
    keys = in_force.keys()
    if not keys:
        return {"period": period, "at": [], "sizes": {}, "audiences": []}
    series = reads.sizes_over_time(store, keys, time.time() if now is None else now, period)
    return {**series, "audiences": listing(in_force, store)}


AUDIENCES = web.AppKey("audiences", InForce)


def mount(app: web.Application, config, profiles) -> InForce:
    """Route the audiences' API on ``app`` (``profiles``: the app's ``profiles.api.ProfileAPI``), give the
    Profile API its trait classes; the definitions in force are returned, and kept as ``app[AUDIENCES]``."""
    in_force = app[AUDIENCES] = InForce(config)
    handlers = AudiencesAPI(config, profiles, in_force)
    profiles.trait_classes.update(trait_classes(in_force))
    routes.mount(app.router, "audiences", lambda route: answers.handler(getattr(handlers, route.name)))
    return in_force
