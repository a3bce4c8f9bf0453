"""The privacy API (the shape of Segment's Regulations API), authorised by the access token.

    POST /v1/regulations                {"regulationType", "subjectType", "subjectIds"} → 202 {"regulateId"}
    GET  /v1/regulations                every request, oldest first
    GET  /v1/regulations/{regulateId}   its status (INITIALIZED, RUNNING, FINISHED, FAILED), per store counts
    GET  /v1/spaces/{space}/collections/users/profiles/{type}:{value}/export   NDJSON (export.py)

A suppression is in force when its 202 is sent: the new list is written, and the answer waits
until every running collector has read it (``rotation.wait_acks``). Erasing runs afterwards, in
the collector that holds the job lock. Errors have the ingest API's shape, codes from
``collector.api.PRIVACY_ERRORS`` and ``PROFILE_ERRORS``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
from aiohttp import web

from collector import answers
from collector.ingest import access
from collector import api as routes
from collector.api import MAX_ID_CHARS, MAX_SUBJECTS
from collector.errors import BadRequest, NotFound, Unavailable
from collector.privacy import export
from collector.privacy.regulations import SUPPRESSES, TYPES, public
from collector.log.rotation import wait_acks
from collector.privacy.service import Privacy, open_profiles
from collector.privacy.subjects import SUBJECT_TYPES, expand, normal
from collector.profiles.rules import PROFILE_FORM, parse_profile

log = logging.getLogger("intilery.privacy")

MAX_BODY = 6 * 1024 * 1024  # bytes of a request body
SUPPRESS_WAIT = 10.0  # seconds the 202 of a suppression waits for every collector to read the list


def parse_request(body: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """``(regulationType, subjectType, [(type, value)])`` of a request body, or ``BadRequest``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("invalid_regulation", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("invalid_regulation", "the body must be a JSON object")
    kind, subject_type, ids = payload.get("regulationType"), payload.get("subjectType"), payload.get("subjectIds")
    if kind not in TYPES:
        raise BadRequest("invalid_regulation", "regulationType is one of " + ", ".join(TYPES))
    if subject_type not in SUBJECT_TYPES:
        raise BadRequest("invalid_regulation", "subjectType is one of " + ", ".join(SUBJECT_TYPES))
    if not isinstance(ids, list):
        raise BadRequest("invalid_regulation", "subjectIds is an array of strings")
    if not 1 <= len(ids) <= MAX_SUBJECTS:
        raise BadRequest("too_many_subjects", f"subjectIds holds from 1 to {MAX_SUBJECTS:,} identifiers")
    if not all(isinstance(i, str) and i.strip() and len(i) <= MAX_ID_CHARS for i in ids):
        raise BadRequest("invalid_regulation", f"each subjectId is a non-empty string of at most {MAX_ID_CHARS} characters")
    ident = SUBJECT_TYPES[subject_type]
    return kind, subject_type, sorted({(ident, normal(ident, i)) for i in ids})


def create(privacy: Privacy, body: bytes) -> dict:
    """A new request (the audit record and the job), and the suppression in force when asked."""
    kind, subject_type, idents = parse_request(body)
    suppression = privacy.suppression
    try:
        hashes = sorted(suppression.digests(idents))
    except Exception as exc:  # the shared salt is on NATS, which did not answer
        raise Unavailable("privacy_unavailable", "the shared suppression list cannot be read now; retry",
                          retry_after=5) from exc  # fmt: skip
    record = privacy.regulations.create(kind, subject_type, hashes, [list(i) for i in idents])
    if kind in SUPPRESSES:
        try:  # the person's other identifiers are suppressed at once too (the job adds any it finds later)
            store = open_profiles(privacy.config)()
            try:
                whole = expand(store, idents) if store is not None else set(idents)
            finally:
                if store is not None:
                    store.close()
        except Exception:  # noqa: BLE001 - the database busy or away: the subjects now, the whole person by the job
            log.warning("the profile database could not be read for a suppression; its subjects are suppressed now",
                        extra={"regulateId": record["regulateId"]})  # fmt: skip
            whole = set(idents)
        try:
            version = suppression.change(add=suppression.digests(whole))
        except Exception as exc:  # NATS did not answer: the job adds them when it runs
            raise Unavailable("privacy_unavailable", f"the shared suppression list cannot be changed now; the request "
                              f"{record['regulateId']} goes on", retry_after=5) from exc  # fmt: skip
        behind = wait_acks(privacy.data_dir, "list", version, SUPPRESS_WAIT)
        if behind:
            raise Unavailable("privacy_unavailable", f"{len(behind)} collector(s) did not read the suppression list in time; "
                              f"the request {record['regulateId']} goes on", retry_after=5)  # fmt: skip
    return record


def listing(privacy: Privacy) -> dict:
    """Every request, oldest first, as the API answers them."""
    return {"data": [public(r) for r in privacy.regulations.all()]}


def status_of(privacy: Privacy, regulate_id: str) -> dict:
    """One request as the API answers it, or ``NotFound``."""
    record = privacy.regulations.get(regulate_id)
    if record is None:
        raise NotFound("regulation_not_found", "no request has that regulateId")
    return public(record)


async def file_request(privacy: Privacy, request: web.Request) -> web.Response:
    """The 202 of a new request from its HTTP body (the console files through this too)."""
    body = await read_body(request)
    record = await asyncio.to_thread(create, privacy, body)
    return answers.json({"regulateId": record["regulateId"]}, 202)


class PrivacyAPI:
    def __init__(self, config, privacy: Privacy) -> None:
        self.config, self.privacy = config, privacy
        self.tokens = access.Token(config)

    def authorise(self, request: web.Request) -> None:
        self.tokens.check(request.headers.get("Authorization", ""))

    async def post(self, request: web.Request) -> web.Response:
        self.authorise(request)
        return await file_request(self.privacy, request)

    async def list(self, request: web.Request) -> web.Response:
        self.authorise(request)
        return answers.json(await asyncio.to_thread(listing, self.privacy))

    async def get(self, request: web.Request) -> web.Response:
        self.authorise(request)
        return answers.json(status_of(self.privacy, request.match_info["regulateId"]))

    async def export(self, request: web.Request) -> web.StreamResponse:
        self.authorise(request)
        if request.match_info["space"] != self.config.profiles_space:
            raise NotFound("unknown_space", "no such space")
        parsed = parse_profile(request.match_info["profile"])
        if parsed is None:
            raise BadRequest("invalid_profile_id", "the profile is " + PROFILE_FORM)
        kind, value = parsed
        store = await asyncio.to_thread(open_profiles(self.config))
        if store is None:
            raise NotFound("profile_not_found", "no profile holds that identifier")
        try:
            pid = await asyncio.to_thread(store.find, kind, value)
            if pid is None:
                raise NotFound("profile_not_found", "no profile holds that identifier")
            first = await asyncio.to_thread(export.profile_line, store, pid)
            idents = await asyncio.to_thread(export.identifiers_of, store, pid)
        finally:
            store.close()
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                               "Content-Disposition": 'attachment; filename="export.ndjson"'})  # fmt: skip
        await response.prepare(request)
        await response.write(first)
        parts = export.chunks(export.events_of(Path(self.config.data_dir), idents, self.privacy.suppression.rules))
        while (part := await asyncio.to_thread(next, parts, None)) is not None:
            await response.write(part)
        await response.write_eof()
        return response


async def read_body(request: web.Request) -> bytes:
    """The body, up to ``MAX_BODY`` (5,000 ids of up to 1,024 characters fit; aiohttp's own cap is 1 MiB)."""
    parts, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest("too_many_subjects", f"the body is over {MAX_BODY // 1024 // 1024} MiB")
        parts.append(chunk)
    return b"".join(parts)


def mount(app: web.Application, config, privacy: Privacy) -> PrivacyAPI:
    api = PrivacyAPI(config, privacy)
    routes.mount(app.router, "privacy", lambda route: answers.handler(getattr(api, route.name)))
    return api
