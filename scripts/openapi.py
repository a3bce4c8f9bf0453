#!/usr/bin/env python3
"""Writes collector/static/openapi.json, the OpenAPI 3.1 document of the collector's HTTP API.

    python scripts/openapi.py           # write it
    python scripts/openapi.py --check   # exit 1 when the shipped file differs from what this writes

The routes, error codes and limits come from collector/api.py (the table the app and the
validators use); the schemas and descriptions are here. Change the API there or here, then run
it: tests/hardening/test_contract.py checks that the shipped file is what this script writes and
that a live collector answers exactly as the document says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing

from collector.api import (  # noqa: E402
    BATCH_OPERATIONS,
    MAX_BATCH_MESSAGES,
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_LINE,
    MESSAGE_CODES,
    PIXEL_ROUTE,
    ROUTES,
    SHORT,
    TYPES,
    codes,
    kb,
)
from collector.api import MAX_SUBJECTS, PRIVACY_ERRORS, PRIVACY_ROUTES, PROFILE_ERRORS  # noqa: E402
from collector.api import DESTINATION_ERRORS, DESTINATIONS  # noqa: E402
from collector.api import JOURNEY_ERRORS, JOURNEYS  # noqa: E402
from collector.api import CAMPAIGN_ERRORS, CAMPAIGNS, UNSUBSCRIBE  # noqa: E402
from collector.engage.destinations.routes import MAX_LIMIT as DELIVERIES_LIMIT  # noqa: E402
from collector.engage.outbox.tables import STATES as DELIVERY_STATES  # noqa: E402
from collector.ingest.firstparty import FRESH_COOKIE, FRESH_MAX_AGE, ID_COOKIE, ID_MAX_AGE  # noqa: E402
from collector.api import AUDIENCE_MEMBERS, AUDIENCES  # noqa: E402
from collector.api import PROFILE as BASE  # noqa: E402
from collector.api import PROFILES as SEARCH  # noqa: E402
from collector.console.auth import COOKIE as CONSOLE_COOKIE  # noqa: E402
from collector.profiles.search import MAX_LIMIT  # noqa: E402
from collector.privacy.regulations import STATUSES  # noqa: E402
from collector.privacy.regulations import TYPES as REGULATION_TYPES  # noqa: E402
from collector.privacy.routes import MAX_BODY as MAX_REGULATION_BODY  # noqa: E402
from collector.privacy.routes import SUPPRESS_WAIT  # noqa: E402
from collector.privacy.subjects import SUBJECT_TYPES  # noqa: E402
from collector.profiles.rules import ID_TYPES  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "collector" / "static" / "openapi.json"
BATCH, BODY, MESSAGE = f"{MAX_BATCH_MESSAGES:,}", kb(MAX_BODY_BYTES), kb(MAX_MESSAGE_BYTES)


def ref(name: str, kind: str = "schemas") -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def error(enum: list[str], description: str) -> dict:
    return {"description": description, "allOf": [ref("Error"), {"properties": {"code": {"enum": enum}}}]}


def json_response(description: str, schema: dict, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def text_response(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


# Every known field may be null, which the collector treats as absent.
def nullable_object(description: str) -> dict:
    return {"type": ["object", "null"], "description": description}


def timestamp(description: str) -> dict:
    return {"type": ["string", "null"], "format": "date-time", "description": description}


def identifier(description: str) -> dict:
    return {
        "description": description + " A number is stored as its string form; an empty string or null is absent.",
        "anyOf": [{"type": "string", "maxLength": MAX_ID_CHARS}, {"type": "number"}, {"type": "null"}],
    }


def has(*fields: str) -> dict:
    """The message carries each of ``fields`` as an id that counts (not null, not empty)."""
    return {"required": list(fields), "properties": {field: ref("PresentId") for field in fields}}


COMMON_FIELDS = {
    "userId": identifier("The user's id in your system."),
    "anonymousId": identifier("The visitor's anonymous id (the tag's UUID v4)."),
    "messageId": {
        "type": ["string", "null"], "minLength": 1, "maxLength": MAX_ID_CHARS,
        "description": "Idempotency key, generated when missing: a messageId stored within the dedup window is "
        "answered as accepted and not stored again.",
    },
    "context": nullable_object(
        "Context (page, library, locale, ...). The collector adds ip (per the source's ip mode), location, "
        "userAgent, os, device, browser, and bot/botName for known crawlers."
    ),
    "integrations": nullable_object("Destination switches, stored as sent."),
    "timestamp": timestamp(
        "When the event happened (taken as originalTimestamp when that is missing). The stored timestamp is "
        "receivedAt - (sentAt - originalTimestamp): never in the future, never before year 1."
    ),
    "originalTimestamp": timestamp("When the event happened on the sender's clock; no zone means UTC."),
    "sentAt": timestamp("When the sender sent it (its own clock); used to correct clock skew."),
}  # fmt: skip


def message_fields(kind: str) -> dict:
    """A ``kind`` message as a single-message path takes it (its type may be left out)."""
    fields = {
        "type": {
            "type": ["string", "null"], "enum": [kind, None],
            "description": f"The call name. On /v1/{kind} it may be left out; another call name is 400 type_mismatch.",
        },
    }  # fmt: skip
    required, all_of, any_of = [], [ref("CommonFields")], [has("userId"), has("anonymousId")]
    if kind == "track":
        fields["event"] = {"type": "string", "minLength": 1, "description": "The event name, e.g. Order Completed."}
        fields["properties"] = nullable_object("Event properties.")
        required.append("event")
    else:
        fields["event"] = {
            "type": ["string", "null"],
            "description": "Stored as sent. (Intilery's server API style: a message with no type whose event is a "
            "call name is that call.)",
        }
    if kind in ("page", "screen"):
        fields["name"] = {"type": ["string", "null"], "description": f"The {kind}'s name."}
        fields["category"] = {"type": ["string", "null"], "description": f"The {kind}'s category."}
        fields["properties"] = nullable_object(f"{kind.capitalize()} properties (url, path, title, referrer, ...).")
    if kind in ("identify", "group"):
        fields["traits"] = nullable_object(f"Traits of the {'user' if kind == 'identify' else 'group'}.")
    # every call may carry both; when present they must be objects (stored as sent otherwise)
    fields.setdefault("properties", nullable_object("Properties; kept as sent on this call."))
    fields.setdefault("traits", nullable_object("Traits; kept as sent on this call (context.traits is usual)."))
    for name in ("name", "category"):
        fields.setdefault(name, {"type": ["string", "null"], "description": "Kept as sent on this call."})
    for name in ("groupId", "previousId"):
        fields.setdefault(name, identifier("Kept as sent on this call."))
    if kind == "group":
        fields["groupId"] = identifier("The group (account, company) id.")
        all_of.append(has("groupId"))
    if kind == "alias":
        fields["previousId"] = identifier("The previous id, merged into userId.")
        all_of.append(has("userId", "previousId"))
        any_of = None
    schema = {
        "title": f"{kind.capitalize()}Fields",
        "type": "object",
        "description": f"A Segment-spec {kind} message. Unknown fields are kept as sent. At most {MESSAGE} serialised, "
        "254 levels of nesting.",
        "allOf": all_of,
        "properties": fields,
    }
    if required:
        schema["required"] = required
    if any_of:
        schema["anyOf"] = any_of
    return schema


def schemas() -> dict:
    out = {
        "Error": {
            "type": "object",
            "description": "Every error answer. The message is a fixed sentence: it never echoes the request.",
            "required": ["success", "code", "message"],
            "properties": {
                "success": {"type": "boolean", "enum": [False]},
                "code": {"type": "string", "description": "Machine-readable reason."},
                "message": {"type": "string", "minLength": 1, "description": "A sentence for people."},
            },
            "additionalProperties": False,
        },
        "RejectedMessage": {
            "type": "object",
            "description": "A message of a batch that was not stored (it is kept in rejected/ with its reason).",
            "required": ["index", "code", "message"],
            "properties": {
                "index": {"type": "integer", "minimum": 0, "description": "Its position in the batch."},
                "code": {"type": "string", "enum": list(MESSAGE_CODES)},
                "message": {"type": "string", "minLength": 1},
            },
            "additionalProperties": False,
        },
        "Success": {
            "type": "object",
            "description": "Sent only once every accepted message is durable in the store.",
            "required": ["success", "accepted", "rejected"],
            "properties": {
                "success": {"type": "boolean", "enum": [True]},
                "accepted": {
                    "type": "integer", "minimum": 0,
                    "description": "Messages accepted: stored, duplicates of stored ones, bots a drop_bots source drops.",
                },
                "rejected": {"type": "array", "items": ref("RejectedMessage")},
            },
            "additionalProperties": False,
        },
        "SingleSuccess": {
            "description": "The answer of a single-message path: an invalid message is a 400, so rejected is empty.",
            "allOf": [ref("Success"), {"properties": {"accepted": {"maximum": 1}, "rejected": {"maxItems": 0}}}],
        },
        "BadRequestError": error(codes(400), "The request, or on a single-message path its message, is not valid."),
        "UnauthorizedError": error(codes(401), "No write key, or one no source has."),
        "ForbiddenError": error(codes(403), "A browser Origin not in the source's allowed_origins."),
        "TimeoutError": error(codes(408), "The body did not arrive within client_timeout."),
        "TooLargeError": error(
            codes(413),
            f"Over a limit: {BODY} per request once inflated, {BATCH} messages per batch, {MESSAGE} per message.",
        ),
        "UnsupportedError": error(
            codes(415),
            "A Content-Type other than application/json or text/plain, or a Content-Encoding other than gzip.",
        ),
        "RateLimitedError": error(codes(429), "Over the source's or the client address's rate limit."),
        "UnavailableError": error(
            codes(503),
            "The store cannot take writes now (disk full, directory gone, NATS down) or is behind.",
        ),
        "WriteKeyField": {"type": "string", "description": "The write key, when no Authorization or X-Write-Key header has one."},
        "PresentId": {
            "description": f"An id that counts: a non-empty string (at most {MAX_ID_CHARS:,} characters) or a number.",
            "anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}, {"type": "number"}],
        },
        "CommonFields": {"type": "object", "description": "Fields every message may carry.", "properties": COMMON_FIELDS},
    }  # fmt: skip
    for kind in TYPES:
        name = kind.capitalize()
        out[f"{name}Fields"] = message_fields(kind)
        out[f"{name}Message"] = {
            "description": f"A {kind} message inside a batch: type is required.",
            "allOf": [ref(f"{name}Fields"), {"required": ["type"], "properties": {"type": {"type": "string", "enum": [kind]}}}],
        }  # fmt: skip
        out[f"{name}Body"] = {
            "description": f"The body of /v1/{kind}: one {kind} message (its type may be left out), at most {MESSAGE}.",
            "allOf": [ref(f"{name}Fields"), {"properties": {"writeKey": ref("WriteKeyField")}}],
        }
    out["BatchMessage"] = {
        "description": "One message of a batch, of the type it names (a message with no type whose event is a call "
        "name is that call). An invalid one is rejected alone, listed under rejected in the 200 answer.",
        "oneOf": [ref(f"{kind.capitalize()}Message") for kind in TYPES],
        "discriminator": {
            "propertyName": "type",
            "mapping": {kind: f"#/components/schemas/{kind.capitalize()}Message" for kind in TYPES},
        },
    }
    out["Batch"] = {
        "type": "object",
        "description": "Several messages. The outer context is merged under each message's own; the outer sentAt "
        "applies to messages without one.",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "maxItems": MAX_BATCH_MESSAGES, "items": ref("BatchMessage")},
            "context": nullable_object("Context shared by every message (each message's own wins, key by key)."),
            "sentAt": timestamp("When the batch was sent (sender's clock)."),
            "writeKey": ref("WriteKeyField"),
        },
    }
    return out


RETRY_AFTER = {
    "description": "Seconds to wait before retrying (the same messageIds).",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
CORS_ORIGIN = {
    "description": "The request's Origin, echoed on every answer (errors too) so a browser can read it.",
    "schema": {"type": "string"},
}
CORS = {"Access-Control-Allow-Origin": CORS_ORIGIN}
SET_COOKIE = {
    "description": (
        f"First-party sources only (first_party = true), on a same-site request (Sec-Fetch-Site same-origin or "
        f"same-site; without it, an Origin under cookie_domain or the request's host): {ID_COOKIE}=<the anonymousId of "
        f"the batch's last message> (Max-Age {ID_MAX_AGE}, Path=/, SameSite=Lax, Domain=cookie_domain when set, Secure "
        f"on HTTPS or when a trusted proxy sends X-Forwarded-Proto: https) and {FRESH_COOKIE}=1 (HttpOnly, Max-Age "
        f"{FRESH_MAX_AGE}). Not sent when the request brings {ID_COOKIE} equal to that id and {FRESH_COOKIE}: at most "
        "once a day per visitor."
    ),
    "schema": {"type": "string"},
}
INGESTED = {**CORS, "Set-Cookie": SET_COOKIE}


def responses() -> dict:
    return {
        "Accepted": json_response("Accepted: every accepted message is durable; invalid ones are listed under rejected.", ref("Success"), INGESTED),
        "SingleAccepted": json_response("Accepted: the message is durable (or was already: a duplicate).", ref("SingleSuccess"), INGESTED),
        "BadRequest": json_response(
            "Not JSON, not a JSON object, bad gzip, a batch without a batch array, or (single-message paths) an "
            "invalid message.", ref("BadRequestError"), CORS,
        ),
        "Unauthorized": json_response("No write key, or an unknown one.", ref("UnauthorizedError"), CORS),
        "Forbidden": json_response("This origin may not send events for this source.", ref("ForbiddenError"), CORS),
        "RequestTimeout": json_response("The body was sent too slowly.", ref("TimeoutError"), CORS),
        "TooLarge": json_response("Over a size or count limit.", ref("TooLargeError"), CORS),
        "Unsupported": json_response("Unsupported Content-Type or Content-Encoding.", ref("UnsupportedError"), CORS),
        "RateLimited": json_response("Rate limited.", ref("RateLimitedError"), {**CORS, "Retry-After": RETRY_AFTER}),
        "Unavailable": json_response(
            "The store cannot take writes (or is behind). A connection over max_connections is also answered 503 "
            "with Retry-After, with an empty body.", ref("UnavailableError"), {**CORS, "Retry-After": RETRY_AFTER},
        ),
        "Preflight": {
            "description": "Allowed methods and headers.",
            "headers": {
                "Access-Control-Allow-Origin": CORS_ORIGIN,
                "Access-Control-Allow-Methods": {"required": True, "schema": {"type": "string"}, "description": "POST, GET, OPTIONS"},
                "Access-Control-Allow-Headers": {
                    "required": True, "schema": {"type": "string"},
                    "description": "Content-Type, Content-Encoding, Authorization, X-Write-Key",
                },
                "Access-Control-Max-Age": {"required": True, "schema": {"type": "integer"}, "description": "86400"},
            },
        },
    }  # fmt: skip


BODY_DESCRIPTION = (
    "JSON, as application/json or as text/plain (what browsers send to avoid a CORS preflight); with no "
    f"Content-Type at all it is read as JSON. Optionally Content-Encoding: gzip (at most {BODY} once inflated). "
    "The write key may be in the body's writeKey field when no header carries one."
)


def request_bodies() -> dict:
    names = [f"{kind.capitalize()}Body" for kind in TYPES] + ["Batch"]
    return {
        name: {
            "required": True,
            "description": BODY_DESCRIPTION,
            "content": {"application/json": {"schema": ref(name)}, "text/plain": {"schema": ref(name)}},
        }
        for name in names
    }


INGEST_SECURITY = [{"basicAuth": []}, {"writeKeyHeader": []}, {"writeKeyQuery": []}, {}]  # {}: the body's writeKey
INGEST_ERRORS = {
    status: ref(name, "responses")
    for status, name in [("400", "BadRequest"), ("401", "Unauthorized"), ("403", "Forbidden"), ("408", "RequestTimeout"),
                         ("413", "TooLarge"), ("415", "Unsupported"), ("429", "RateLimited"), ("503", "Unavailable")]
}  # fmt: skip


def preflight(path: str) -> dict:
    return {
        "tags": ["ingest"],
        "summary": "CORS preflight",
        "description": "Any OPTIONS under /v1/ is answered so browsers may POST JSON with headers; the Origin is echoed.",
        "operationId": "preflight" + "".join(c for c in path.title() if c.isalnum()),
        "security": [],
        "responses": {"204": ref("Preflight", "responses")},
    }


def ingest(operation_id: str, summary: str, description: str, body: str, ok: str) -> dict:
    return {
        "tags": ["ingest"],
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "security": INGEST_SECURITY,
        "requestBody": ref(body, "requestBodies"),
        "responses": {"200": ref(ok, "responses"), **INGEST_ERRORS},
    }


def get(operation_id: str, tag: str, summary: str, responses: dict, description: str = "", **extra) -> dict:
    operation = {"tags": [tag], "summary": summary, "operationId": operation_id, "security": [], **extra}
    if description:
        operation["description"] = description
    operation["responses"] = responses
    return {"get": operation}


def path_of(name: str, method: str = "GET") -> str:
    """The path of a route of the table (``collector.api.ROUTES``): no path is written here."""
    found = [r.canonical for r in ROUTES if r.name == name and r.method == method]
    if len(found) != 1:
        raise SystemExit(f"scripts/openapi.py: {method} {name} is not one route of collector/api.py's table")
    return found[0]


def paths() -> dict:
    out = {}
    for kind in TYPES:
        for path in sorted((r.canonical for r in ROUTES if r.name == kind), key=len, reverse=True):
            short = path != f"/v1/{kind}"
            out[path] = {
                "post": ingest(
                    kind + ("Short" if short else ""),
                    f"One {kind} message" + (f" (short alias of /v1/{kind})" if short else ""),
                    f"Validates, enriches and stores one {kind} message; answered 200 only once it is durable. A "
                    f"message with no type is a {kind}; an invalid one is a 400, kept in rejected/ with its reason.",
                    f"{kind.capitalize()}Body",
                    "SingleAccepted",
                ),
                "options": preflight(path),
            }
    for path, operation_id in BATCH_OPERATIONS.items():
        what = {"/v1/import": " (same as /v1/batch)", "/v1/b": " (short alias of /v1/batch)"}.get(path, "")
        out[path] = {
            "post": ingest(
                operation_id,
                "Several messages" + what,
                "Validates each message; stores the valid ones and lists each invalid one (index, code, sentence) "
                f"under rejected, with a 200. At most {BATCH} messages and {BODY}.",
                "Batch",
                "Accepted",
            ),
            "options": preflight(path),
        }
    out[PIXEL_ROUTE] = {
        **get(
            "pixel", "ingest", "No-JavaScript fallback",
            {
                "200": {
                    "description": "A 1x1 transparent GIF.",
                    "headers": {"Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-store"]}}},
                    "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
                },
                "400": text_response(
                    f"The request line is over {MAX_REQUEST_LINE:,} bytes: refused by the HTTP layer before the pixel (keep data "
                    "under about 8 KB)."
                ),
            },
            "One message as base64url JSON in data (a message with no type and an event name is a track). Always "
            "answers the 1x1 GIF, whatever happened: an invalid message from a known source is kept in rejected/.",
            parameters=[
                {"name": "data", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": f"base64url (padding optional) of one JSON message, at most {MESSAGE} decoded."},
                {"name": "writeKey", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "The source's write key."},
            ],
        ),
        "options": preflight(PIXEL_ROUTE),
    }  # fmt: skip
    out[path_of("tag")] = get(
        "tag", "tag", "The browser tag",
        {
            "200": {
                "description": "The script (gzip when the client accepts it).",
                "headers": {
                    "ETag": {"required": True, "schema": {"type": "string"}},
                    "Cache-Control": {"required": True, "schema": {"type": "string"}},
                    "Access-Control-Allow-Origin": {"required": True, "schema": {"type": "string", "enum": ["*"]}},
                },
                "content": {"application/javascript": {"schema": {"type": "string"}}},
            },
            "304": {
                "description": "Not modified: the If-None-Match ETag is current.",
                "headers": {"ETag": {"required": True, "schema": {"type": "string"}}},
            },
            "404": json_response("This build has no tag (see tag/README.md).", error(["not_built"], "No tag.")),
        },
        "The built tag shipped in the package; cacheable (ETag, 5 minutes).",
        parameters=[{"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                     "description": "An ETag from an earlier answer."}],
    )  # fmt: skip
    out[path_of("healthz")] = get(
        "healthz", "operations", "Liveness",
        {"200": json_response("The process is up.", {
            "type": "object", "required": ["status"], "additionalProperties": False,
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        })},
    )  # fmt: skip
    shared_list = {  # --store nats: the shared suppression list as this collector last read it
        "suppressionList": {
            "type": "object", "required": ["stale", "hashes", "version", "lastRead"], "additionalProperties": False,
            "description": "With --store nats: the shared suppression list (NATS bucket INTILERY_PRIVACY). stale: not "
                           "read since the start, or the last read failed; ingest goes on with the last list read.",
            "properties": {"stale": {"type": "boolean"}, "hashes": {"type": "integer", "minimum": 0},
                           "version": {"type": "integer", "minimum": 0},
                           "lastRead": {"type": ["string", "null"], "format": "date-time"},
                           "reason": {"type": "string", "description": "the kind of failure (no detail)"}},
        },
        "warnings": {"type": "array", "items": {"type": "string", "enum": ["suppression_list_stale"]}},
    }
    out[path_of("readyz")] = get(
        "readyz", "operations", "Readiness",
        {
            "200": json_response("Ready (warnings name what works in a degraded way).", {
                "type": "object", "required": ["ready"], "additionalProperties": False,
                "properties": {"ready": {"type": "boolean", "enum": [True]}, **shared_list},
            }),
            "503": json_response(
                "Not ready: the store cannot take writes; reason says what kind of fault (details are in the log).",
                {"type": "object", "required": ["ready", "code", "reason"], "additionalProperties": False,
                 "properties": {"ready": {"type": "boolean", "enum": [False]},
                                "code": {"type": "string", "enum": ["store_unavailable"]}, "reason": {"type": "string"},
                                **shared_list}},
                {"Retry-After": RETRY_AFTER},
            ),
        },
        "Whether the store can take writes now.",
    )  # fmt: skip
    out[path_of("metrics")] = get(
        "metrics", "operations", "Prometheus metrics",
        {
            "200": text_response("The metrics."),
            "401": json_response(
                "metrics_token is set and the request does not carry it.", error(["unauthorized"], "No token."),
                {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "enum": ["Bearer"]}}},
            ),
            "404": text_response("metrics_address is set: /metrics is not served on this port."),
        },
        "Prometheus text format. With metrics_token set it needs Authorization: Bearer <token>; with "
        "metrics_address set it is served only there, not on the ingest port.",
    )  # fmt: skip
    out[path_of("metrics")]["get"]["security"] = [{}, {"metricsToken": []}]
    # collector/compat/: what other vendors' browser SDKs fetch before they send (docs: README, "Moving from
    # Segment or RudderStack"); public documents, readable from any origin
    public = {"Access-Control-Allow-Origin": {"required": True, "schema": {"type": "string", "enum": ["*"]}},
              "Cache-Control": {"required": True, "schema": {"type": "string"}}}
    out[path_of("segment_settings")] = get(
        "segmentSettings", "compat", "Segment analytics.js settings",
        {
            "200": json_response(
                "The source's settings: the Segment.io integration alone, its apiHost this collector (host + /v1) "
                "and protocol the request's.",
                {"type": "object", "required": ["integrations"], "properties": {"integrations": {"type": "object"}}},
                public,
            ),
            "404": json_response("No source has this write key.", error(["unknown_source"], "Unknown key."), public),
        },
        "What @segment/analytics-next fetches from its cdnURL before sending; cacheable for 5 minutes.",
        parameters=[{"name": "writeKey", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "The source's write key."}],
    )  # fmt: skip
    out[path_of("rudderstack_config")] = get(
        "rudderstackSourceConfig", "compat", "RudderStack JavaScript SDK v3 source configuration",
        {
            "200": json_response(
                "The source, enabled, with no destinations.",
                {"type": "object", "required": ["source"], "properties": {"source": {"type": "object"}}},
                public,
            ),
            "401": json_response("No write key (query or HTTP Basic).", error(["missing_write_key", "invalid_write_key"], "No key."), public),
            "404": json_response("No source has this write key.", error(["unknown_source"], "Unknown key."), public),
        },
        "What @rudderstack/analytics-js fetches from its configUrl before sending. The write key from ?writeKey= "
        "or HTTP Basic (user name).",
        parameters=[{"name": "writeKey", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "The source's write key (else HTTP Basic)."}],
    )  # fmt: skip
    out[path_of("rudderstack_beacon", "POST")] = {
        "post": ingest(
            "rudderstackBeacon", "RudderStack's beacon transport",
            "The same as /v1/batch, for the RudderStack SDK's sendBeacon (useBeacon): the write key in ?writeKey=.",
            "Batch", "Accepted",
        ),
    }  # fmt: skip
    for route in ROUTES:  # the RudderStack SDK's own preflights (any origin)
        if route.subsystem == "compat" and route.method == "OPTIONS":
            out[route.canonical]["options"] = {**preflight(route.canonical), "tags": ["compat"]}
    out[path_of("openapi")] = get(
        "openapi", "operations", "This document",
        {
            "200": json_response("The OpenAPI document of this HTTP API.", {"type": "object", "required": ["openapi", "paths"]}),
            "404": json_response("This build has no OpenAPI document.", error(["not_found"], "No document.")),
        },
    )  # fmt: skip
    return out


# --- the Profile API (collector/profiles/api.py) ------------------------------------------------
PROFILE_SECURITY = [{"accessTokenBasic": []}, {"accessTokenBearer": []}]
EXAMPLE_PROFILE = "user_id:u-contract"  # tests/hardening/test_contract.py makes this person first


def table_error(table: dict, status: int, description: str, only: tuple[str, ...] = (), headers: dict | None = None) -> dict:
    """A JSON error answer with the codes of ``table`` (those of ``only``, when given) answered with ``status``."""
    found = [code for code, e in table.items() if e.status == status and (not only or code in only)]
    return json_response(description, error(found, " ".join(f"{c}: {table[c].sentence or table[c].when}." for c in found)), headers)


def profile_error(status: int, description: str) -> dict:
    return table_error(PROFILE_ERRORS, status, description)


def page_cursor() -> dict:
    return {"type": "object", "required": ["url", "has_more", "next"], "additionalProperties": False,
            "properties": {"url": {"type": "string"}, "has_more": {"type": "boolean"},
                           "next": {"type": "string", "description": "Give it as ?next= for the next page; empty on the last."}}}  # fmt: skip


def profile_parameters() -> list[dict]:
    return [
        {"name": "space", "in": "path", "required": True, "schema": {"type": "string"}, "example": "default",
         "description": "The space: profiles_space in intilery.toml (default: default); any other is a 404."},
        {"name": "profile", "in": "path", "required": True, "example": EXAMPLE_PROFILE,
         "schema": {"type": "string", "pattern": f"^({'|'.join(ID_TYPES)}):.+$"},
         "description": "{type}:{value}: whose profile (an email is matched trimmed and lowercased)."},
    ]  # fmt: skip


def profile_paths() -> dict:
    params = profile_parameters()
    answers = {"400": profile_error(400, "A malformed profile path or parameter."),
               "401": profile_error(401, "No access token, or not the access token (a write key never is one)."),
               "404": profile_error(404, "No such space, or no profile holds that identifier."),
               "503": profile_error(503, "The profile database is being built again, or the log cannot be read now: retry.")}  # fmt: skip
    identifier_row = {"type": "object", "required": ["type", "id", "first_seen", "last_seen", "source", "collection"],
                      "properties": {"type": {"type": "string"}, "id": {"type": "string"},
                                     "first_seen": {"type": "string"}, "last_seen": {"type": "string"},
                                     "source": {"type": "string"}, "collection": {"type": "string", "enum": ["users"]}}}  # fmt: skip
    operations = {
        "traits": ("profileTraits", "A person's traits", "Their traits (each from the message with the latest timestamp) "
                   "and the computed ones under their own names: first_seen, last_seen, event_count, counts_by_type, "
                   "counts_by_event, first_touch, last_touch, last_location, last_device, last_os, last_browser, "
                   "revenue, groups; then the computed traits of engage/traits/ and, for each audience the person is "
                   "in, its key with the value true (as Segment's Engage).",
                   [{"name": "include", "in": "query", "required": False, "schema": {"type": "string", "minLength": 1},
                     "description": "Comma-separated trait names: only these."},
                    {"name": "class", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["audience", "computed_trait"]},
                     "description": "audience: only the audiences the person is in, {key: true}; computed_trait: only "
                                    "the computed traits of engage/traits/ (Segment's classes)."}],
                   {"type": "object", "required": ["traits", "cursor"],
                    "properties": {"traits": {"type": "object"}, "cursor": page_cursor()}}),
        "events": ("profileEvents", "A person's events", "Every event of the person, newest first, as stored in the log.",
                   [{"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "description": "Events a page (default 10)."},
                    {"name": "next", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "The cursor of the previous page's answer."}],
                   {"type": "object", "required": ["data", "cursor"],
                    "properties": {"data": {"type": "array", "items": {"type": "object"}}, "cursor": page_cursor()}}),
        "external_ids": ("profileExternalIds", "A person's identifiers", "Every identifier with its type, first and "
                         "last seen and the source it first came from.", [],
                         {"type": "object", "required": ["data", "cursor"],
                          "properties": {"data": {"type": "array", "items": identifier_row}, "cursor": page_cursor()}}),
        "metadata": ("profileMetadata", "A profile's metadata", "Its id, when it was created and updated, the profiles "
                     "merged into it and the links refused (over-merge protection).", [],
                     {"type": "object", "required": ["metadata"],
                      "properties": {"metadata": {"type": "object", "required": ["profile_id", "created_at", "updated_at",
                                                                                "merged_from", "refused_links"]}}}),
    }  # fmt: skip
    out = {}
    for what, (operation_id, summary, description, query, schema) in operations.items():
        out[f"{BASE}/{what}"] = {"get": {
            "tags": ["profiles"], "summary": summary, "operationId": operation_id, "security": PROFILE_SECURITY,
            "description": description + " Needs the access token; paths as Segment's Profile API.",
            "parameters": params + query,
            "responses": {"200": json_response("The profile's " + what.replace("_", " ") + ".", schema), **answers},
        }}  # fmt: skip
    match = {"type": "object", "required": ["profile_id", "identifiers", "traits", "first_seen", "last_seen"],
             "properties": {"profile_id": {"type": "string"},
                            "identifiers": {"type": "array", "items": {"type": "string"},
                                            "description": "{type}:{value}, the user id first."},
                            "traits": {"type": "object", "description": "The person's own traits (not the computed ones)."},
                            "first_seen": {"type": ["string", "null"]}, "last_seen": {"type": ["string", "null"]}}}
    out[SEARCH] = {"get": {
        "tags": ["profiles"], "summary": "Find people", "operationId": "profileSearch", "security": PROFILE_SECURITY,
        "description": "The profiles whose identifier or trait begins with q, in any case, a page at a time in profile id "
                       "order. Needs the access token. Not in Segment's Profile API.",
        "parameters": [params[0],
                       {"name": "q", "in": "query", "required": False, "schema": {"type": "string"}, "example": "grace",
                        "description": "grace: any identifier (email, user id, anonymous id) or profile id; "
                                       "email:gra, user_id:user-, anonymous_id:..., profile_id:prf_: one type; "
                                       "plan:pro (any other name): a trait. None: everyone."},
                       {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "description": "People a page (default 10)."},
                       {"name": "next", "in": "query", "required": False, "schema": {"type": "string"},
                        "description": "The cursor of the previous page's answer."}],
        "responses": {"200": json_response("A page of matches.", {"type": "object", "required": ["data", "cursor"],
                                           "properties": {"data": {"type": "array", "items": match}, "cursor": page_cursor()}}),
                      "400": profile_error(400, "A malformed parameter."), "401": answers["401"],
                      "404": profile_error(404, "No such space."), "503": answers["503"]},
    }}  # fmt: skip
    return out


# --- the audiences (collector/engage/audiences/routes.py) ---------------------------------------
def audience_paths() -> dict:
    unauthorised = profile_error(401, "No access token, or not the access token (a write key never is one).")
    unavailable = profile_error(503, "The profile database is being built again: retry.")
    audience = {"type": "object", "required": ["key", "name", "size", "updated_at"], "additionalProperties": False,
                "properties": {"key": {"type": "string"}, "name": {"type": "string"},
                               "size": {"type": "integer", "minimum": 0, "description": "The people in it now."},
                               "updated_at": timestamp("When someone last entered or left it (null: never).")}}
    member = {"type": "object", "required": ["profile_id", "user_id", "anonymous_id", "entered_at"], "additionalProperties": False,
              "properties": {"profile_id": {"type": "string"}, "user_id": {"type": ["string", "null"]},
                             "anonymous_id": {"type": ["string", "null"]},
                             "entered_at": {"type": "string", "format": "date-time"}}}

    def operation(operation_id: str, summary: str, description: str, responses: dict, **extra) -> dict:
        return {"tags": ["audiences"], "summary": summary, "operationId": operation_id, "security": PROFILE_SECURITY,
                "description": description + " Needs the access token.", "responses": responses, **extra}

    return {
        AUDIENCES: {"get": operation(
            "listAudiences", "Every audience", "Each audience defined in engage/audiences/ (in name order): its key, "
            "name, size now and when someone last entered or left it.",
            {"200": json_response("The audiences.", {"type": "object", "required": ["data"], "additionalProperties": False,
                                                     "properties": {"data": {"type": "array", "items": audience}}}),
             "401": unauthorised, "503": unavailable})},
        AUDIENCE_MEMBERS: {"get": operation(
            "audienceMembers", "An audience's members", "The people in the audience now, a page at a time in profile id "
            "order, each with the user id and anonymous id seen last and when they entered.",
            {"200": json_response("A page of members.", {"type": "object", "required": ["data", "cursor"],
                                                         "properties": {"data": {"type": "array", "items": member},
                                                                        "cursor": page_cursor()}}),
             "400": table_error(PROFILE_ERRORS, 400, "A limit or a next cursor that is not one.", ("invalid_parameter",)),
             "401": unauthorised,
             "404": table_error(PROFILE_ERRORS, 404, "No audience has that key.", ("audience_not_found",)),
             "503": unavailable},
            parameters=[{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}, "example": "high_value",
                         "description": "The audience's key (its file's name in engage/audiences/)."},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "description": "Members a page (default 10)."},
                        {"name": "next", "in": "query", "required": False, "schema": {"type": "string"},
                         "description": "The cursor of the previous page's answer."}])},
    }  # fmt: skip


# --- the privacy API (collector/privacy/routes.py) ----------------------------------------------
REGULATIONS, ONE_REGULATION, EXPORT = PRIVACY_ROUTES
PRIVACY_CODES = {**PROFILE_ERRORS, **PRIVACY_ERRORS}
TOKEN_ONLY = "Needs the access token (a write key never is one)."


def privacy_error(status: int, description: str, *codes_: str, headers: dict | None = None) -> dict:
    """The codes of the privacy routes (their own and the Profile API's token and path codes) an operation answers."""
    return table_error(PRIVACY_CODES, status, description, codes_, headers)


def privacy_schemas() -> dict:
    counts = {"type": "integer", "minimum": 0}
    return {
        "RegulationRequest": {
            "type": "object",
            "description": "A privacy request (Segment's Regulations API shape). Each subjectId is matched as the profile "
            "rules keep identifiers: stripped, an email lowercased; the person's other identifiers are included.",
            "required": ["regulationType", "subjectType", "subjectIds"],
            "properties": {
                "regulationType": {
                    "type": "string", "enum": list(REGULATION_TYPES),
                    "description": "SUPPRESS: drop the person's events from now on (in force when the 202 is sent). "
                    "DELETE_ONLY: erase what is stored. SUPPRESS_WITH_DELETE: both. UNSUPPRESS: take a suppression back.",
                },
                "subjectType": {"type": "string", "enum": list(SUBJECT_TYPES), "description": "What kind of identifier subjectIds are."},
                "subjectIds": {
                    "type": "array", "minItems": 1, "maxItems": MAX_SUBJECTS,
                    "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": "\\S"},
                    "description": f"From 1 to {MAX_SUBJECTS:,} identifiers, each a string that is not blank, at most "
                    f"{MAX_ID_CHARS:,} characters.",
                },
            },
        },
        "RegulationCreated": {
            "type": "object", "required": ["regulateId"], "additionalProperties": False,
            "properties": {"regulateId": ref("RegulateId")},
        },
        "RegulateId": {"type": "string", "pattern": "^reg_[0-9a-f]+$", "description": "The request's id."},
        "RegulationStatus": {
            "type": "object",
            "description": "A request's audit record: never an identifier (subjects is how many were asked for).",
            "required": ["regulateId", "regulationType", "subjectType", "status", "createdAt", "startedAt", "finishedAt",
                         "identifiers", "stores", "progress", "subjects"],
            "additionalProperties": False,
            "properties": {
                "regulateId": ref("RegulateId"),
                "regulationType": {"type": "string", "enum": list(REGULATION_TYPES)},
                "subjectType": {"type": "string", "enum": list(SUBJECT_TYPES)},
                "status": {"type": "string", "enum": list(STATUSES)},
                "createdAt": {"type": "string", "format": "date-time"},
                "startedAt": {"type": ["string", "null"], "format": "date-time", "description": "When the job first ran."},
                "finishedAt": {"type": ["string", "null"], "format": "date-time",
                               "description": "When it ended (FINISHED, or CANCELLED by an operator)."},
                "rotatedAt": {"type": "string", "format": "date-time",
                              "description": "An erasure: what was received before this is erased; what came after stays."},
                "attempts": {**counts, "description": "Runs of the job that could not finish (it runs again)."},
                "nextAttemptAt": {"type": "string", "format": "date-time", "description": "When it runs again."},
                "forgetRotatedAt": {"type": "string", "format": "date-time",
                                    "description": "When every collector had read whom its console forgets (an erasure)."},
                "erasedAt": {"type": "string", "format": "date-time",
                             "description": "When this host's stores were erased (with NATS it then waits for every archive)."},
                "subjects": {"type": "integer", "minimum": 1, "description": "How many distinct subjects were asked for."},
                "identifiers": {**counts, "description": "How many identifiers the subjects expanded to (the whole person)."},
                "stores": {
                    "type": "object",
                    "description": "Per store the job touched (each log, profiles, nats): files scanned and rewritten, "
                    "lines, profiles and identifiers removed, and errors.",
                    "additionalProperties": {"type": "object", "properties": {"errors": {"type": "array", "items": {"type": "string"}}}},
                },
                "progress": {
                    "type": "object", "required": ["files", "bytes"], "additionalProperties": False,
                    "properties": {"files": {**counts, "description": "Segments scanned so far."},
                                   "bytes": {**counts, "description": "Their bytes."}},
                },
                "errors": {"type": "array", "items": {"type": "string"}, "description": "A FAILED erase of an earlier version: what went wrong."},
                "lastError": {"type": "string", "description": "Why the last run of the job could not finish (it runs again)."},
            },
        },
    }  # fmt: skip


