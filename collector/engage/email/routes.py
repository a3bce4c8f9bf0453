"""One-click unsubscribe (RFC 8058), ``/u/{token}``: no access token, no cookie, no redirect::

    POST /u/TOKEN   (the mailbox's one click: body List-Unsubscribe=One-Click, or a person's button)
                    unsubscribes at once and answers 200 with a short page
    GET  /u/TOKEN   a page with one button that POSTs the same (a link scanner's GET changes nothing)

Unsubscribing, in one transaction of the profile database: a row in ``email_unsubscribed`` (the
email lane skips the person's marketing mail from that moment) and an ``identify`` queued for the
log (``engage_announce``, appended once by the collector's announcer) setting the trait
``email_consent`` to false, so the profile, audiences and every host see it. Its messageId is
derived from the person and the list: clicking twice appends one.

No oracle: a valid and an invalid token get the same status, headers and page layout (only the
sentence says whether it worked), in the same time (the HMAC is always checked). Each client
address may ask ``RATE`` times a minute (then 429).
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import time
from collections import OrderedDict

import orjson
from aiohttp import web

from collector import answers
from collector import api as routes
from collector.engage import definitions as engage
from collector.engage.definitions import DefinitionError
from collector.engage.email import campaigns, templates
from collector.errors import BadRequest, NotFound
from collector.ingest import access
from collector.profiles.database import open_store
from collector.engage.audiences import tables as audience_tables
from collector.engage.audiences.reads import latest_ids
from collector.engage.destinations.sender import Database
from collector.engage.email import store, tokens
from collector.engage.outbox.store import open_outbox
from collector.log.layout import iso_ms
from collector.profiles.database import db_target

CONSENT_TRAIT = "email_consent"
RATE = 30  # requests a minute per client address
CLIENTS = 10_000  # addresses remembered for the rate limit

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>Unsubscribe</title></head><body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<p>{sentence}</p>{form}</body></html>"""
FORM = """<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>"""


def unsubscribe(db, pid: str, topic: str, now: float) -> bool:
    """The row and the identify, in one transaction; True when it was new."""
    db.begin()
    try:
        was = not db._all("SELECT 1 FROM email_unsubscribed WHERE profile_id = ? AND list = ?", (pid, topic))
        if was:
            db._run("INSERT INTO email_unsubscribed (profile_id, list, at) VALUES (?, ?, ?)", (pid, topic, now))
            ids = latest_ids(db, [pid])
            mid = "itl-unsub-" + hashlib.blake2b(f"{pid}\0{topic}".encode(), digest_size=12).hexdigest()
            message = {"type": "identify", "timestamp": iso_ms(now), "traits": {CONSENT_TRAIT: False},
                       "context": {"intilery": {"unsubscribed": topic}}}  # fmt: skip
            for kind, field in (("user_id", "userId"), ("anonymous_id", "anonymousId")):
                if ids.get((pid, kind)):
                    message[field] = ids[(pid, kind)]
            if "userId" in message or "anonymousId" in message:
                db._run("INSERT INTO engage_announce (id, seq, profile_id, message) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING", (mid, time.time_ns(), pid, orjson.dumps(message).decode()))  # fmt: skip
        db.commit()
        return was
    except BaseException:
        db.rollback()
        raise


def prepare(db) -> None:
    store.create(db)
    db.begin()
    for statement in audience_tables.SCHEMA:
        if "engage_announce" in statement:
            db._run(statement.replace("{clustered}", ""))
    db.commit()


