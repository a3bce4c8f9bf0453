"""The aiohttp application: routes and wiring, and the handlers that run a request through.

A request reads in one direction: ``edge`` (write key, origin, rate limits, CORS) and
``body`` → ``ingest.Pipeline`` (validate, tracking plan, enrich, serialise) → ``commit`` (duplicates,
append, wait for durability) → the answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, AsyncIterator, Callable

import orjson
from aiohttp import web

from collector import answers, api, compat
from collector.ingest import firstparty
from collector.serve import assets
from collector.api import MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES, SINGLE_ROUTES, TYPES, sentence
from collector.ingest import body as bodies
from collector.config import Config, Source
from collector.ingest.commit import Committer, violations_kept, dead_letters
from collector.dedup import Dedup
from collector.ingest.edge import CORS_HEADERS, Gate, cors, header_key, page_origin, request_info
from collector.ingest.enrich.geo import Geo
from collector.ingest.enrich.useragent import UserAgentParser
from collector.errors import (
    BadRequest,
    CollectorError,
    Forbidden,
    RateLimited,
    RequestTimeout,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from collector.ingest.limits import TokenBuckets
from collector.ingest.pipeline import Pipeline
from collector.log.deadletters import body_payload
from collector.log.stores import make_store
from collector.metrics import Metrics
from collector.plans.enforce import Plans
from collector.serve.runtime import trim_malloc_periodically

log = logging.getLogger("intilery.app")

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@dataclass
class State:
    config: Config
    store: Any
    metrics: Metrics
    pipeline: Pipeline
    dedup: Dedup
    gate: Gate
    committer: Committer
    bodies: bodies.BodyBudget
    ip_limits: TokenBuckets = field(default_factory=lambda: TokenBuckets(0))
    privacy: Any = None  # collector.privacy.service.Privacy: /readyz says when the shared suppression list is stale
    clock: Callable[[], float] = time.time  # tests move it to check a clock jumping backwards


STATE = web.AppKey("state", State)

# Answers whose payload is not kept in rejected/: not authenticated, or to be retried as is.
NOT_KEPT = (Unauthorized, Forbidden, Unavailable, RateLimited, RequestTimeout)

# Runner settings the app relies on: gzip bodies are inflated by the app, with a cap on
# the inflated size (aiohttp's automatic inflation has none); no per-request access log; an
# unread body (after a 408 or 413) is drained for at most a second before the close.
SERVER_KWARGS = {"auto_decompress": False, "access_log": None, "lingering_time": 1.0}


def _accepted(accepted: int, rejected: list[dict], headers: dict) -> web.Response:
    """The answer of an ingest request that was stored (what ``_json`` would write, without
    serialising when nothing was rejected, as for most requests)."""
    if rejected:
        return answers.json({"success": True, "accepted": accepted, "rejected": rejected}, headers=headers)
    return answers.json_bytes(b'{"success":true,"accepted":%d,"rejected":[]}' % accepted, headers=headers)


async def ingest(request: web.Request, kind: str | None) -> web.Response:
    """One handler for every ingest path; ``kind`` is the message type, or None for a batch."""
    state = request.app[STATE]
    metrics = state.metrics
    received_at = state.clock()
    headers = cors(request)
    source: Source | None = None
    raw = body = payload = None  # as received, inflated, parsed
    reserved = 0  # of the body budget, released when answered
    info = request_info(state.config, request, received_at)
    try:
        state.ip_limits.take(info.ip or "", "client address")
        key = header_key(request)
        if key is not None:
            source = state.gate.admit(key, request)
        reserved = state.bodies.reserve(request)
        raw = await bodies.read_raw(request, timeout=state.config.client_timeout)
        body = bodies.decode(request, raw)
        payload = bodies.parse_json(body)
        if not isinstance(payload, dict):
            raise BadRequest("invalid_json" if kind else "invalid_batch", "the body must be a JSON object")
        if source is None:
            source = state.gate.admit(payload.get("writeKey", request.query.get("writeKey")), request)
        if kind is None:
            messages = payload.get("batch")
            if not isinstance(messages, list):
                raise BadRequest("invalid_batch", 'a batch body needs a "batch" array of messages')
            if len(messages) > MAX_BATCH_MESSAGES:
                raise TooLarge("batch_too_large", sentence("batch_too_large"))
            context = payload.get("context")
            if context is not None and not isinstance(context, dict):
                raise BadRequest("invalid_batch", "the batch context must be an object")
            outcome = state.pipeline.process(
                messages, source, info,
                outer_context=context, outer_sent_at=payload.get("sentAt"), check_size=len(body) > MAX_MESSAGE_BYTES,
            )  # fmt: skip
        else:
            payload.pop("writeKey", None)
            messages = [payload]
            if len(body) > MAX_MESSAGE_BYTES:
                raise TooLarge("message_too_large", sentence("message_too_large"))
            outcome = state.pipeline.process([payload], source, info, kind)
            if outcome.rejected:
                error = outcome.rejected[0]
                raise BadRequest(error["code"], error["message"], **violations_kept(outcome, 0))
        rejected_lines = dead_letters(source, received_at, outcome, messages)
        cookies = () if not source.first_party else firstparty.cookies_due(
            request, source, state.config, firstparty.visitor_id(messages)
        )
        # the parsed messages are serialised by now: drop them rather than hold them (about
        # 3 KB an event) for as long as the store takes to answer
        payload = messages = context = None
        duplicates = await state.committer.commit(source, outcome, received_at, rejected_lines)
    except CollectorError as exc:
        metrics.inc("intilery_events_rejected_total", source=source.name if source else "", code=exc.code)
        if source is not None and not isinstance(exc, NOT_KEPT) and not _suppressed(state, payload):
            try:
                if body is None and raw is not None and not bodies.encoded(request):
                    body = raw  # read, but refused before decoding (its content type): as sent
                kept = {**body_payload(body, request.content_length if raw is None else len(raw)), **exc.kept}
                await state.committer.reject(source, received_at, exc.code, exc.message, **kept)
            except Unavailable as unavailable:
                exc = unavailable
        if isinstance(exc, Unavailable):
            log.warning("answered 503", extra={"code": exc.code, "reason": exc.message})
        return answers.error(exc, headers)
    finally:
        state.bodies.release(reserved)

    accepted = len(outcome.ids) + outcome.bots_dropped + outcome.suppressed
    metrics.inc("intilery_events_accepted_total", len(outcome.ids) - duplicates, source=source.name)
    if duplicates:
        metrics.inc("intilery_events_duplicate_total", duplicates, source=source.name)
    if outcome.bots_dropped:
        metrics.inc("intilery_events_bots_dropped_total", outcome.bots_dropped, source=source.name)
    if outcome.suppressed:
        metrics.inc("intilery_events_suppressed_total", outcome.suppressed, source=source.name)
    for rejected in outcome.rejected:
        metrics.inc("intilery_events_rejected_total", source=source.name, code=rejected["code"])
    answer = _accepted(accepted, outcome.rejected, headers)
    for cookie in cookies:
        answer.headers.add("Set-Cookie", cookie)
    return answer


async def pixel(request: web.Request) -> web.Response:
    """GET /v1/pixel.gif?data=<base64url JSON>&writeKey=...: always a 1x1 GIF."""
    state = request.app[STATE]
    received_at = state.clock()
    gif = web.Response(body=PIXEL, content_type="image/gif", headers={"Cache-Control": "no-store"})
    source = raw = None
    info = request_info(state.config, request, received_at)
    message = None
    try:
        state.ip_limits.take(info.ip or "", "client address")
        source = state.gate.admit(request.query.get("writeKey"), request, page_origin(request))
        data = request.query.get("data", "")
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise BadRequest("invalid_pixel", "data is not base64url") from None
        if len(raw) > MAX_MESSAGE_BYTES:
            raise TooLarge("message_too_large", sentence("message_too_large"))
        message = bodies.parse_json(raw)
        if isinstance(message, dict) and "type" not in message and message.get("event") not in (None, *SINGLE_ROUTES):
            message["type"] = "track"
        outcome = state.pipeline.process([message], source, info)
        rejected_lines = dead_letters(source, received_at, outcome, [message], indexed=False)
        await state.committer.commit(source, outcome, received_at, rejected_lines)
        for rejected in outcome.rejected:
            state.metrics.inc("intilery_events_rejected_total", source=source.name, code=rejected["code"])
        if outcome.ids:
            state.metrics.inc("intilery_events_accepted_total", source=source.name)
    except CollectorError as exc:
        state.metrics.inc("intilery_events_rejected_total", source=source.name if source else "", code=exc.code)
        if source is not None and not isinstance(exc, NOT_KEPT) and not _suppressed(state, message):
            kept = body_payload(raw) if raw is not None else {"payload": request.query.get("data")}
            try:
                await state.committer.reject(source, received_at, exc.code, exc.message, **kept)
            except Unavailable:
                pass
    return gif


def _suppressed(state, payload) -> bool:
    """Whether a body refused whole is a suppressed person's (then it is not kept in rejected/)."""
    suppression = state.pipeline.suppression
    if suppression is None or not suppression.hashes or not isinstance(payload, dict):
        return False
    batch, context = payload.get("batch"), payload.get("context")
    if isinstance(batch, list):
        context = context if isinstance(context, dict) else None
        return any(suppression.matches_raw(m, context) for m in batch[:MAX_BATCH_MESSAGES])
    return suppression.matches_raw(payload)


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={**cors(request), **CORS_HEADERS})