def privacy_paths() -> dict:
    unauthorised = privacy_error(401, "No access token, or not the access token.", "missing_access_token", "invalid_access_token")
    one_id = {"name": "regulateId", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "The regulateId of the 202 (reg_ and hex digits); any other is a 404."}  # fmt: skip

    def operation(operation_id: str, summary: str, description: str, responses: dict, **extra) -> dict:
        return {"tags": ["privacy"], "summary": summary, "operationId": operation_id, "security": PROFILE_SECURITY,
                "description": description + " " + TOKEN_ONLY, **extra, "responses": responses}  # fmt: skip

    return {
        REGULATIONS: {
            "post": operation(
                "createRegulation", "Ask for a suppression or an erasure",
                "Records the request and answers its regulateId. A SUPPRESS or SUPPRESS_WITH_DELETE is in force when the "
                f"202 is sent: every running collector has read the new suppression list (it waits up to {SUPPRESS_WAIT:g} s). "
                "Erasing runs afterwards (its status says how far it is).",
                {
                    "202": json_response("Accepted: the request is recorded (and a suppression in force).", ref("RegulationCreated")),
                    "400": privacy_error(400, f"Not a valid request body (JSON, at most {MAX_REGULATION_BODY // 1024 // 1024} MiB).",
                                         "invalid_regulation", "too_many_subjects"),
                    "401": unauthorised,
                    "503": privacy_error(503, "The suppression list could not be read or changed, or a collector did not "
                                         "read it in time; a recorded request goes on (the message names it).",
                                         "privacy_unavailable", headers={"Retry-After": {**RETRY_AFTER, "description": "Seconds to wait before asking again."}}),
                },
                requestBody={"required": True, "content": {"application/json": {"schema": ref("RegulationRequest")}}},
            ),
            "get": operation(
                "listRegulations", "Every privacy request", "Every request on record, oldest first.",
                {"200": json_response("The requests.", {"type": "object", "required": ["data"], "additionalProperties": False,
                                                        "properties": {"data": {"type": "array", "items": ref("RegulationStatus")}}}),
                 "401": unauthorised},
            ),
        },
        ONE_REGULATION: {
            "get": operation(
                "getRegulation", "A privacy request's status",
                f"Its status ({', '.join(STATUSES)}) and, per store, what the job scanned and removed.",
                {"200": json_response("The request.", ref("RegulationStatus")), "401": unauthorised,
                 "404": privacy_error(404, "No request has that regulateId.", "regulation_not_found")},
                parameters=[one_id],
            ),
        },
        EXPORT: {
            "get": operation(
                "exportProfile", "Everything stored about a person (GDPR access and portability)",
                'NDJSON: first {"type": "profile", profile_id, traits, external_ids, metadata}, then every event of the '
                "person as stored, oldest first (suppressed ones left out).",
                {
                    "200": {
                        "description": "The export, streamed.",
                        "headers": {"Content-Disposition": {"required": True, "schema": {"type": "string"},
                                                            "description": 'attachment; filename="export.ndjson"'}},
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    "400": privacy_error(400, "A malformed profile path.", "invalid_profile_id"),
                    "401": unauthorised,
                    "404": privacy_error(404, "No such space, or no profile holds that identifier.", "unknown_space", "profile_not_found"),
                },
                parameters=profile_parameters(),
            ),
        },
    }  # fmt: skip


# --- destinations (collector/engage/destinations/routes.py) -------------------------------------
def destination_paths() -> dict:
    codes_ = {**PROFILE_ERRORS, **DESTINATION_ERRORS}
    unauthorised = table_error(codes_, 401, "No access token, or not the access token.")
    missing = table_error(codes_, 404, "No destination of that name.", ("destination_not_found",))
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "The destination's name: its file's, engage/destinations/<name>.yaml."}
    last_error = {"type": ["object", "null"], "properties": {"id": {"type": "string"}, "at": {"type": "number"},
                  "status": {"type": ["integer", "null"]}, "error": {"type": ["string", "null"]},
                  "answer": {"type": ["string", "null"]}}}
    counts = {s: {"type": "integer"} for s in ("delivered", "pending", "in_flight", "failed", "dead", "filtered", "no_consent")}
    row = {"type": "object", "required": ["name", "configured", "enabled", *counts, "disabled", "last_error"],
           "properties": {"name": {"type": "string"}, "configured": {"type": "boolean"}, "enabled": {"type": "boolean"},
                          **counts, "disabled": {"type": ["string", "null"], "description": "Why it was disabled (a 410)."},
                          "last_error": last_error,
                          "settings": {"type": "object", "description": "Its file's settings, without the secret."}}}
    delivery = {"type": "object", "required": ["id", "state", "created", "next_at", "attempts", "payload"],
                "properties": {"id": {"type": "string", "description": "The webhook-id, the same on every retry."},
                               "state": {"type": "string", "enum": list(DELIVERY_STATES)}, "created": {"type": "number"},
                               "next_at": {"type": "number"}, "attempts": {"type": "integer"},
                               "batch": {"type": ["string", "null"]}, "payload": {"type": "object"},
                               "updated": {"type": "number"}, "last_status": {"type": ["integer", "null"]},
                               "last_error": {"type": ["string", "null"]}, "last_request": {"type": ["string", "null"]},
                               "last_answer": {"type": ["string", "null"]}}}

    def op(operation_id: str, summary: str, description: str, responses: dict, **extra) -> dict:
        return {"tags": ["destinations"], "summary": summary, "operationId": operation_id, "security": PROFILE_SECURITY,
                "description": description + " " + TOKEN_ONLY, **extra, "responses": responses}

    return {
        DESTINATIONS: {"get": op("listDestinations", "Every destination and its deliveries' counts",
            "Each destination (configured, or with deliveries in the outbox): its deliveries by state, whether it is "
            "disabled and why, its last error; problems lists the mistakes in the definitions' files.",
            {"200": json_response("The destinations.", {"type": "object", "required": ["data", "problems"],
                                  "properties": {"data": {"type": "array", "items": row},
                                                 "problems": {"type": "array", "items": {"type": "string"}}}}),
             "401": unauthorised})},
        DESTINATIONS + "/{name}/deliveries": {"get": op("listDeliveries", "A destination's deliveries",
            "A page of deliveries by id, each with its last request and answer (dead letters: ?state=dead).",
            {"200": json_response("A page.", {"type": "object", "required": ["data", "cursor"],
                                  "properties": {"data": {"type": "array", "items": delivery}, "cursor": page_cursor()}}),
             "400": table_error(codes_, 400, "A bad state, limit or cursor.", ("invalid_parameter",)),
             "401": unauthorised, "404": missing},
            parameters=[name,
                        {"name": "state", "in": "query", "required": False, "schema": {"type": "string", "enum": list(DELIVERY_STATES)}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": DELIVERIES_LIMIT}},
                        {"name": "next", "in": "query", "required": False, "schema": {"type": "string"},
                         "description": "The cursor of the previous page's answer."}])},
        DESTINATIONS + "/{name}/replay": {"post": op("replayDeliveries", "Send a destination's failures again",
            "Its dead and failed deliveries (created since a time; or the ids named, in any state) are due again, "
            "attempts from 0, with the same webhook-id; a destination disabled by a 410 is enabled again.",
            {"200": json_response("How many are due again.", {"type": "object", "required": ["replayed", "enabled_again"],
                                  "properties": {"replayed": {"type": "integer"}, "enabled_again": {"type": "boolean"}}}),
             "400": table_error(codes_, 400, "Not a replay body.", ("invalid_replay",)), "401": unauthorised, "404": missing},
            parameters=[name],
            requestBody={"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"since": {"type": "string", "format": "date-time"},
                               "ids": {"type": "array", "maxItems": 1000, "items": {"type": "string"}}}}}}})},
    }  # fmt: skip


