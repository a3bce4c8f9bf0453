"""The HTTP API in one table: its routes, its error codes (status and sentence), its limits.

Every route of the collector is in ``ROUTES`` (ingest, the tag, health, metrics, the Profile API,
privacy requests, the SDK configuration routes, the console); each subsystem mounts its own from
it (``mount``), ``scripts/openapi.py`` writes ``collector/static/openapi.json`` from it and from
the codes below, the validators check its limits, and the tests check that the app routes exactly
the table, the document describes exactly the table, and every code the collector raises is here.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# --- limits (Segment's published ones) ----------------------------------------------------------
MAX_MESSAGE_BYTES = 32 * 1024  # one message, serialised
MAX_BODY_BYTES = 500 * 1024  # one request, after inflation
MAX_BATCH_MESSAGES = 2_500
MAX_ID_CHARS = 1_024  # userId, anonymousId, groupId, previousId, messageId
MAX_REQUEST_LINE = 8_190  # aiohttp's, before the collector sees the request
MAX_SUBJECTS = 5_000  # subjectIds of one privacy request (POST /v1/regulations)


def kb(size: int) -> str:
    return f"{size // 1024} KB"


# --- routes -------------------------------------------------------------------------------------
class Route(NamedTuple):
    """One route of the collector: every subsystem mounts its routes from ``ROUTES`` (``mount``) and
    ``scripts/openapi.py`` documents each one (by ``name``), so no path is written twice."""

    method: str  # GET (HEAD too), POST or OPTIONS
    path: str  # as the router takes it (a {name:regex} part allowed)
    subsystem: str  # who serves it: ingest, tag, health, metrics, docs, profiles, audiences, privacy, compat, console
    name: str  # the handler's name in its subsystem; the document's operation

    @property
    def canonical(self) -> str:
        """The path without its regular expressions (as the router and the document name it)."""
        return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", self.path)


TYPES = ("track", "page", "screen", "identify", "group", "alias")
SHORT = {"track": "t", "page": "p", "screen": "s", "identify": "i", "group": "g", "alias": "a"}
SINGLE_ROUTES = {kind: (f"/v1/{kind}", f"/v1/{SHORT[kind]}") for kind in TYPES}
BATCH_OPERATIONS = {"/v1/batch": "batch", "/v1/import": "import", "/v1/b": "batchShort"}  # path -> operationId
BATCH_ROUTES = tuple(BATCH_OPERATIONS)
PIXEL_ROUTE = "/v1/pixel.gif"
PREFLIGHT_ROUTE = "/v1/{tail:.*}"
PROFILES = "/v1/spaces/{space}/collections/users/profiles"  # GET: the search; PROFILE + "/traits" ...
PROFILE = PROFILES + "/{profile}"
PRIVACY_ROUTES = ("/v1/regulations", "/v1/regulations/{regulateId}", PROFILE + "/export")
SEGMENT_SETTINGS = "/v1/projects/{writeKey}/settings"
RUDDERSTACK_CONFIG, RUDDERSTACK_BEACON = "/sourceConfig/", "/beacon/v1/batch"
AUDIENCES, AUDIENCE_MEMBERS = "/v1/audiences", "/v1/audiences/{key}/members"

DESTINATIONS = "/v1/destinations"
DESTINATION_ROUTES = (("GET", DESTINATIONS, "list"), ("GET", DESTINATIONS + "/{name}/deliveries", "deliveries"),
                      ("POST", DESTINATIONS + "/{name}/replay", "replay"))  # fmt: skip

JOURNEYS = "/v1/journeys"
JOURNEY_ROUTES = (("GET", JOURNEYS, "list"), ("GET", JOURNEYS + "/{key}/runs", "runs"))

UNSUBSCRIBE = "/u/{token}"  # RFC 8058 one-click unsubscribe (collector/engage/email/routes.py)
CAMPAIGNS = "/v1/campaigns"

ROUTES: tuple[Route, ...] = (
    *(Route("POST", path, "ingest", kind) for kind, paths in SINGLE_ROUTES.items() for path in paths),
    *(Route("POST", path, "ingest", "batch") for path in BATCH_ROUTES),
    Route("OPTIONS", PREFLIGHT_ROUTE, "ingest", "preflight"),
    Route("GET", PIXEL_ROUTE, "ingest", "pixel"),
    Route("GET", "/intilery.js", "tag", "tag"),
    Route("GET", "/healthz", "health", "healthz"),
    Route("GET", "/readyz", "health", "readyz"),
    Route("GET", "/metrics", "metrics", "metrics"),
    Route("GET", "/openapi.json", "docs", "openapi"),
    *(Route("GET", f"{PROFILE}/{what}", "profiles", what) for what in ("traits", "events", "external_ids", "metadata")),
    Route("GET", PROFILES, "profiles", "profiles"),
    Route("GET", AUDIENCES, "audiences", "list"),
    Route("GET", AUDIENCE_MEMBERS, "audiences", "members"),
    Route("POST", PRIVACY_ROUTES[0], "privacy", "post"),
    Route("GET", PRIVACY_ROUTES[0], "privacy", "list"),
    Route("GET", PRIVACY_ROUTES[1], "privacy", "get"),
    Route("GET", PRIVACY_ROUTES[2], "privacy", "export"),
    Route("GET", SEGMENT_SETTINGS, "compat", "segment_settings"),
    Route("GET", RUDDERSTACK_CONFIG, "compat", "rudderstack_config"),
    Route("OPTIONS", RUDDERSTACK_CONFIG, "compat", "preflight"),
    Route("POST", RUDDERSTACK_BEACON, "compat", "rudderstack_beacon"),
    Route("OPTIONS", RUDDERSTACK_BEACON, "compat", "preflight"),
    Route("GET", "/console", "console", "index"),
    Route("POST", "/console/signin", "console", "signin"),
    Route("POST", "/console/signout", "console", "signout"),
    Route("GET", "/console/static/{name:console\\.(?:js|css)}", "console", "static"),
    Route("GET", "/console/stream", "console", "stream"),
    Route("GET", "/console/api/dashboard", "console", "dashboard"),
    Route("GET", "/console/api/profiles", "console", "search"),
    Route("GET", "/console/api/profiles/{profile}", "console", "profile"),
    Route("GET", "/console/api/audiences", "console", "audiences"),
    Route("GET", "/console/api/destinations", "console", "destination_list"),
    Route("POST", "/console/api/destinations/{name}/replay", "console", "destination_replay"),
    Route("GET", "/console/api/journeys", "console", "journey_list"),
    Route("GET", "/console/api/regulations", "console", "regulations"),
    Route("POST", "/console/api/regulations", "console", "file_regulation"),
    *(Route(method, path, "destinations", name) for method, path, name in DESTINATION_ROUTES),
    *(Route(method, path, "journeys", name) for method, path, name in JOURNEY_ROUTES),
    Route("GET", UNSUBSCRIBE, "email", "unsubscribe_page"),
    Route("POST", UNSUBSCRIBE, "email", "unsubscribe"),
    Route("POST", CAMPAIGNS, "email", "start_campaign"),
    Route("GET", CAMPAIGNS + "/{id}", "email", "campaign"),
)


def routes_of(subsystem: str) -> tuple[Route, ...]:
    return tuple(route for route in ROUTES if route.subsystem == subsystem)


def mount(router, subsystem: str, handler_of) -> None:
    """Route ``subsystem``'s routes of the table on ``router``; ``handler_of(route)`` gives each handler
    (a GET also answers HEAD)."""
    for route in routes_of(subsystem):
        if route.method == "GET":
            router.add_get(route.path, handler_of(route))
        else:
            router.add_route(route.method, route.path, handler_of(route))


# --- error codes --------------------------------------------------------------------------------
class Error(NamedTuple):
    status: int
    when: str  # what the code means, for the document
    sentence: str | None = None  # the answer's message, when it is always the same


ERRORS: dict[str, Error] = {
    "invalid_json": Error(400, "the body is not JSON, or not a JSON object"),
    "invalid_batch": Error(400, 'a batch body without a "batch" array, or with a context that is not an object'),
    "invalid_gzip": Error(400, "Content-Encoding: gzip and the body is not gzip"),
    "invalid_message": Error(400, "a message that is not a JSON object"),
    "missing_type": Error(400, "a message with no type, on a path that does not name one"),
    "unknown_type": Error(400, "a type that is not a Segment call"),
    "type_mismatch": Error(400, "a type other than the path's"),
    "missing_id": Error(400, "neither userId nor anonymousId"),
    "missing_event": Error(400, "a track without an event name"),
    "missing_group_id": Error(400, "a group without groupId"),
    "missing_previous_id": Error(400, "an alias without previousId"),
    "invalid_field": Error(400, "a field of the wrong type or length"),
    "invalid_timestamp": Error(400, "a timestamp that is not ISO-8601"),
    "plan_violation": Error(
        400, "a message that does not follow its source's tracking plan, when the source rejects violations"
    ),
    "missing_write_key": Error(
        401, "no write key", "a write key is required (Basic auth user, X-Write-Key, writeKey)"
    ),
    "invalid_write_key": Error(401, "a write key no source has", "the write key is not known"),
    "unknown_source": Error(404, "a configuration asked for (Segment settings, RudderStack sourceConfig) of a write key no source has"),
    "origin_not_allowed": Error(
        403, "a browser Origin not in the source's allowed_origins", "this origin may not send events for this source"
    ),
    "request_timeout": Error(408, "the body did not arrive within client_timeout"),
    "body_too_large": Error(413, f"over {kb(MAX_BODY_BYTES)} per request once inflated"),
    "batch_too_large": Error(
        413, f"over {MAX_BATCH_MESSAGES:,} messages", f"a batch may hold at most {MAX_BATCH_MESSAGES} messages"
    ),
    "message_too_large": Error(
        413, f"over {kb(MAX_MESSAGE_BYTES)} per message", f"a message may be at most {kb(MAX_MESSAGE_BYTES)}"
    ),
    "unsupported_content_type": Error(415, "a Content-Type other than JSON or text"),
    "unsupported_encoding": Error(415, "a Content-Encoding other than gzip or identity"),
    "rate_limited": Error(429, "over the source's or the client address's rate limit"),
    "store_unavailable": Error(503, "the store cannot take writes"),
    "store_overloaded": Error(503, "the store is behind"),
}
# The Profile API's codes (collector/profiles/api.py), the audiences' (collector/engage/) and the console's (collector/console/), apart
# from the ingest API's: their clients hold the access token, never a write key.
PROFILE_ERRORS: dict[str, Error] = {
    "invalid_profile_id": Error(400, "a profile path whose {type}:{value} is not user_id, anonymous_id, email or profile_id"),
    "invalid_parameter": Error(400, "limit outside 1-100, a next cursor this API did not give, an empty include, a trait class "
                                    "other than audience or computed_trait, an audiences period other than day or hour; "
                                    "a console stream filter that is not one"),
    "missing_access_token": Error(401, "no access token (HTTP Basic user name, or Bearer)"),
    "invalid_access_token": Error(401, "a token that is not the access token (a write key is not one)"),
    "cross_origin_request": Error(403, "a console POST on the session cookie that does not come from the console's own origin"),
    "unknown_space": Error(404, "a space other than the configured one"),
    "profile_not_found": Error(404, "no profile holds that identifier"),
    "audience_not_found": Error(404, "no audience defined (engage/audiences/) has that key"),
    "profiles_unavailable": Error(503, "the profile database is being built again (another version), or the log cannot be read now"),
}
# The privacy requests' codes (collector/privacy/routes.py), beside the Profile API's (the same token).
PRIVACY_ERRORS: dict[str, Error] = {
    "invalid_regulation": Error(
        400, "a body that is not {regulationType, subjectType, subjectIds}, or a type or subject type not known"
    ),
    "too_many_subjects": Error(400, f"more than {MAX_SUBJECTS:,} subjectIds, none, or a body over the size limit"),
    "regulation_not_found": Error(404, "no request has that regulateId"),
    "privacy_unavailable": Error(
        503, "a running collector did not take the new suppression list in time, or NATS did not answer for the shared one"
    ),
}
# The destinations' codes (collector/engage/destinations/routes.py), beside the Profile API's (the same token).
DESTINATION_ERRORS: dict[str, Error] = {
    "invalid_replay": Error(400, "a replay body that is not {} or {since: ISO 8601 time, ids: [delivery id, ...]}"),
    "destination_not_found": Error(404, "no destination of that name (no file, and no delivery in the outbox)"),
}
# The journeys' codes (collector/engage/journeys/routes.py), beside the Profile API's (the same token).
JOURNEY_ERRORS: dict[str, Error] = {
    "journey_not_found": Error(404, "no journey of that key (no file, and no run)"),
}
# The campaigns' codes (collector/engage/email/routes.py), beside the Profile API's (the same token).
CAMPAIGN_ERRORS: dict[str, Error] = {
    "invalid_campaign": Error(400, 'a body that is not {"audience": KEY, "template": NAME, "id"?: ID}, or a template with a mistake'),
    "campaign_not_found": Error(404, "no campaign of that id"),
}
# Codes only the pixel uses (it always answers a GIF), and those a batch lists message by message.
PIXEL_CODES = ("invalid_pixel",)
MESSAGE_CODES = (
    "invalid_message", "missing_type", "unknown_type", "type_mismatch", "missing_id", "missing_event",
    "missing_group_id", "missing_previous_id", "invalid_field", "invalid_timestamp", "message_too_large",
    "plan_violation",
)  # fmt: skip


def codes(status: int) -> list[str]:
    """The codes answered with ``status``, in the table's order."""
    return [code for code, error in ERRORS.items() if error.status == status]


def sentence(code: str) -> str:
    """The fixed answer sentence of ``code``."""
    text = ERRORS[code].sentence
    if text is None:
        raise KeyError(f"{code} has no fixed sentence")
    return text
