"""The console's routes, mounted on the collector's app by ``mount``.

    GET  /console                      the page (without a session: the sign-in form, 401)
    POST /console/signin               form field ``token``: sets the session cookie, back to /console
    POST /console/signout              clears it (from the console's own origin)
    GET  /console/static/{name}        the page's JS and CSS
    GET  /console/stream               Server-Sent Events: accepted and rejected records (filters: filters.py)
    GET  /console/api/dashboard        the dashboard's numbers (dashboard.py)
    GET  /console/api/profiles?q=      finding a person (the Profile API's search: profiles/search.py)
    GET  /console/api/profiles/{type}:{value}   a profile: identifiers, traits, computed traits, audiences, timeline
    GET  /console/api/audiences?period=day|hour  every audience: size, last change, sizes over the last 30 days (hours)
    GET  /console/api/destinations     each destination: counts by state, deliveries per minute over the last
                                       hour, its dead deliveries with their last answer (GET /v1/destinations)
    POST /console/api/destinations/{name}/replay   its dead and failed deliveries due again, as the replay API
    GET  /console/api/journeys         each journey: its steps in order, people waiting at each, entered, active,
                                       exited, converted (GET /v1/journeys)
    GET  /console/api/regulations      the privacy requests, as GET /v1/regulations lists them
    POST /console/api/regulations      file one, as POST /v1/regulations (the privacy package's functions)

Every route but the sign-in form needs the access token (``auth``): a session cookie, or
``Authorization: Bearer``. A POST on the session cookie must also come from the console's own
origin (``auth.check_same_origin``): the cookie is SameSite=Strict, but another port of the same
host is the same site. Errors have the ingest API's shape (codes in ``collector.api``).
Pages are sent with a Content-Security-Policy that runs no inline script, so data shown
on them (which the page only ever sets as text) cannot run either.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import logging
import socket
import time
from pathlib import Path
from typing import AsyncIterator

import orjson
from aiohttp import web

from collector import answers
from collector.ingest import access
from collector import api as routes
from collector.console import auth
from collector.console.filters import Filter
from collector.console.follower import Follower
from collector.engage.audiences import routes as engage
from collector.errors import BadRequest, CollectorError
from collector.privacy import routes as privacy_routes

log = logging.getLogger("intilery.console")

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
HEARTBEAT = 15.0  # seconds between keep-alive comments on an idle stream
RECHECK = 1.0  # seconds between looks, on an open stream, at whether its token or session still holds
FLUSH = 0.1  # seconds between writes to one stream (events gathered meanwhile go in one write)
SEND_BUFFER = 256 << 10  # bytes the kernel holds for a stream that is not read (then its queue fills)
DEAD_SHOWN = 20  # dead deliveries shown per destination (the API pages through them all)
CATCH_UP_WAIT = 30.0  # seconds a new stream waits for the follower's first read of the last hour

SIGNIN_STYLE = (
    "body{font:15px system-ui,sans-serif;background:#f4f5f7;color:#1d2330;display:grid;place-items:center;"
    "min-height:90vh}form{background:#fff;padding:2em;border-radius:8px;box-shadow:0 1px 4px #0002;width:22em}"
    "input{width:100%;box-sizing:border-box;padding:.5em;margin:.5em 0 1em;font:inherit}"
    "button{padding:.5em 1.2em;font:inherit}.error{color:#b00020}code{background:#eef;padding:0 .2em}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(SIGNIN_STYLE.encode()).digest()).decode()
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
SIGNIN_CSP = f"default-src 'none'; img-src data:; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
# Referrer-Policy same-origin, not no-referrer: under no-referrer a browser sends ``Origin: null`` with
# the page's own form POST (sign-out), and where it sends no Sec-Fetch-Site (plain HTTP on another
# host than localhost) that POST would be refused as cross-origin.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                "X-Frame-Options": "DENY"}  # fmt: skip


def signin_page(error: str = "") -> str:
    message = f'<p class="error" id="signin-error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Intilery console: sign in</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,"><style>{SIGNIN_STYLE}</style></head>
<body><form method="post" action="/console/signin" id="signin">
<h1>Intilery console</h1>{message}
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<p>It is <code>access_token</code> in intilery.toml, or the file <code>access-token</code> in the data directory.</p>
<button type="submit">Sign in</button></form></body></html>"""


NO_STORE = {"Cache-Control": "no-store"}


def _json(payload: dict, status: int = 200) -> web.Response:
    return answers.json(payload, status, NO_STORE)


def _error_headers(exc: CollectorError) -> dict:
    return {**NO_STORE, "WWW-Authenticate": 'Bearer realm="intilery console"'} if exc.status == 401 else NO_STORE