# --- journeys (collector/engage/journeys/routes.py) ---------------------------------------------
def journey_paths() -> dict:
    codes_ = {**PROFILE_ERRORS, **JOURNEY_ERRORS}
    unauthorised = table_error(codes_, 401, "No access token, or not the access token.")
    counts = {s: {"type": "integer"} for s in ("entered", "active", "exited", "converted", "completed")}
    version = {"type": "object", "required": ["version", "current", *counts, "waiting"],
               "properties": {"version": {"type": "string", "description": "A digest of the definition a run started on."},
                              "current": {"type": "boolean", "description": "The definition in the files now."},
                              **counts, "erased": {"type": "integer"}, "suppressed": {"type": "integer"},
                              "waiting": {"type": "object", "additionalProperties": {"type": "integer"},
                                          "description": "Active runs per step (the step's name)."}}}
    row = {"type": "object", "required": ["key", "name", "configured", *counts, "steps", "versions"],
           "properties": {"key": {"type": "string"}, "name": {"type": "string"}, "configured": {"type": "boolean"}, **counts,
                          "steps": {"type": "array", "items": {"type": "string"}}, "versions": {"type": "array", "items": version}}}
    run = {"type": "object", "required": ["id", "journey", "version", "state", "step", "next_at", "instance", "outcome"],
           "properties": {"id": {"type": "string"}, "journey": {"type": "string"}, "version": {"type": "string"},
                          "state": {"type": "string", "enum": ["active", "ended"]}, "step": {"type": ["string", "null"]},
                          "next_at": {"type": ["number", "null"], "description": "The moment of its next timer (epoch seconds)."},
                          "instance": {"type": ["string", "null"]}, "entered_at": {"type": "number"}, "updated": {"type": "number"},
                          "outcome": {"type": ["string", "null"], "enum": ["completed", "exited", "converted", "erased", "suppressed", None]}}}

    def op(operation_id: str, summary: str, description: str, responses: dict, **extra) -> dict:
        return {"tags": ["journeys"], "summary": summary, "operationId": operation_id, "security": PROFILE_SECURITY,
                "description": description + " " + TOKEN_ONLY, **extra, "responses": responses}

    return {
        JOURNEYS: {"get": op("listJourneys", "Every journey and the people at each step",
            "Each journey (configured, or with runs), per version (a run keeps the version it started on): entered, "
            "active, waiting per step, exited, converted, completed; problems lists the mistakes in the files.",
            {"200": json_response("The journeys.", {"type": "object", "required": ["data", "problems"],
                                  "properties": {"data": {"type": "array", "items": row},
                                                 "problems": {"type": "array", "items": {"type": "string"}}}}),
             "401": unauthorised})},
        JOURNEYS + "/{key}/runs": {"get": op("listJourneyRuns", "A person's runs of a journey",
            "The runs of the person having that identifier: the step each stands at and the moment of its next timer.",
            {"200": json_response("The runs.", {"type": "object", "required": ["data"],
                                  "properties": {"data": {"type": "array", "items": run}}}),
             "400": table_error(codes_, 400, "No profile, or not type:value.", ("invalid_parameter",)),
             "401": unauthorised, "404": table_error(codes_, 404, "No journey of that key.", ("journey_not_found",))},
            parameters=[{"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
                         "description": "The journey's key: its file's name, engage/journeys/<key>.yaml."},
                        {"name": "profile", "in": "query", "required": True, "schema": {"type": "string"},
                         "description": "user_id:VALUE, anonymous_id:VALUE or email:VALUE."}])},
    }  # fmt: skip


