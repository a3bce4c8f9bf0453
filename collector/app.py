"""The aiohttp application: routes, authentication, CORS, and the ingest handlers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import orjson
from aiohttp import web

from collector import assets
from collector import body as bodies
from collector import rejected as dead_letters
from collector.config import Config, Source
from collector.dedup import Dedup
from collector.enrich.geo import Geo
from collector.enrich.ip import client_ip
from collector.enrich.useragent import UserAgentParser
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
from collector.limits import TokenBuckets
from collector.ingest import Outcome, Pipeline, RequestInfo, iso_ms
from collector.metrics import Metrics
from collector.store.files import REJECTED, FileStore, day_partition, hour_partition, read_events
from collector.validate import MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES

log = logging.getLogger("intilery.app")

SINGLE_ROUTES = {
    "track": ("/v1/track", "/v1/t"),
    "page": ("/v1/page", "/v1/p"),
    "screen": ("/v1/screen", "/v1/s"),
    "identify": ("/v1/identify", "/v1/i"),
    "group": ("/v1/group", "/v1/g"),
    "alias": ("/v1/alias", "/v1/a"),
}
BATCH_ROUTES = ("/v1/batch", "/v1/b", "/v1/import")
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, Authorization, X-Write-Key",
    "Access-Control-Max-Age": "86400",
}


@dataclass
class State:
    config: Config
    store: Any
    metrics: Metrics
    pipeline: Pipeline
    dedup: Dedup
    ip_limits: TokenBuckets = field(default_factory=lambda: TokenBuckets(0))
    source_limits: dict[str, TokenBuckets] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # tests move it to check a clock jumping backwards

    def source_for(self, key: str) -> Source | None:
        """The source with this write key; every key is compared in constant time."""
        found = None
        given = key.encode("utf-8", "surrogatepass")  # header bytes that are not UTF-8 arrive as surrogates
        for source in self.config.sources:
            if hmac.compare_digest(source.write_key.encode(), given):
                found = source
        return found


STATE = web.AppKey("state", State)

# Answers whose payload is not kept in rejected/: not authenticated, or to be retried as is.
NOT_KEPT = (Unauthorized, Forbidden, Unavailable, RateLimited, RequestTimeout)

# Runner settings the app relies on: gzip bodies are inflated by the app, with a cap on
# the inflated size (aiohttp's automatic inflation has none); no per-request access log; an
# unread body (after a 408 or 413) is drained for at most a second before the close.
SERVER_KWARGS = {"auto_decompress": False, "access_log": None, "lingering_time": 1.0}


def _json(payload: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers)


def _error(exc: CollectorError, headers: dict | None = None) -> web.Response:
    headers = dict(headers or {})
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return _json({"success": False, "code": exc.code, "message": exc.message}, exc.status, headers)


def _cors(request: web.Request) -> dict:
    origin = request.headers.get("Origin")
    # The origin is echoed on every answer (errors included) so a browser can read the
    # status and not retry a 4xx; whether the origin may send is decided per source.
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "Retry-After", "Vary": "Origin"}


def _header_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").split(":", 1)[0]
        except ValueError:  # not base64, not ASCII, not UTF-8 (binascii.Error is a ValueError)
            raise Unauthorized("invalid_write_key", "the Authorization header is not valid HTTP Basic") from None
        if user:
            return user
    return request.headers.get("X-Write-Key") or None


def _authenticate(state: State, key: Any, origin: str | None) -> Source:
    if key is None or key == "":
        raise Unauthorized("missing_write_key", "a write key is required (Basic auth user, X-Write-Key, writeKey)")
    source = state.source_for(key) if isinstance(key, str) else None
    if source is None:
        raise Unauthorized("invalid_write_key", "the write key is not known")
    if origin is not None and not source.allows_origin(origin):
        raise Forbidden("origin_not_allowed", "this origin may not send events for this source")
    return source


def _admit(state: State, key: Any, request: web.Request) -> Source:
    """Authenticate, check the origin, spend a token of the source's rate limit."""
    source = _authenticate(state, key, request.headers.get("Origin"))
    limits = state.source_limits.get(source.name)
    if limits is not None:
        limits.take(source.name, "source")
    return source