class UnsubscribeAPI:
    def __init__(self, config) -> None:
        self.config = config
        self.key = tokens.secret(config.email, config.data_dir)
        self.db: Database | None = None
        self.seen: OrderedDict[str, list[float]] = OrderedDict()

    async def store(self) -> Database:
        if self.db is None:
            db = Database(None)
            db.outbox = await db(open_outbox, db_target(self.config))
            await db(prepare, db.outbox)
            self.db = db
        return self.db

    async def close(self) -> None:
        if self.db is not None:
            await self.db(self.db.outbox.close)
            self.db.close()

    def limited(self, request: web.Request) -> bool:
        client, now = request.remote or "", time.monotonic()
        recent = [t for t in self.seen.pop(client, []) if now - t < 60.0]
        recent.append(now)
        self.seen[client] = recent
        while len(self.seen) > CLIENTS:
            self.seen.popitem(last=False)
        return len(recent) > RATE

    @staticmethod
    def page(sentence: str, form: bool = False, status: int = 200) -> web.Response:
        return web.Response(status=status, text=PAGE.format(sentence=html.escape(sentence), form=FORM if form else ""),
                            content_type="text/html", headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})  # fmt: skip

    async def show(self, request: web.Request) -> web.Response:
        if self.limited(request):
            return self.page("Too many requests: try again in a minute.", status=429)
        tokens.read(self.key, request.match_info["token"])  # the same work for any token
        return self.page("Unsubscribe from these emails? One click, nothing else to do.", form=True)

    async def post(self, request: web.Request) -> web.Response:
        if self.limited(request):
            return self.page("Too many requests: try again in a minute.", status=429)
        found = tokens.read(self.key, request.match_info["token"])
        db = await self.store()
        if found is None:
            return self.page("This unsubscribe link is not valid (it may have been cut short): use the one in the email.")
        pid, topic = found
        await db(unsubscribe, db.outbox, pid, topic, time.time())
        return self.page("You are unsubscribed: no more of these emails will be sent to you.")


class CampaignsAPI:
    """``POST /v1/campaigns`` (queued in the background: 202 and its id) and ``GET /v1/campaigns/{id}``."""

    def __init__(self, config, unsubscribe: UnsubscribeAPI) -> None:
        self.config, self.shared = config, unsubscribe
        self.tokens = access.Token(config)
        self.running: dict[str, asyncio.Task] = {}

    async def start_campaign(self, request: web.Request) -> web.Response:
        access.check(request.headers.get("Authorization", ""), self.tokens.current())
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        shape = 'the body is {"audience": KEY, "template": NAME} (and "id": the campaign\'s id, optional)'
        if not isinstance(body, dict) or set(body) - {"audience", "template", "id"}:
            raise BadRequest("invalid_campaign", shape)
        if not all(isinstance(body.get(k), str) and body[k] for k in ("audience", "template")) or not isinstance(body.get("id", ""), str):
            raise BadRequest("invalid_campaign", shape)
        try:
            template = templates.load(engage.folder(self.config), body["template"])
        except DefinitionError as exc:
            raise BadRequest("invalid_campaign", "; ".join(exc.problems)) from None
        if template.kind == "marketing" and not self.config.email.public_url:
            raise BadRequest("invalid_campaign", "marketing email needs [email] public_url (its unsubscribe link points there)")
        cid = body.get("id") or campaigns.campaign_id(body["audience"], template.name, time.time())
        if cid not in self.running or self.running[cid].done():
            self.running[cid] = asyncio.create_task(asyncio.to_thread(self._send, body["audience"], template, cid))
        return answers.json({"id": cid, "status": f"{routes.CAMPAIGNS}/{cid}"}, status=202)

    def _send(self, audience: str, template, cid: str) -> None:
        outbox, profiles = open_outbox(db_target(self.config)), open_store(db_target(self.config), reads_only=True)
        try:
            campaigns.send(outbox, profiles, self.config, audience, template, cid)
        finally:
            profiles.close()
            outbox.close()

    async def campaign(self, request: web.Request) -> web.Response:
        access.check(request.headers.get("Authorization", ""), self.tokens.current())
        cid = request.match_info["id"]
        db = await self.shared.store()
        await db(campaigns.create, db.outbox)
        found = await db(campaigns.status, db.outbox, cid)
        if found is None:
            if cid in self.running and not self.running[cid].done():
                return answers.json({"id": cid, "done": False, "queued": 0, "sent": 0, "failed": 0, "dead": 0, "skipped": {}})
            raise NotFound("campaign_not_found", "no campaign has that id")
        task = self.running.get(cid)
        if task is not None and task.done() and task.exception() is not None:
            found["error"] = "the campaign stopped: " + type(task.exception()).__name__
        return answers.json(found)


def mount(app: web.Application, config) -> UnsubscribeAPI:
    api = UnsubscribeAPI(config)
    broadcasts = CampaignsAPI(config, api)
    handlers = {"unsubscribe_page": api.show, "unsubscribe": api.post,
                "start_campaign": answers.handler(broadcasts.start_campaign), "campaign": answers.handler(broadcasts.campaign)}
    routes.mount(app.router, "email", lambda route: handlers[route.name])

    async def closing(app: web.Application) -> None:
        for task in broadcasts.running.values():
            if not task.done():
                await asyncio.wait([task], timeout=30)
        await api.close()

    app.on_cleanup.append(closing)
    return api