# --- one-click unsubscribe (collector/engage/email/routes.py) -----------------------------------
def email_paths() -> dict:
    page = {"description": "A short page (the same for a valid and an invalid token, but for its sentence).",
            "content": {"text/html": {"schema": {"type": "string"}}}}
    limited = {"description": "More than 30 requests a minute from one address.", "content": {"text/html": {"schema": {"type": "string"}}}}
    token = [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "The token of the List-Unsubscribe link: an HMAC naming the person and the list."}]
    codes_ = {**PROFILE_ERRORS, **CAMPAIGN_ERRORS}
    unauthorised = table_error(codes_, 401, "No access token, or not the access token.")
    counts = {"id": {"type": "string"}, "audience": {"type": "string"}, "template": {"type": "string"},
              "done": {"type": "boolean", "description": "Every member looked at (queued or skipped)."},
              "queued": {"type": "integer", "description": "In the outbox, not sent yet."},
              "sent": {"type": "integer"}, "failed": {"type": "integer", "description": "To be retried."},
              "dead": {"type": "integer", "description": "Refused for good by the relay."},
              "skipped": {"type": "object", "additionalProperties": {"type": "integer"},
                          "description": "By reason: no_email, no_consent, unsubscribed, undeliverable, frequency_cap."},
              "error": {"type": "string"}}

    def op(operation_id: str, summary: str, description: str, responses: dict, **extra) -> dict:
        return {"tags": ["email"], "summary": summary, "operationId": operation_id, "security": PROFILE_SECURITY,
                "description": description + " " + TOKEN_ONLY, **extra, "responses": responses}

    return {
        CAMPAIGNS: {"post": op("startCampaign", "Send a template to an audience",
            "One message per member with an email address and consent, queued in the background on the outbox's email "
            "lane (sent at most rate_per_second). The same id again goes on where it stopped: nobody gets a second copy.",
            {"202": json_response("Started.", {"type": "object", "required": ["id", "status"],
                                  "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}),
             "400": table_error(codes_, 400, "Not {audience, template}, or a template with a mistake.", ("invalid_campaign",)),
             "401": unauthorised},
            requestBody={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["audience", "template"], "additionalProperties": False,
                "properties": {"audience": {"type": "string"}, "template": {"type": "string"}, "id": {"type": "string"}}}}}})},
        CAMPAIGNS + "/{id}": {"get": op("getCampaign", "A campaign's counts",
            "Queued, sent, failed, dead and skipped by reason.",
            {"200": json_response("The counts.", {"type": "object", "required": ["id", "done", "queued", "sent", "failed", "dead", "skipped"],
                                  "properties": counts}),
             "401": unauthorised, "404": table_error(codes_, 404, "No campaign of that id.", ("campaign_not_found",))},
            parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}])},
        UNSUBSCRIBE: {
            "get": {"tags": ["email"], "summary": "The unsubscribe page: one button", "operationId": "unsubscribePage",
                    "security": [], "description": "Changes nothing (a link scanner may fetch it): shows one button that POSTs.",
                    "parameters": token, "responses": {"200": page, "429": limited}},
            "post": {"tags": ["email"], "summary": "Unsubscribe, in one click (RFC 8058)", "operationId": "unsubscribe",
                     "security": [], "parameters": token,
                     "description": "The mailbox's one-click POST (body List-Unsubscribe=One-Click) or the page's button: the "
                                    "person is unsubscribed at once (no cookie, no redirect, no second step); an identify "
                                    "setting the trait email_consent to false is appended to the log.",
                     "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {
                         "type": "object", "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}}}},
                     "responses": {"200": page, "429": limited}},
        },
    }  # fmt: skip