def _request_info(state: State, request: web.Request, received_at: float) -> RequestInfo:
    ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), state.config.trusted_proxies)
    agent = request.headers.get("User-Agent")
    if agent is not None:  # bytes that are not UTF-8 arrive as surrogates, which JSON cannot store
        agent = agent.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return RequestInfo(received_at, ip, agent)


async def _store(state: State, source: Source, outcome: Outcome, received_at: float, rejected_lines: list[bytes]) -> int:
    """Store what is new, wait for in-flight duplicates; returns how many were duplicates."""
    dedup, fresh_lines, fresh_ids, waits, seen_here = state.dedup, [], [], [], set()
    for message_id, line in zip(outcome.ids, outcome.lines):
        if message_id in seen_here or dedup.seen(message_id):
            continue
        in_flight = dedup.in_flight.get(message_id)
        if in_flight is not None:
            waits.append(in_flight)
            continue
        seen_here.add(message_id)
        fresh_lines.append(line)
        fresh_ids.append(message_id)
    commits = []
    if rejected_lines:
        commits.append(
            state.store.append(rejected_lines, partition=day_partition(received_at), log=REJECTED, source=source.name)
        )
    if fresh_lines:
        commit = state.store.append(
            fresh_lines, partition=hour_partition(received_at), ids=fresh_ids, source=source.name
        )
        commits.append(commit)
        for message_id in fresh_ids:
            dedup.in_flight[message_id] = commit
    try:
        # every write (and every in-flight duplicate) is awaited, even when one fails
        results = await asyncio.gather(*commits, *waits, return_exceptions=True)
    finally:
        for message_id in fresh_ids:
            if dedup.in_flight.get(message_id) is commits[-1]:
                del dedup.in_flight[message_id]
    if fresh_lines and not isinstance(results[len(commits) - 1], BaseException):
        dedup.add(fresh_ids, received_at)  # stored: a retry of them is a duplicate even if the answer is a 503
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    return len(outcome.ids) - len(fresh_ids)