class Console:
    """What the console's handlers share: the configuration, the token, the follower, the Profile API,
    the privacy requests (``collector.privacy.service.Privacy``)."""

    def __init__(self, config, profiles, busy, privacy=None, audiences=None, destinations=None, journeys=None) -> None:
        self.config, self.profiles, self.busy, self.privacy = config, profiles, busy, privacy
        self.in_force = audiences  # engage.audiences.routes.InForce: the definitions in force
        self.destinations = destinations  # engage.destinations.routes.DestinationsAPI
        self.journeys = journeys  # engage.journeys.routes.JourneysAPI
        self.follower: Follower | None = None
        self.tokens = access.Token(config)
        self.signed_out = auth.SignedOut(config.data_dir)
        self.page = (STATIC / "index.html").read_bytes()

    @property
    def token(self) -> str:
        return self.tokens.current()

    def authorize(self, request: web.Request) -> None:
        auth.authorize(request, self.token, self.signed_out)

    def following(self) -> Follower:
        if self.follower is None:
            salt = (lambda: self.privacy.suppression.salt) if self.privacy is not None else None
            self.follower = Follower(self.config, busy=self.busy, salt=salt)
        self.follower.start()
        return self.follower

    # --- pages ------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        try:
            self.authorize(request)
        except CollectorError:
            return self._signin(status=401)
        return web.Response(body=self.page, content_type="text/html", charset="utf-8",
                            headers={**PAGE_HEADERS, "Content-Security-Policy": CSP})  # fmt: skip

    def _signin(self, error: str = "", status: int = 200) -> web.Response:
        return web.Response(text=signin_page(error), status=status, content_type="text/html",
                            headers={**PAGE_HEADERS, "Content-Security-Policy": SIGNIN_CSP})  # fmt: skip

    async def signin(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
            auth.check_form_token(str(form.get("token", "")), self.token)
        except CollectorError as exc:
            return self._signin(exc.message, status=exc.status)
        except ValueError:
            return self._signin("the form could not be read", status=400)
        response = web.Response(status=303, headers={"Location": "/console", "Cache-Control": "no-store"})
        auth.set_session(response, request, self.token, self.config.trusted_proxies)
        return response

    async def signout(self, request: web.Request) -> web.Response:
        auth.check_same_origin(request, self.config.trusted_proxies)  # another site cannot sign the operator out
        cookie = request.cookies.get(auth.COOKIE)
        if cookie is not None and auth.valid_session(cookie, self.token):
            await asyncio.to_thread(self.signed_out.add, cookie)  # every worker refuses it, its streams end
        response = web.Response(status=303, headers={"Location": "/console", "Cache-Control": "no-store"})
        auth.clear_session(response)
        return response

    async def static(self, request: web.Request) -> web.Response:
        self.authorize(request)
        name = request.match_info["name"]
        return web.Response(body=(STATIC / name).read_bytes(), content_type=ASSETS[name], charset="utf-8",
                            headers=PAGE_HEADERS)  # fmt: skip

    # --- data -------------------------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.authorize(request)
        want = Filter.parse(request.query)
        if request.method == "HEAD":
            return web.Response(content_type="text/event-stream", headers={"Cache-Control": "no-store"})
        last_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or None
        follower = self.following()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), CATCH_UP_WAIT)
        except asyncio.TimeoutError:
            pass  # still reading the last hour: live from here
        viewer, first, resumed = follower.join(want, last_id)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})  # fmt: skip
        try:
            await response.prepare(request)
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            viewer.transport = request.transport
            head = [b"retry: 1000\n\n"]
            if last_id and not resumed:
                note = {"lastEventId": last_id, "message": "that event is no longer in the buffer: some events may be missing"}
                head.append(b"event: gap\ndata: " + orjson.dumps(note) + b"\n\n")
            await response.write(b"".join(head + [item.frame for item in first]))
            reported, written = 0, time.monotonic()
            while not viewer.closed:
                items = await viewer.take(RECHECK)
                try:
                    self.authorize(request)  # the token changed, or the session signed out: the stream ends
                except CollectorError:
                    break
                if not items and viewer.dropped == reported and time.monotonic() - written < HEARTBEAT:
                    continue
                written = time.monotonic()
                chunks = [item.frame for item in items] or [b": keep-alive\n\n"]
                if viewer.dropped != reported:
                    reported = viewer.dropped
                    chunks.append(b"event: dropped\ndata: " + orjson.dumps({"dropped": reported}) + b"\n\n")
                await response.write(b"".join(chunks))
                await asyncio.sleep(FLUSH)
        except (ConnectionResetError, ConnectionError):
            pass  # the viewer went away
        finally:
            follower.leave(viewer)
        return response

    async def dashboard(self, request: web.Request) -> web.Response:
        self.authorize(request)
        follower = self.following()
        return _json({**follower.dashboard.snapshot(), "ready": follower.caught_up.is_set(), "behind": follower.behind,
                      "follower": {"records": follower.read_count, "seconds": round(follower.worked, 3)}})

    async def profile(self, request: web.Request) -> web.Response:
        """The profile whole, with the audiences the person is in and the computed traits the
        definitions give them (among the builder's computed traits)."""
        self.authorize(request)
        found = await self.profiles.everything(request.match_info["profile"], request.query.get("limit"))
        found["audiences"] = []
        if self.in_force is not None:
            engaged = engage.person(self.in_force, self.profiles.db(), found["profile_id"])
            found["audiences"] = engaged["audiences"]
            found["computed_traits"].update(engaged["engage_traits"])
        found["journeys"] = []
        if self.journeys is not None:
            found["journeys"] = await self.journeys.of_person([(i["type"], i["id"]) for i in found["external_ids"]])
        return _json(found)

    async def audiences(self, request: web.Request) -> web.Response:
        """``GET /console/api/audiences?period=day|hour``: each audience's size now, last change and
        sizes over the last 30 days (or hours)."""
        self.authorize(request)
        period = request.query.get("period", "day")
        if period not in engage.PERIODS:
            raise BadRequest("invalid_parameter", "period is day or hour")
        if self.in_force is None:
            return _json({"period": period, "at": [], "sizes": {}, "audiences": []})
        return _json(engage.sizes(self.in_force, self.profiles.db(), period))

    async def destination_list(self, request: web.Request) -> web.Response:
        """Each destination as ``GET /v1/destinations`` has it, with ``minutes`` (its deliveries that
        ended in each of the last 60 minutes, by state, oldest first) and ``dead_letters`` (its first
        ``DEAD_SHOWN`` dead deliveries with their last answer)."""
        self.authorize(request)
        if self.destinations is None:
            return _json({"data": [], "problems": [], "since": 0})
        listed = await self.destinations.listing()
        db = await self.destinations.outbox()
        since = (time.time() // 60 - 59) * 60  # the start of the minute 59 minutes ago: the current one is the last
        minutes = await db(db.outbox.minutes, since, 60)
        for row in listed["data"]:
            row["minutes"] = minutes.get(row["name"], {s: [0] * 60 for s in ("delivered", "failed", "dead")})
            dead = await db(db.outbox.deliveries, row["name"], "dead", DEAD_SHOWN)
            row["dead_letters"] = [{k: d[k] for k in ("id", "updated", "attempts", "last_status", "last_error", "last_answer")}
                                   for d in dead]  # fmt: skip
        return _json({**listed, "since": since})

    async def destination_replay(self, request: web.Request) -> web.Response:
        """Replay a destination's dead and failed deliveries (``DestinationsAPI.again``)."""
        self.authorize(request)
        auth.check_same_origin(request, self.config.trusted_proxies)
        if self.destinations is None:  # mounted without them (the collector always has them): nothing to replay
            return _json({"replayed": 0, "enabled_again": False})
        return _json(await self.destinations.again(request.match_info["name"]))

    async def journey_list(self, request: web.Request) -> web.Response:
        """Each journey as ``GET /v1/journeys`` has it: its steps in order, the people waiting at each."""
        self.authorize(request)
        if self.journeys is None:
            return _json({"data": [], "problems": []})
        return _json(await self.journeys.listing())

    async def search(self, request: web.Request) -> web.Response:
        self.authorize(request)
        query = request.query
        return _json(self.profiles.find_people(query.get("q", ""), query.get("limit"), query.get("next")))

    async def regulations(self, request: web.Request) -> web.Response:
        self.authorize(request)
        return _json(await asyncio.to_thread(privacy_routes.listing, self.privacy))

    async def file_regulation(self, request: web.Request) -> web.Response:
        self.authorize(request)
        auth.check_same_origin(request, self.config.trusted_proxies)
        response = await privacy_routes.file_request(self.privacy, request)
        response.headers["Cache-Control"] = "no-store"
        return response

    def look(self) -> None:
        """Forget the people of new erasures now (the privacy service calls it before it acknowledges
        a rotation: an erasure rotates every process before its first rewrite)."""
        if self.follower is not None:
            self.follower.look(force=True)

    async def close(self) -> None:
        if self.follower is not None:
            for viewer in list(self.follower.viewers):
                viewer.close()
            await self.follower.stop()


def mount(app: web.Application, config, profiles, privacy, busy=lambda: False, audiences=None, destinations=None,
          journeys=None) -> Console:  # fmt: skip
    """Route the console on ``app``; ``profiles`` is the app's ``profiles.api.ProfileAPI``, ``privacy``
    its ``privacy.service.Privacy``, ``busy()`` whether ingest requests are in flight (the follower
    then keeps to its share of the time), ``audiences`` the definitions in force
    (``engage.audiences.routes.InForce``), ``destinations`` and ``journeys`` their APIs
    (``engage.destinations.routes.DestinationsAPI``, ``engage.journeys.routes.JourneysAPI``)."""
    console = Console(config, profiles, busy, privacy, audiences, destinations, journeys)
    if privacy is not None:
        privacy.before_rotation.append(console.look)
    routes.mount(app.router, "console", lambda route: answers.handler(getattr(console, route.name), _error_headers))

    async def shutdown(app: web.Application) -> None:
        await console.close()

    app.on_shutdown.append(shutdown)
    return console