# --- the console (collector/console/) ----------------------------------------------------------
CONSOLE_SECURITY = [{"consoleSession": []}, {"accessTokenBearer": []}]


def console_paths() -> dict:
    """The console's routes: its pages and its JSON API, behind the access token or the session cookie."""
    denied = profile_error(401, "No session cookie and no access token (the page itself answers the sign-in form).")
    cross = profile_error(403, "A POST on the session cookie from another origin (cross_origin_request).")
    html = {"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}
    seen = {"303": {"description": "Back to /console, the session cookie set or cleared.",
                    "headers": {"Location": {"required": True, "schema": {"type": "string"}}}}}
    def op(operation_id: str, summary: str, responses: dict, security=CONSOLE_SECURITY, **extra) -> dict:
        return {"tags": ["console"], "summary": summary, "operationId": operation_id, "security": security,
                "responses": responses, **extra}
    obj = {"type": "object"}
    return {
        path_of("index"): {"get": op("consoleIndex", "The console (the sign-in form without a session)",
                                     {**html, "401": {"description": "The sign-in form.", "content": {"text/html": {"schema": {"type": "string"}}}}})},
        path_of("signin", "POST"): {"post": op(
            "consoleSignIn", "Sign in with the access token", {**seen, "401": {"description": "The form again, with why."}},
            security=[], requestBody={"required": True, "content": {"application/x-www-form-urlencoded": {
                "schema": {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}}}})},
        path_of("signout", "POST"): {"post": op("consoleSignOut", "Sign out", {**seen, "403": cross})},
        path_of("static"): {"get": op("consoleAsset", "The console's script or style", {
            "200": {"description": "console.js or console.css.",
                    "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}}},
            "401": denied}, parameters=[{"name": "name", "in": "path", "required": True,
                                          "schema": {"type": "string", "enum": ["console.js", "console.css"]}}])},
        path_of("stream"): {"get": op("consoleStream", "The live stream of stored and rejected events (Server-Sent Events)", {
            "200": {"description": "text/event-stream: each event an id, its status and the stored line.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            "400": profile_error(400, "A filter that is not one."), "401": denied})},
        path_of("dashboard"): {"get": op("consoleDashboard", "The dashboard's figures", {
            "200": json_response("Counts per minute, by type, event, page and source; visitors.", obj), "401": denied})},
        path_of("search"): {"get": op("consoleSearch", "Find people (the Profile API's search)", {
            "200": json_response("A page of matches.", obj), "400": profile_error(400, "A malformed parameter."),
            "401": denied})},
        path_of("profile"): {"get": op("consoleProfile", "One profile: identifiers, traits, audiences, latest events", {
            "200": json_response("The profile.", obj), "400": profile_error(400, "A malformed profile path."),
            "401": denied, "404": profile_error(404, "No profile holds that identifier.")}, parameters=[
                {"name": "profile", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "{type}:{value}, as the Profile API."}])},
        path_of("audiences"): {"get": op("consoleAudiences", "The audiences and their sizes over time", {
            "200": json_response("Each audience (key, name, size, updated_at) and its size at 30 moments a day (or an "
                                 "hour) apart, the last one now.", obj),
            "400": profile_error(400, "A period other than day or hour."), "401": denied}, parameters=[
                {"name": "period", "in": "query", "required": False, "schema": {"type": "string", "enum": ["day", "hour"]},
                 "description": "day (default): the last 30 days; hour: the last 30 hours."}])},
        path_of("destination_list"): {"get": op("consoleDestinations", "The destinations: counts, deliveries per minute, dead letters", {
            "200": json_response("Each destination as GET /v1/destinations has it, with its deliveries that ended in each "
                                 "of the last 60 minutes (by state) and its dead deliveries with their last answer.", obj),
            "401": denied})},
        path_of("destination_replay", "POST"): {"post": op("consoleReplayDestination", "Replay a destination's dead and failed deliveries", {
            "200": json_response("How many were made due, and whether the destination was enabled again.", obj),
            "401": denied, "403": cross, "404": profile_error(404, "No destination has that name.")}, parameters=[
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}])},
        path_of("journey_list"): {"get": op("consoleJourneys", "The journeys: steps and the people at each", {
            "200": json_response("Each journey as GET /v1/journeys has it: its steps in order, the people waiting at each; "
                                 "entered, active, exited, converted.", obj), "401": denied})},
        path_of("regulations"): {
            "get": op("consoleRegulations", "The privacy requests", {
                "200": json_response("Every request's status (the privacy API's listing).", obj), "401": denied}),
            "post": op("consoleFileRegulation", "File a privacy request (the privacy API's own function)", {
                "202": json_response("Filed.", obj), "400": profile_error(400, "A bad request body."), "401": denied,
                "403": cross}, requestBody={"required": True, "content": {"application/json": {"schema": obj}}}),
        },
    }  # fmt: skip


def checked(paths: dict) -> dict:
    """``paths``, once it is shown to describe exactly the routes of ``collector.api.ROUTES`` (a GET
    answers HEAD too; the one OPTIONS route under /v1/ is written under each path it answers)."""
    documented = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    routed = {(r.method, r.canonical) for r in ROUTES if r.name != "preflight" or r.subsystem != "ingest"}
    preflights = {(m, p) for m, p in documented - routed if m == "OPTIONS" and p.startswith("/v1/")}
    if documented - preflights != routed:
        raise SystemExit(f"scripts/openapi.py: the document and collector/api.py's routes differ: "
                         f"documented only {sorted(documented - preflights - routed)}, routed only {sorted(routed - documented)}")
    return paths


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Intilery collector",
            "version": "0.1.0",
            "description": (
                "The HTTP API of the Intilery collector: Segment-spec messages in (so existing Segment, RudderStack "
                "and Intilery server libraries work), durable 200s, clear 4xx answers. The write key is taken from, "
                "in order: the HTTP Basic username, the X-Write-Key header, the body's writeKey field, the writeKey "
                "query parameter. Every error body is {success: false, code, message}; client input never gets a "
                "500. Everything rejected from an authenticated source is kept in rejected/ with its reason. A "
                "request the HTTP layer cannot parse (malformed framing or headers, a request line or a header over "
                f"{MAX_REQUEST_LINE:,} bytes) is answered 400 with a text/plain body before it reaches the collector."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "The collector itself (by default http://127.0.0.1:8080)."}],
        "tags": [
            {"name": "ingest", "description": "Messages in."},
            {"name": "tag", "description": "The browser tag."},
            {"name": "compat", "description": "Configuration for Segment's and RudderStack's browser SDKs."},
            {"name": "operations", "description": "Health, readiness, metrics, this document."},
            {"name": "profiles", "description": "The Single Customer View (Segment's Profile API paths): the access token."},
            {"name": "audiences", "description": "The audiences of engage/audiences/: their sizes and members; the access token."},
            {"name": "privacy", "description": "Suppress, erase and export one person (Segment's Regulations API shape): the access token."},
            {"name": "destinations", "description": "Webhook destinations: their deliveries, dead letters and replay; the access token."},
            {"name": "journeys", "description": "Journeys: the people at each step, a person's runs and their next timer; the access token."},
            {"name": "email", "description": "One-click unsubscribe from marketing email (RFC 8058): no token, no cookie."},
            {"name": "console", "description": "The console's pages and its JSON API: the access token, or the session cookie its sign-in sets."},
        ],
        "paths": checked({**paths(), **profile_paths(), **audience_paths(), **privacy_paths(), **console_paths(),
                          **destination_paths(), **journey_paths(), **email_paths()}),
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic", "description": "The write key as the username; the password is ignored."},
                "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key", "description": "The write key in a header."},
                "writeKeyQuery": {
                    "type": "apiKey", "in": "query", "name": "writeKey",
                    "description": "The write key as a query parameter (used only when no header and not the body has one).",
                },
                "metricsToken": {"type": "http", "scheme": "bearer", "description": "metrics_token, when configured."},
                "accessTokenBasic": {"type": "http", "scheme": "basic",
                                     "description": "The access token as the username (as Segment's Profile API); no password."},
                "accessTokenBearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <access token>."},
                "consoleSession": {"type": "apiKey", "in": "cookie", "name": CONSOLE_COOKIE,
                                   "description": "The console's session (HttpOnly, SameSite=Strict), set by its sign-in."},
            },
            "schemas": {**schemas(), **privacy_schemas()},
            "responses": responses(),
            "requestBodies": request_bodies(),
        },
    }  # fmt: skip


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text() != text:
            print(f"{OUT} is not what scripts/openapi.py writes: run python scripts/openapi.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print("wrote", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