async def ingest(request: web.Request, kind: str | None) -> web.Response:
    """One handler for every ingest path; ``kind`` is the message type, or None for a batch."""
    state = request.app[STATE]
    metrics = state.metrics
    received_at = state.clock()
    headers = _cors(request)
    source: Source | None = None
    body: bytes | None = None
    info = _request_info(state, request, received_at)
    try:
        state.ip_limits.take(info.ip or "", "client address")
        key = _header_key(request)
        if key is not None:
            source = _admit(state, key, request)
        body = await bodies.read_raw(request, timeout=state.config.client_timeout)
        body = bodies.decode(request, body)
        payload = bodies.parse_json(body)
        if not isinstance(payload, dict):
            raise BadRequest("invalid_json" if kind else "invalid_batch", "the body must be a JSON object")
        if source is None:
            source = _admit(state, payload.get("writeKey", request.query.get("writeKey")), request)
        if kind is None:
            messages = payload.get("batch")
            if not isinstance(messages, list):
                raise BadRequest("invalid_batch", 'a batch body needs a "batch" array of messages')
            if len(messages) > MAX_BATCH_MESSAGES:
                raise TooLarge("batch_too_large", f"a batch may hold at most {MAX_BATCH_MESSAGES} messages")
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
                raise TooLarge("message_too_large", f"a message may be at most {MAX_MESSAGE_BYTES // 1024} KB")
            outcome = state.pipeline.process([payload], source, info, kind)
            if outcome.rejected:
                error = outcome.rejected[0]
                raise BadRequest(error["code"], error["message"])
        rejected_lines = [
            dead_letters.record(source, received_at, r["code"], r["message"], index=r["index"], payload=messages[r["index"]])
            for r in outcome.rejected
        ]
        # the parsed messages are serialised by now: drop them rather than hold them (about
        # 3 KB an event) for as long as the store takes to answer
        payload = messages = context = None
        duplicates = await _store(state, source, outcome, received_at, rejected_lines)
    except CollectorError as exc:
        metrics.inc("intilery_events_rejected_total", source=source.name if source else "", code=exc.code)
        if source is not None and not isinstance(exc, NOT_KEPT):
            try:
                kept = dead_letters.body_payload(body, request.content_length)
                line = dead_letters.record(source, received_at, exc.code, exc.message, **kept)
                await state.store.append([line], partition=day_partition(received_at), log=REJECTED, source=source.name)
            except Unavailable as unavailable:
                exc = unavailable
        if isinstance(exc, Unavailable):
            log.warning("answered 503", extra={"code": exc.code, "reason": exc.message})
        return _error(exc, headers)

    accepted = len(outcome.ids) + outcome.bots_dropped
    metrics.inc("intilery_events_accepted_total", len(outcome.ids) - duplicates, source=source.name)
    if duplicates:
        metrics.inc("intilery_events_duplicate_total", duplicates, source=source.name)
    if outcome.bots_dropped:
        metrics.inc("intilery_events_bots_dropped_total", outcome.bots_dropped, source=source.name)
    for rejected in outcome.rejected:
        metrics.inc("intilery_events_rejected_total", source=source.name, code=rejected["code"])
    return _json({"success": True, "accepted": accepted, "rejected": outcome.rejected}, headers=headers)


async def pixel(request: web.Request) -> web.Response:
    """GET /v1/pixel.gif?data=<base64url JSON>&writeKey=...: always a 1x1 GIF."""
    state = request.app[STATE]
    received_at = state.clock()
    gif = web.Response(body=PIXEL, content_type="image/gif", headers={"Cache-Control": "no-store"})
    source = None
    try:
        source = _authenticate(state, request.query.get("writeKey"), None)
        data = request.query.get("data", "")
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise BadRequest("invalid_pixel", "data is not base64url") from None
        if len(raw) > MAX_MESSAGE_BYTES:
            raise TooLarge("message_too_large", f"a message may be at most {MAX_MESSAGE_BYTES // 1024} KB")
        message = bodies.parse_json(raw)
        if isinstance(message, dict) and "type" not in message and message.get("event") not in (None, *SINGLE_ROUTES):
            message["type"] = "track"
        outcome = state.pipeline.process([message], source, _request_info(state, request, received_at))
        rejected_lines = [
            dead_letters.record(source, received_at, r["code"], r["message"], payload=message) for r in outcome.rejected
        ]
        await _store(state, source, outcome, received_at, rejected_lines)
        for rejected in outcome.rejected:
            state.metrics.inc("intilery_events_rejected_total", source=source.name, code=rejected["code"])
        if outcome.ids:
            state.metrics.inc("intilery_events_accepted_total", source=source.name)
    except CollectorError as exc:
        state.metrics.inc("intilery_events_rejected_total", source=source.name if source else "", code=exc.code)
        if source is not None and not isinstance(exc, Unavailable):
            line = dead_letters.record(source, received_at, exc.code, exc.message, payload=request.query.get("data"))
            try:
                await state.store.append([line], partition=day_partition(received_at), log=REJECTED, source=source.name)
            except Unavailable:
                pass
    return gif


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={**_cors(request), **CORS_HEADERS})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, reason = await request.app[STATE].store.ready()
    if ready:
        return _json({"ready": True})
    return _json({"ready": False, "reason": reason}, status=503, headers={"Retry-After": "5"})