async def healthz(request: web.Request) -> web.Response:
    return answers.json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ready, reason = await state.store.ready()
    extra = {}
    shared = state.privacy.shared_list() if state.privacy is not None else None
    if shared is not None:  # --store nats: ingest goes on with the last list read, and says so here
        extra["suppressionList"] = shared
        if shared["stale"]:
            extra["warnings"] = ["suppression_list_stale"]
    if ready:
        return answers.json({"ready": True, **extra})
    return answers.json({"ready": False, "code": "store_unavailable", "reason": reason, **extra}, status=503,
                 headers={"Retry-After": "5"})  # fmt: skip


async def metrics_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = state.config.metrics_token
    if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        return answers.json({"success": False, "code": "unauthorized", "message": "metrics need a bearer token"}, 401,
                     {"WWW-Authenticate": "Bearer"})  # fmt: skip
    return web.Response(text=state.metrics.render(), content_type="text/plain", charset="utf-8")


def metrics_app(app: web.Application) -> web.Application:
    """/metrics alone, for ``metrics_address``: scraped on a private address, not the public port."""
    private = web.Application()
    private[STATE] = app[STATE]
    api.mount(private.router, "metrics", lambda route: metrics_handler)
    return private


def _counted(metrics: Metrics, route: str, handler: Callable) -> Callable:
    """``handler`` with its answers counted in ``intilery_http_requests_total`` and a bug answered
    as a JSON 500. A wrapper per route rather than a middleware: an app without middleware
    calls its handlers directly, with no middleware chain around every request."""

    async def counted(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.inc("intilery_http_requests_total", route=route, status=str(exc.status))
            raise
        except Exception:  # a bug, never client input: logged, answered as a JSON 500
            log.exception("unexpected error", extra={"route": route})
            response = answers.json({"success": False, "code": "internal_error", "message": "unexpected error"}, 500)
        metrics.inc("intilery_http_requests_total", route=route, status=str(response.status))
        return response

    return counted


def create_app(config: Config, store=None, *, profiles_builder: bool = False, writer: str | None = None) -> web.Application:
    """The collector as an aiohttp application (the store is started and closed with it).

    ``writer``: the address of the host writer (``--workers N``), which then stores and
    filters duplicates for this worker (``hostwriter.WriterClient`` is its store and committer).

    The Profile API is always routed; ``profiles_builder`` also runs the profile builder in
    this process (``serve`` and ``demo`` ask for it unless ``--no-profiles``). The audiences'
    ``Audience Entered/Exited`` events are appended to the log from the profile database by one
    process per host (``engage/audiences/announce.py``)."""
    metrics = Metrics()
    geo = Geo(config.geoip) if config.geoip else None
    if geo is None:
        log.info("no geo database configured: context.location is not added (set --geoip PATH.mmdb)")
    if writer is not None:
        from collector.serve.hostwriter import WriterClient

        store = committer = WriterClient(config, writer, config.max_pending_bytes)
        dedup = store.dedup
    else:
        store = store if store is not None else make_store(config, metrics)
        dedup = Dedup(config.dedup_window_hours * 3600, config.dedup_max_entries)
        committer = Committer(store, dedup)
    from collector.privacy import routes as privacy_routes
    from collector.privacy.service import Privacy

    privacy = Privacy(config, store)
    state = State(
        config=config,
        store=store,
        metrics=metrics,
        pipeline=Pipeline(UserAgentParser(config.ua_cache_size), geo, Plans(config.sources, metrics), privacy.suppression),
        dedup=dedup,
        gate=Gate(config),
        committer=committer,
        bodies=bodies.BodyBudget(config.max_body_bytes_in_flight),
        ip_limits=TokenBuckets(config.ip_rate_limit, config.ip_rate_burst),
        privacy=privacy,
    )
    app = web.Application()
    app[STATE] = state
    app[assets.TAG] = assets.load_tag()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await store.start()
        metrics.start()
        seeded = await store.recent_ids(dedup.window, dedup.max_entries)
        if seeded:
            dedup.add(seeded)
            log.info("duplicate filter rebuilt", extra={"ids": len(seeded)})
        trimming = asyncio.create_task(trim_malloc_periodically())
        yield
        trimming.cancel()
        metrics.stop()
        await store.close()
        if geo is not None:
            geo.close()

    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(privacy.context)  # after the store's: started after it, stopped before it
    ingest_handlers = {"batch": partial(ingest, kind=None), "preflight": preflight, "pixel": pixel,
                       **{kind: partial(ingest, kind=kind) for kind in TYPES}}  # fmt: skip
    handlers = {"tag": assets.tag, "healthz": healthz, "readyz": readyz, "metrics": metrics_handler,
                "openapi": assets.openapi}  # fmt: skip
    from collector.profiles import api as profile_api
    from collector.profiles.database import db_target, open_store
    from collector.profiles.service import builder_context

    from collector.console import routes as console
    from collector.engage.audiences import routes as audiences
    from collector.engage.audiences.announce import announce_context
    from collector.engage.destinations import routes as destination_routes
    from collector.engage.destinations import service as destination_service
    from collector.engage.journeys import routes as journey_routes
    from collector.engage.journeys import service as journey_service
    from collector.engage.email import routes as email_routes
    from collector.engage.email import service as email_service

    def own_routes(subsystem: str, table: dict) -> Callable[[], None]:
        """A subsystem of api.py's table whose handlers are here, each counted in the metrics."""
        return lambda: api.mount(app.router, subsystem, lambda route: _counted(metrics, route.canonical, table[route.name]))

    # The subsystems, mounted in this order (each one's routes from api.py's table); ``mounted`` keeps
    # what a mount returns for the ones after it (the audiences and the console read the Profile API's
    # store; the console shows the audiences in force, the destinations and the journeys).
    mounted: dict[str, Any] = {}
    subsystems: tuple[tuple[str, Callable[[], Any] | None], ...] = (
        ("privacy", lambda: privacy_routes.mount(app, config, privacy)),
        ("ingest", own_routes("ingest", ingest_handlers)),
        ("profiles", lambda: profile_api.mount(app, config, lambda: open_store(db_target(config), reads_only=True))),
        ("audiences", lambda: audiences.mount(app, config, mounted["profiles"])),
        ("destinations", lambda: destination_routes.mount(app, config, metrics)),
        ("journeys", lambda: journey_routes.mount(app, config)),
        ("console", lambda: console.mount(app, config, mounted["profiles"], privacy, busy=lambda: state.bodies.held > 0,
                                          audiences=mounted["audiences"], destinations=mounted["destinations"],
                                          journeys=mounted["journeys"])),  # fmt: skip
        ("compat", lambda: compat.mount(app, config, state.gate, ingest)),
        ("email", lambda: email_routes.mount(app, config)),
        ("profiles builder", lambda: app.cleanup_ctx.append(builder_context(config)) if profiles_builder else None),
        ("audience events", lambda: app.cleanup_ctx.append(announce_context(config, state))),  # into the log, once
        ("destinations sender", lambda: app.cleanup_ctx.append(destination_service.context(config))
         if profiles_builder and destination_service.has_destinations(config) else None),
        ("journeys runner", lambda: app.cleanup_ctx.append(journey_service.context(config))
         if profiles_builder and journey_service.has_journeys(config) else None),
        ("email sender", lambda: app.cleanup_ctx.append(email_service.context(config))
         if profiles_builder and email_service.has_email(config) else None),
        ("tag", own_routes("tag", handlers)),
        ("health", own_routes("health", handlers)),
        ("metrics", None if config.metrics_address else own_routes("metrics", handlers)),  # else on its own address
        ("docs", own_routes("docs", handlers)),
    )
    for name, mount in subsystems:
        if mount is not None:
            mounted[name] = mount()
    return app