async def metrics_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = state.config.metrics_token
    if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        return _json({"success": False, "code": "unauthorized", "message": "metrics need a bearer token"}, 401,
                     {"WWW-Authenticate": "Bearer"})  # fmt: skip
    return web.Response(text=state.metrics.render(), content_type="text/plain", charset="utf-8")


def metrics_app(app: web.Application) -> web.Application:
    """/metrics alone, for ``metrics_address``: scraped on a private address, not the public port."""
    private = web.Application()
    private[STATE] = app[STATE]
    private.router.add_get("/metrics", metrics_handler)
    return private


@web.middleware
async def count_requests(request: web.Request, handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        request.app[STATE].metrics.inc("intilery_http_requests_total", route=route, status=str(exc.status))
        raise
    except Exception:  # a bug, never client input: logged, answered as a JSON 500
        log.exception("unexpected error", extra={"route": route})
        response = _json({"success": False, "code": "internal_error", "message": "unexpected error"}, 500)
    request.app[STATE].metrics.inc("intilery_http_requests_total", route=route, status=str(response.status))
    return response


def _route(kind: str | None):
    async def handler(request: web.Request) -> web.Response:
        return await ingest(request, kind)

    return handler


def make_store(config: Config, metrics: Metrics):
    if config.store == "nats":
        from collector.store.nats import NatsStore

        return NatsStore(config, metrics=metrics)
    return FileStore(
        config.data_dir,
        fsync=config.fsync,
        fsync_interval=config.fsync_interval,
        segment_max_bytes=config.segment_max_bytes,
        max_pending_bytes=config.max_pending_bytes,
        metrics=metrics,
    )


def rebuild_dedup(dedup: Dedup, config: Config) -> int:
    """Seed the duplicate filter with the ids of events inside the window (newest first, bounded)."""
    since = iso_ms(time.time() - dedup.window)
    ids: list[str] = []
    for event in read_events(config.data_dir, newest_first=True, since=hour_partition(time.time() - dedup.window)):
        message_id = event.get("messageId")
        if isinstance(message_id, str) and str(event.get("receivedAt", "")) >= since:
            ids.append(message_id)
            if len(ids) >= dedup.max_entries:
                break
    dedup.add(reversed(ids))
    return len(ids)


def create_app(config: Config, store=None) -> web.Application:
    """The collector as an aiohttp application (the store is started and closed with it)."""
    metrics = Metrics()
    geo = Geo(config.geoip) if config.geoip else None
    if geo is None:
        log.info("no geo database configured: context.location is not added (set --geoip PATH.mmdb)")
    state = State(
        config=config,
        store=store if store is not None else make_store(config, metrics),
        metrics=metrics,
        pipeline=Pipeline(UserAgentParser(config.ua_cache_size), geo),
        dedup=Dedup(config.dedup_window_hours * 3600, config.dedup_max_entries),
        ip_limits=TokenBuckets(config.ip_rate_limit, config.ip_rate_burst),
        source_limits={s.name: TokenBuckets(s.rate_limit, s.rate_burst) for s in config.sources if s.rate_limit > 0},
    )
    app = web.Application(middlewares=[count_requests])
    app[STATE] = state
    app[assets.TAG] = assets.load_tag()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await state.store.start()
        if config.store == "file":
            seeded = rebuild_dedup(state.dedup, config)
            if seeded:
                log.info("duplicate filter rebuilt", extra={"ids": seeded})
        yield
        await state.store.close()
        if geo is not None:
            geo.close()

    app.cleanup_ctx.append(lifecycle)
    for kind, paths in SINGLE_ROUTES.items():
        for path in paths:
            app.router.add_post(path, _route(kind))
    for path in BATCH_ROUTES:
        app.router.add_post(path, _route(None))
    app.router.add_route("OPTIONS", "/v1/{tail:.*}", preflight)
    app.router.add_get("/v1/pixel.gif", pixel)
    app.router.add_get("/intilery.js", assets.tag)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if not config.metrics_address:
        app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", assets.openapi)
    return app
