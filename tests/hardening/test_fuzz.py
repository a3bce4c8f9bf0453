"""Fuzzing every ingest endpoint: hostile bodies, headers and framing against a real collector.

For every example, on every ingest path (long names, one-letter aliases, /v1/batch,
/v1/import, /v1/b, and the pixel):

- never a 5xx: each answer is a documented status whose JSON body matches its schema in
  the OpenAPI document (the one the contract test checks), and no answer echoes the input;
- never a hang: every request has a timeout; never a crash: after each test the process is up,
  /healthz answers, and its log holds no traceback other than aiohttp's own protocol errors;
- the store stays readable: every line of every segment under events/ and rejected/ (open or
  gzipped, while running and after shutdown) is one JSON object, the log's reader reads them
  all (quarantining none), and every stored event is a valid message (type, ids, what its type needs).

Default budget: about 20 s for this file (40 s with the contract test) on two cores;
``INTILERY_FUZZ_EXAMPLES=N`` runs N examples for every property (see tests/hardening/conftest.py).
"""

from __future__ import annotations

import base64
import functools
import gzip
import http.client
import ipaddress
import json
import re
import select
import socket
import uuid
import zlib
from importlib import resources
from pathlib import Path

import jsonschema
import orjson
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from collector.api import BATCH_ROUTES, SINGLE_ROUTES
from collector.log.reader import Reader
from helpers import CollectorProcess, assert_whole, read_events
from tests.hardening.conftest import fuzz_settings

KEY = "wk_fuzz"
# A browser source (IPs anonymised), a server source (full IPs, client-sent context.ip trusted), and one
# that drops IPs and bots: each path through enrichment gets the hostile input.
SOURCES = [
    {"name": "web", "write_key": KEY, "allowed_origins": ["https://shop.example"]},
    {"name": "server", "write_key": "wk_fuzz_server", "ip_mode": "full", "trust_client_ip": True},
    {"name": "noip", "write_key": "wk_fuzz_noip", "ip_mode": "drop", "drop_bots": True},
]
KEYS = [source["write_key"] for source in SOURCES]
NOIP_KEY = "wk_fuzz_noip"  # drops bots: accepted does not mean stored
SOURCE_NAMES = {source["name"] for source in SOURCES}
ORIGIN = "https://shop.example"
CLIENT_TIMEOUT = 2.0  # the collector's body read deadline in these tests
TIMEOUT = 15.0  # seconds any one request may take; longer is a hang
SINGLE_PATHS = {path: kind for kind, paths in SINGLE_ROUTES.items() for path in paths}
INGEST_PATHS = sorted(SINGLE_PATHS) + list(BATCH_ROUTES)
TYPES = tuple(SINGLE_ROUTES)
FIELDS = (
    "type", "event", "name", "category", "userId", "anonymousId", "groupId", "previousId", "messageId",
    "properties", "traits", "context", "integrations", "timestamp", "originalTimestamp", "sentAt", "writeKey",
)  # fmt: skip
MARKER = "<script>alert(1)</script>"  # never to be seen in an answer
REQUEST_LINE_LIMIT = 8190  # aiohttp's limit on the request line (about the longest URL it takes)

# ---------------------------------------------------------------- the documented answers

SPEC = json.loads(resources.files("collector").joinpath("static/openapi.json").read_text())
ANSWER_SCHEMAS = {
    200: "Success", 400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError", 408: "TimeoutError",
    413: "TooLargeError", 415: "UnsupportedError", 429: "RateLimitedError", 503: "UnavailableError",
}  # fmt: skip


def _validator(name: str) -> jsonschema.Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]})


VALIDATORS = {name: _validator(name) for name in {*ANSWER_SCHEMAS.values(), "SingleSuccess"}}


def check_answer(status: int, content_type: str, body: bytes, path: str, sent: bytes = b"") -> dict:
    """The answer is documented for an ingest path: status, JSON body matching its schema, no echo."""
    assert status < 500, f"{status} from {path}: {body[:300]!r}"
    assert status in ANSWER_SCHEMAS, f"undocumented status {status} from {path}: {body[:300]!r}"
    assert content_type.split(";")[0].strip() == "application/json", (status, content_type, body[:200])
    assert MARKER.encode() not in body, f"the answer echoes the input: {body[:300]!r}"
    answer = orjson.loads(body)
    name = "SingleSuccess" if status == 200 and path in SINGLE_PATHS else ANSWER_SCHEMAS[status]
    errors = sorted(VALIDATORS[name].iter_errors(answer), key=str)
    assert not errors, f"{status} answer from {path} does not match {name}: {errors[0].message}\n{answer}"
    return answer


def check_response(response: requests.Response, path: str) -> dict:
    return check_answer(response.status_code, response.headers.get("Content-Type", ""), response.content, path)


# ---------------------------------------------------------------- the collector and its store


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    settings = {"client_timeout": CLIENT_TIMEOUT, "trusted_proxies": ["127.0.0.0/8"]}  # X-Forwarded-For is read
    with CollectorProcess(workdir, sources=SOURCES, **settings) as running:
        yield running
    # Shut down (SIGTERM): segments closed and gzipped, and still every line is JSON.
    check_store(running.data_dir)
    check_log(running.log, LOG_CHECKED.get(running.log, 0))


@pytest.fixture(scope="module")
def session(collector):
    with requests.Session() as session:
        yield session


ACCEPTED: set[str] = set()  # messageIds answered 200: each must be in the store
LOG_CHECKED: dict[Path, int] = {}  # how much of the collector's log the tests before have checked
READERS: dict[tuple[Path, str], Reader] = {}  # where the tests before stopped checking the store


@pytest.fixture
def healthy(collector):
    """After the test: the process is up, answers /healthz, logged no traceback; the store is valid
    and holds every message answered as accepted."""
    ACCEPTED.clear()
    LOG_CHECKED[collector.log] = collector.log.stat().st_size
    yield
    assert collector.proc is not None and collector.proc.poll() is None, "the collector died"
    with requests.get(collector.url + "/healthz", timeout=5) as answer:
        assert answer.status_code == 200
    check_log(collector.log, LOG_CHECKED[collector.log])
    check_store(collector.data_dir)
    missing = ACCEPTED - stored_ids(collector.data_dir)
    assert not missing, f"answered 200 but not stored: {sorted(missing)[:5]}"


def check_log(log: Path, start: int = 0) -> None:
    """No traceback past ``start``, except aiohttp's own for requests its HTTP parser refused (answered 400)."""
    with log.open("rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    assert "unexpected error" not in text, text[-4000:]
    for block in text.split("Traceback (most recent call last):")[1:]:
        final = next(line for line in block.splitlines()[1:] if line and not line.startswith(" "))
        assert final.startswith("aiohttp.http_exceptions."), f"unexpected traceback ending {final!r}:\n{block[:3000]}"


def check_store(data_dir: Path) -> None:
    """Every line of every segment is one JSON object; events and dead letters are valid."""
    for root in ("events", "rejected"):
        reader = READERS.setdefault((data_dir, root), Reader(data_dir / root, log_name=root))
        for record in reader.read():  # each line once: a bad line fails the test that stored it, not every later one
            (check_event if root == "events" else check_rejected)(record.event)
        assert reader.quarantined == 0, f"a line under {root}/ is not a JSON object"
    assert_whole(data_dir)


def _id(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 1024


def check_event(event: dict) -> None:
    """What validation promises of every stored event."""
    kind = event.get("type")
    assert kind in TYPES, event
    assert _id(event.get("messageId")) and event.get("source") in SOURCE_NAMES, event
    assert isinstance(event.get("receivedAt"), str) and isinstance(event.get("context"), dict), event
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event.get("timestamp", "")), event
    assert event["timestamp"] <= event["receivedAt"], event
    assert _id(event.get("userId")) or _id(event.get("anonymousId")), event
    for field in ("userId", "anonymousId", "groupId", "previousId"):
        assert field not in event or _id(event[field]), event
    if kind == "track":
        assert isinstance(event.get("event"), str) and event["event"], event
    if kind == "group":
        assert _id(event.get("groupId")), event
    if kind == "alias":
        assert _id(event.get("userId")) and _id(event.get("previousId")), event
    for field in ("properties", "traits", "integrations"):
        assert event.get(field) is None or isinstance(event[field], dict), event
    ip = event["context"].get("ip")
    if event["source"] == "noip":
        assert ip is None, event
    elif ip is not None:  # always a normalised address; in anonymise mode, the /24 or /48 network
        address = ipaddress.ip_address(ip)
        network = ipaddress.ip_network(f"{ip}/{24 if address.version == 4 else 48}", strict=False)
        assert str(address) == ip and (event["source"] == "server" or network.network_address == address), event


def check_rejected(record: dict) -> None:
    assert record.get("source") in SOURCE_NAMES and isinstance(record.get("receivedAt"), str), record
    assert isinstance(record.get("code"), str) and isinstance(record.get("message"), str), record
    assert "payload" in record or "payloadBase64" in record, record


def stored_ids(data_dir: Path) -> set[str]:
    return {event["messageId"] for event in read_events(data_dir)}


# ---------------------------------------------------------------- sending


def post(
    session: requests.Session, collector, path: str, body: bytes, headers: dict | None = None, key: str = KEY
) -> requests.Response:
    headers = {"X-Write-Key": key, **(headers or {})}
    return session.post(collector.url + path, data=body, headers=headers, timeout=TIMEOUT)


def raw_exchange(port: int, request: bytes, timeout: float = TIMEOUT) -> tuple[int, dict, bytes]:
    """Send bytes as they are on a fresh connection; the first answer (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def raw_post(path: bytes, body: bytes, headers: bytes = b"", length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n"
        + b"X-Write-Key: " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
        + headers + b"Content-Length: " + str(length).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def read_answer(sock: socket.socket, path: str) -> int:
    """The status of the answer on an open connection, checked as documented."""
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    check_answer(answer.status, answer.getheader("Content-Type", ""), answer.read(), path)
    return answer.status


def check_raw(port: int, path: str, request: bytes) -> tuple[int, bytes]:
    """A raw request: never a 5xx; a JSON answer matches its schema (the HTTP parser's 400s are text)."""
    status, headers, body = raw_exchange(port, request)
    assert status < 500, (status, body[:300])
    if headers.get("content-type", "").startswith("application/json") and path in INGEST_PATHS:
        check_answer(status, headers["content-type"], body, path)
    return status, body


# ---------------------------------------------------------------- strategies

NASTY_STRINGS = [
    "", " ", "\x00", "a\x00b", "\ud800", "\udfff", "\udc00\ud800", "\ud83d\ude00", MARKER, "\ufeff", "\u2028\u2029",
    "%s%n%x", "'\"\\", "null", "track", "identify", "alias", "NaN", "-0", "1e999", "0" * 400, "é" * 300,
    "2026-11-28T13:04:05.678Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+14:00", "2026-02-30T00:00:00Z",
    "2026-11-28T13:04:05+99:99", "2026-11-28 13:04:05", "20261128T130405Z", "now", "\n", "\r\n", "\t", "\x7f",
]  # fmt: skip
ADDRESSES = ["198.51.100.7", "203.0.113.9:443", "::1", "2001:db8::1", "[2001:db8::1]:443", "::ffff:1.2.3.4",
             "fe80::1%eth0", "999.1.1.1", "1.2.3", "not an address", "0.0.0.0", "255.255.255.255"]  # fmt: skip
HUGE_NUMBERS = [10**400, -(10**400), 2**64, -(2**63) - 1, 2**63, 1e308, -1e308, 5e-324, float("inf"), float("nan")]

strings = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=24),  # surrogates included
    st.sampled_from(NASTY_STRINGS),
    st.integers(1_000, 40_000).map(lambda n: "x" * n),
)
numbers = st.one_of(st.integers(), st.floats(), st.sampled_from(HUGE_NUMBERS))
keys = st.one_of(st.sampled_from(FIELDS), strings)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
)
timestamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.tuples(st.datetimes(), st.integers(-1439, 1439)).map(
        lambda t: t[0].isoformat() + ("-" if t[1] < 0 else "+") + f"{abs(t[1]) // 60:02d}:{abs(t[1]) % 60:02d}"
    ),
    st.sampled_from(NASTY_STRINGS),
)
valid_field_values = {
    "userId": st.one_of(st.text(min_size=1, max_size=20), st.integers()),
    "anonymousId": st.uuids().map(str),
    "groupId": st.text(min_size=1, max_size=20),
    "previousId": st.text(min_size=1, max_size=20),
    "event": st.text(min_size=1, max_size=30),
    "name": st.text(max_size=30),
    "properties": st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    "context": st.dictionaries(
        st.sampled_from(["page", "library", "ip", "userAgent", "locale"]),
        json_values | st.sampled_from(ADDRESSES + ["Googlebot/2.1 (+http://www.google.com/bot.html)"]),
        max_size=3,
    ),
    "timestamp": timestamps,
    "originalTimestamp": timestamps,
    "sentAt": timestamps,
}


def base_message(kind: str) -> dict:
    """A valid message of this type, with a fresh messageId."""
    message = {"type": kind, "userId": "user-1", "anonymousId": "anon-1", "messageId": str(uuid.uuid4())}
    message.update({"track": {"event": "Fuzzed"}, "group": {"groupId": "g-1"}, "alias": {"previousId": "old-1"}}.get(kind, {}))
    return message


@st.composite
def messages(draw, kind: str | None = None) -> dict:
    """A message of ``kind`` (any if None) with a few fields removed, retyped or set to nasty values."""
    message = base_message(kind or draw(st.sampled_from(TYPES)))
    for field in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=5)):
        how = draw(st.sampled_from(["delete", "any", "valid"]))
        if how == "delete":
            message.pop(field, None)
        elif how == "valid" and field in valid_field_values:
            message[field] = draw(valid_field_values[field])
        else:
            message[field] = draw(json_values)
    message.update(draw(st.dictionaries(strings, json_values, max_size=2)))
    return message


@st.composite
def bodies(draw, path: str):
    """A JSON value for ``path``: mostly a (batch of) message(s), sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    if path in SINGLE_PATHS:
        return draw(messages(draw(st.sampled_from([SINGLE_PATHS[path], None]))))
    body = {"batch": draw(st.lists(messages(), max_size=6)) if draw(st.integers(0, 9)) else draw(json_values)}
    for field, values in (("context", valid_field_values["context"] | json_values), ("sentAt", timestamps), ("writeKey", strings)):
        if draw(st.booleans()):
            body[field] = draw(values)
    return body


def encode(value, ascii_only: bool) -> bytes:
    """JSON text, lone surrogates and all: as \\ud800 escapes, or as the (invalid UTF-8) bytes themselves."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


content_types = st.sampled_from(
    [None, "application/json", "text/plain", "text/plain;charset=UTF-8", "application/json; charset=utf-16", "TEXT/PLAIN"]
)


@st.composite
def transports(draw, body: bytes) -> tuple[bytes, dict]:
    """The body as sent (maybe gzipped) with its headers."""
    headers = {}
    content_type = draw(content_types)
    if content_type is not None:
        headers["Content-Type"] = content_type
    if draw(st.integers(0, 4)) == 0:
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "GZIP", "Gzip"]))
    if draw(st.integers(0, 9)) == 0:
        headers["Origin"] = draw(st.sampled_from([ORIGIN, "https://evil.example", "null", MARKER]))
    return body, headers


# ---------------------------------------------------------------- property tests


@fuzz_settings(400)
@given(data=st.data())
def test_any_message_on_any_ingest_path(collector, session, healthy, data):
    """Random messages (wrong types in every field, nasty strings, huge numbers) and random JSON."""
    path = data.draw(st.sampled_from(INGEST_PATHS), label="path")
    value = data.draw(bodies(path), label="value")
    body = encode(value, ascii_only=data.draw(st.booleans(), label="ascii"))
    sent, headers = data.draw(transports(body), label="transport")
    key = data.draw(st.sampled_from(KEYS), label="key")
    answer = check_response(post(session, collector, path, sent, headers, key), path)
    batch = value.get("batch") if isinstance(value, dict) and path not in SINGLE_PATHS else None
    if answer.get("success") and isinstance(batch, list):  # every message is accounted for, once
        indexes = [r["index"] for r in answer["rejected"]]
        assert answer["accepted"] + len(indexes) == len(batch) and len(set(indexes)) == len(indexes), answer
        assert all(0 <= i < len(batch) for i in indexes), answer
    if path in SINGLE_PATHS and answer.get("accepted") and isinstance(value, dict) and key != NOIP_KEY:
        message_id = value.get("messageId")
        if isinstance(message_id, str) and message_id:  # accepted means durable: checked once the test ends
            ACCEPTED.add(message_id)


WRONG_VALUES = [None, True, False, 0, -1.5, 1e308, "", "x", " ", [], [1, "a"], {}, {"a": {"b": []}}]


@pytest.mark.parametrize("field", FIELDS)
def test_every_type_in_every_field(collector, session, healthy, field):
    """Each known field set to each JSON type, in each kind of message, alone and in a batch."""
    batch, key = [], KEYS[FIELDS.index(field) % len(KEYS)]
    for kind in TYPES:
        for value in WRONG_VALUES:
            message = {**base_message(kind), field: value}
            batch.append(message)
            answer = check_response(post(session, collector, "/v1/" + kind, orjson.dumps(message), key=key), "/v1/" + kind)
            assert answer.get("code") != "invalid_message", (field, value, answer)  # nothing here is nested deep
            if answer.get("accepted") and key != NOIP_KEY:
                ACCEPTED.add(message["messageId"] if isinstance(message.get("messageId"), str) else "")
    answer = check_response(post(session, collector, "/v1/batch", orjson.dumps({"batch": batch}), key=key), "/v1/batch")
    assert answer["accepted"] + len(answer["rejected"]) == len(batch)
    assert all(r["code"] != "invalid_message" for r in answer["rejected"]), answer
    ACCEPTED.discard("")  # a message whose messageId was the field under test: generated, not known here


def _mutate(data, body: bytes) -> bytes:
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(body)), label="at")
        how = data.draw(st.sampled_from(["insert", "delete", "replace", "truncate", "duplicate"]), label="how")
        piece = data.draw(
            st.sampled_from([b"\x00", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\\ud800", b"\\u0000", b'"', b"\\", b"{",
                             b"[", b"]", b"}", b",", b":", b'"userId":{},', b"1e400", b"-", b"NaN", b"\xef\xbb\xbf"])
            | st.binary(min_size=1, max_size=8),
            label="piece",
        )  # fmt: skip
        if how == "insert":
            body = body[:at] + piece + body[at:]
        elif how == "delete":
            body = body[:at] + body[at + data.draw(st.integers(1, 16), label="n") :]
        elif how == "replace":
            body = body[:at] + piece + body[at + len(piece) :]
        elif how == "truncate":
            body = body[:at]
        else:
            body = body[:at] + body[at : at + 32] + body[at:]
    return body


@fuzz_settings(400)
@given(data=st.data())
def test_mutated_json_bodies(collector, session, healthy, data):
    """Valid bodies with bytes inserted, deleted, replaced, truncated or repeated."""
    path = data.draw(st.sampled_from(INGEST_PATHS), label="path")
    kind = SINGLE_PATHS.get(path)
    value = base_message(kind) if kind else {"batch": [base_message(k) for k in TYPES], "context": {"ip": "198.51.100.7"}}
    body = _mutate(data, orjson.dumps(value))
    sent, headers = data.draw(transports(body), label="transport")
    check_response(post(session, collector, path, sent, headers, data.draw(st.sampled_from(KEYS), label="key")), path)


@fuzz_settings(150)
@given(path=st.sampled_from(INGEST_PATHS), body=st.binary(max_size=4096), data=st.data())
def test_random_bytes(collector, session, healthy, path, body, data):
    """Arbitrary bytes, plain or labelled gzip (most of which is not gzip at all)."""
    sent, headers = data.draw(transports(body), label="transport")
    if data.draw(st.booleans(), label="claims gzip"):
        headers["Content-Encoding"] = "gzip"
    check_response(post(session, collector, path, sent, headers), path)


header_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@fuzz_settings(200)
@given(path=st.sampled_from(INGEST_PATHS + ["/v1/pixel.gif"]), data=st.data())
def test_hostile_headers_and_query(collector, healthy, path, data):
    """Bytes that are not UTF-8 (or not anything) in every header the collector reads, and the query."""
    names = data.draw(
        st.lists(st.sampled_from([b"X-Write-Key", b"Authorization", b"User-Agent", b"Origin", b"X-Forwarded-For",
                                  b"Content-Type", b"Content-Encoding", b"If-None-Match"]), unique=True, min_size=1),
        label="headers",
    )  # fmt: skip
    headers = b""
    for name in names:
        value = data.draw(header_bytes | st.sampled_from([b"Basic \xff\xfe", b"Basic " + base64.b64encode(b"\xff:"),
                                                          ", ".join(ADDRESSES).encode(), b"198.51.100.7, 127.0.0.1",
                                                          b"Basic " + base64.b64encode(KEY.encode() + b":"), b"gzip"]))
        headers += name + b": " + value + b"\r\n"  # fmt: skip
    query = data.draw(st.binary(max_size=60).map(lambda b: b.replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b"")))
    target = path.encode() + b"?writeKey=" + KEY.encode() + b"&data=" + query
    body = orjson.dumps(base_message(SINGLE_PATHS.get(path, "track")))
    if path == "/v1/pixel.gif":
        request = b"GET " + target + b" HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n" + headers + b"\r\n"
    else:
        request = (b"POST " + target + b" HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n" + headers
                   + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    status, answer = check_raw(collector.port, path, request)
    assert MARKER.encode() not in answer
    if path == "/v1/pixel.gif" and status == 200:
        assert answer.startswith(b"GIF89a")


@fuzz_settings(150)
@given(value=json_values | messages(), data=st.data())
def test_pixel_always_answers_the_gif(collector, session, healthy, value, data):
    """Whatever base64url data (or not base64 at all) the pixel gets, the answer is the GIF."""
    encoded = base64.urlsafe_b64encode(encode(value, data.draw(st.booleans()))).decode().rstrip("=")
    encoded = data.draw(st.sampled_from([encoded, encoded[:-3], encoded + "!!", "%%%", "=" * 5]), label="data")
    params = {"data": encoded, "writeKey": data.draw(st.sampled_from([KEY, "", "wk_nope", MARKER]))}
    answer = session.get(collector.url + "/v1/pixel.gif", params=params, timeout=TIMEOUT)
    if len(answer.request.path_url) > REQUEST_LINE_LIMIT - 100:  # the HTTP layer may refuse it before the pixel
        assert answer.status_code in (200, 400) and MARKER.encode() not in answer.content
        assert answer.status_code == 400 or len(answer.request.path_url) < REQUEST_LINE_LIMIT + 100
        return
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/gif", answer.content[:200]
    assert answer.content.startswith(b"GIF89a")


# ---------------------------------------------------------------- edge cases, on every ingest path


def deep(levels: int, leaf: bytes = b"1") -> bytes:
    return b"[" * levels + leaf + b"]" * levels


def deep_object(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def message(**fields: bytes) -> bytes:
    """A valid track message's JSON with ``fields`` (raw JSON text) added or replacing its own."""
    base = {"type": b'"track"', "userId": b'"u"', "event": b'"E"', "messageId": b'"' + str(uuid.uuid4()).encode() + b'"'}
    base.update(fields)
    return b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in base.items()) + b"}"


def kind_of(path: str) -> bytes:
    return b'"' + SINGLE_PATHS.get(path, "track").encode() + b'"'


def as_message(path: str, **fields: bytes) -> bytes:
    """A message with ``fields`` as a body for ``path``: alone, or as the only message of a batch."""
    extra = {"groupId": b'"g"', "previousId": b'"p"'}
    text = message(**{"type": kind_of(path), **extra, **fields})
    return text if path in SINGLE_PATHS else b'{"batch":[' + text + b"]}"


# name -> body for a path; expected statuses for single-message paths and for batch paths (None: any documented).
EDGE_CASES = {
    "deep-array-body": (lambda p: deep(1000), {400}, {400}),
    "deep-properties": (lambda p: as_message(p, properties=b'{"p":' + deep(1000) + b"}"), {400}, {200}),
    "deep-object-context": (lambda p: as_message(p, context=deep_object(1000)), {400}, {200}),
    "deep-merged-contexts": (
        lambda p: b'{"context":' + deep_object(1000) + b',"batch":[' + message(context=deep_object(1000)) + b"]}",
        {400}, {200},
    ),
    "nesting-just-storable": (lambda p: as_message(p, properties=b'{"p":' + deep(200) + b"}"), {200}, {200}),
    "huge-float": (lambda p: as_message(p, properties=b'{"n":1e400}'), {400}, {400}),
    "huge-negative-float": (lambda p: as_message(p, properties=b'{"n":-1e400}'), {400}, {400}),
    "tiny-float": (lambda p: as_message(p, properties=b'{"n":1e-400}'), {200}, {200}),
    "huge-int": (lambda p: as_message(p, properties=b'{"n":' + b"9" * 400 + b"}"), None, None),
    "huge-int-user-id": (lambda p: as_message(p, userId=b"123456789012345678901234567890"), {200}, {200}),
    "nan-token": (lambda p: as_message(p, properties=b'{"n":NaN}'), {400}, {400}),
    "lone-high-surrogate": (lambda p: as_message(p, properties=b'{"s":"\\ud800"}'), {400}, {400}),
    "lone-low-surrogate": (lambda p: as_message(p, event=b'"\\udc00"'), {400}, {400}),
    "reversed-surrogates": (lambda p: as_message(p, userId=b'"\\udc00\\ud800"'), {400}, {400}),
    "surrogate-in-key": (lambda p: as_message(p, properties=b'{"\\ud800":1}'), {400}, {400}),
    "valid-surrogate-pair": (lambda p: as_message(p, properties=b'{"s":"\\ud83d\\ude00"}'), {200}, {200}),
    "invalid-utf8": (lambda p: as_message(p, properties=b'{"s":"\xff\xfe"}'), {400}, {400}),
    "overlong-utf8": (lambda p: as_message(p, properties=b'{"s":"\xc0\xaf"}'), {400}, {400}),
    "encoded-surrogate-utf8": (lambda p: as_message(p, properties=b'{"s":"\xed\xa0\x80"}'), {400}, {400}),
    "truncated-utf8": (lambda p: as_message(p, properties=b'{"s":"\xe2\x82"}'), {400}, {400}),
    "raw-nul-in-string": (lambda p: as_message(p, properties=b'{"s":"a\x00b"}'), {400}, {400}),
    "escaped-nul": (lambda p: as_message(p, properties=b'{"s\\u0000":"a\\u0000b"}', anonymousId=b'"\\u0000"'), {200}, {200}),
    "nul-after-body": (lambda p: as_message(p) + b"\x00", {400}, {400}),
    "long-string-under-32k": (lambda p: as_message(p, properties=b'{"s":"' + b"x" * 30_000 + b'"}'), {200}, {200}),
    "long-string-over-32k": (lambda p: as_message(p, properties=b'{"s":"' + b"x" * 40_000 + b'"}'), {413}, {200}),
    "long-string-over-500k": (lambda p: as_message(p, properties=b'{"s":"' + b"x" * 600_000 + b'"}'), {413}, {413}),
    "long-key": (lambda p: as_message(p, properties=b'{"' + b"k" * 30_000 + b'":1}'), {200}, {200}),
    "long-id": (lambda p: as_message(p, userId=b'"' + b"u" * 5_000 + b'"'), {400}, {200}),
    "many-keys": (lambda p: as_message(p, properties=b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(1500)) + b"}"), {200}, {200}),
    "duplicate-keys-last-wins": (lambda p: as_message(p, userId=b'"a","userId":{"x":1}'), {400}, {200}),
    "duplicate-type": (lambda p: as_message(p, type=kind_of(p) + b',"type":"teleport"'), {400}, {200}),
    "duplicate-batch": (lambda p: b'{"batch":[' + message() + b'],"batch":7}', {200, 400}, {400}),
    "bom": (lambda p: b"\xef\xbb\xbf" + as_message(p), {400}, {400}),
    "empty": (lambda p: b"", {400}, {400}),
    "whitespace": (lambda p: b" \t\r\n ", {400}, {400}),
    "null": (lambda p: b"null", {400}, {400}),
    "string": (lambda p: b'"track"', {400}, {400}),
    "two-objects": (lambda p: as_message(p) + as_message(p), {400}, {400}),
    "trailing-garbage": (lambda p: as_message(p) + b"x", {400}, {400}),
    "single-quotes": (lambda p: b"{'userId':'u','event':'E'}", {400}, {400}),
    "comment": (lambda p: b"// hi\n" + as_message(p), {400}, {400}),
    "marker-everywhere": (
        lambda p: as_message(p, **{"type": b'"' + MARKER.encode() + b'"', "timestamp": b'"' + MARKER.encode() + b'"'}),
        {400}, {200},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_case_on_every_ingest_path(collector, session, healthy, name):
    """Deep nesting, huge numbers, lone surrogates, invalid UTF-8, NUL bytes, long strings and keys,
    duplicate keys, not-JSON: a documented answer on each path, and what is accepted is stored."""
    build, single, batch = EDGE_CASES[name]
    for path in INGEST_PATHS:
        body = build(path)
        answer = post(session, collector, path, body, {"Content-Type": "application/json"})
        expected = single if path in SINGLE_PATHS else batch
        if expected is not None:
            assert answer.status_code in expected, (name, path, answer.status_code, answer.content[:300])
        reply = check_response(answer, path)
        if answer.status_code == 200 and reply["accepted"]:
            message_id = re.search(rb'"messageId":"([0-9a-f-]{36})"', body)
            assert message_id, (name, path)
            ACCEPTED.add(message_id.group(1).decode())


def test_hostile_requests_in_parallel(collector, healthy):
    """Eight clients at once sending every edge case to every path, beside two that never finish their
    bodies: every request answered as documented (none outlasts its timeout), the two liars a 408."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(name, path) for name in EDGE_CASES for path in INGEST_PATHS]

    def send(job) -> None:
        name, path = job
        with requests.post(collector.url + path, data=EDGE_CASES[name][0](path), timeout=TIMEOUT,
                           headers={"X-Write-Key": KEY, "Content-Type": "application/json"}) as answer:  # fmt: skip
            check_response(answer, path)

    liars = [socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) for _ in range(2)]
    try:
        for liar in liars:
            liar.sendall(raw_post(b"/v1/batch", b'{"batch":[', length=400_000))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, jobs))
        for liar in liars:
            assert read_answer(liar, "/v1/batch") == 408
    finally:
        for liar in liars:
            liar.close()


def test_escaped_nul_and_surrogate_pairs_are_stored_as_sent(collector, session, healthy):
    message_id = str(uuid.uuid4())
    body = message(messageId=b'"' + message_id.encode() + b'"', properties=b'{"s":"a\\u0000b","e":"\\ud83d\\ude00"}')
    assert post(session, collector, "/v1/track", body, {"Content-Type": "application/json"}).status_code == 200
    [event] = [e for e in read_events(collector.data_dir) if e["messageId"] == message_id]
    assert event["properties"] == {"s": "a\x00b", "e": "\U0001f600"}


def test_null_ids_are_absent(collector, session, healthy):
    """A message whose only ids are null is missing_id; a group or alias with a null id is not stored."""
    cases = [
        ("/v1/track", {"userId": None, "anonymousId": None, "event": "E"}, "missing_id"),
        ("/v1/group", {"userId": "u", "groupId": None}, "missing_group_id"),
        ("/v1/alias", {"userId": "u", "previousId": None}, "missing_previous_id"),
    ]
    for path, value, code in cases:
        answer = post(session, collector, path, orjson.dumps(value))
        assert answer.status_code == 400 and check_response(answer, path)["code"] == code


def test_absurd_clock_skew_still_stores_an_iso_timestamp(collector, session, healthy):
    message_id = str(uuid.uuid4())
    value = {"userId": "u", "event": "E", "messageId": message_id,
             "sentAt": "9999-12-31T23:59:59Z", "originalTimestamp": "0001-01-01T00:00:00Z"}  # fmt: skip
    assert post(session, collector, "/v1/track", orjson.dumps(value)).status_code == 200
    [event] = [e for e in read_events(collector.data_dir) if e["messageId"] == message_id]
    assert event["timestamp"] == "0001-01-01T00:00:00.000Z"


# ---------------------------------------------------------------- bodies that lie about length or encoding


def test_content_length_larger_than_the_body_times_out_without_blocking_others(collector, healthy):
    """The body never comes: 408 after the read deadline; meanwhile other clients are answered.

    Others are sent one after another until the liar's 408 is there: a server that the liar
    blocked would answer none of them before it (counted, not timed).
    """
    body = as_message("/v1/track")
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as liar:
        liar.sendall(raw_post(b"/v1/track", body, length=len(body) + 100))
        answered_meanwhile = 0
        for _ in range(1000):
            assert check_raw(collector.port, "/v1/track", raw_post(b"/v1/track", as_message("/v1/track")))[0] == 200
            if select.select([liar], [], [], 0)[0]:  # the 408 had come (or was on its way) already
                break
            answered_meanwhile += 1
        assert answered_meanwhile > 0, "no other client was answered while the liar's body was awaited"
        assert read_answer(liar, "/v1/track") == 408


def test_content_length_larger_then_the_client_leaves(collector, healthy):
    """A client that closes mid-body: nothing stored, nothing logged as an error, the next request fine."""
    for path in INGEST_PATHS:
        body = as_message(path)
        with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as liar:
            liar.sendall(raw_post(path.encode(), body, length=len(body) + 1000))
        assert check_raw(collector.port, path, raw_post(path.encode(), as_message(path)))[0] == 200


@pytest.mark.parametrize(
    "name, request_for",
    [
        ("content-length-smaller", lambda p, b: raw_post(p, b, length=len(b) // 2)),
        ("content-length-zero", lambda p, b: raw_post(p, b, length=0)),
        ("content-length-negative", lambda p, b: raw_post(p, b, length=-5)),
        ("content-length-huge", lambda p, b: raw_post(p, b, length=10**15)),
        ("content-length-not-a-number", lambda p, b: raw_post(p, b).replace(b"Content-Length: ", b"Content-Length: 1e3")),
        ("two-content-lengths", lambda p, b: raw_post(p, b, headers=b"Content-Length: %d\r\n" % (len(b) + 1))),
        ("content-length-and-chunked", lambda p, b: raw_post(p, b"%x\r\n%s\r\n0\r\n\r\n" % (len(b), b), headers=b"Transfer-Encoding: chunked\r\n")),
        ("bad-chunk-size", lambda p, b: raw_post(p, b"zz\r\n" + b + b"\r\n0\r\n\r\n", headers=b"Transfer-Encoding: chunked\r\n").replace(b"Content-Length", b"X-Length")),
        ("chunk-size-lies", lambda p, b: raw_post(p, b"%x\r\n%s\r\n0\r\n\r\n" % (len(b) - 5, b), headers=b"Transfer-Encoding: chunked\r\n").replace(b"Content-Length", b"X-Length")),
        ("chunked-ok", lambda p, b: raw_post(p, b"%x\r\n%s\r\n0\r\n\r\n" % (len(b), b), headers=b"Transfer-Encoding: chunked\r\n").replace(b"Content-Length", b"X-Length")),
    ],
)  # fmt: skip
def test_framing_that_lies(collector, healthy, name, request_for):
    """Wrong, duplicate, negative, huge or missing lengths, chunked framing: a 4xx or a 200, never a 5xx or a hang."""
    for path in INGEST_PATHS:  # a hang is a socket timeout (TIMEOUT) in check_raw
        status, _ = check_raw(collector.port, path, request_for(path.encode(), as_message(path)))
        if name == "chunked-ok":
            assert status == 200


GZIP_CASES = {
    "plain-bytes-labelled-gzip": (lambda b: b, "gzip", {400}),
    "truncated-gzip": (lambda b: gzip.compress(b)[:-10], "gzip", {400}),
    "gzip-header-only": (lambda b: gzip.compress(b)[:10], "gzip", {400}),
    "corrupt-gzip": (lambda b: gzip.compress(b)[:12] + b"\xff" * 8 + gzip.compress(b)[20:], "gzip", {400}),
    "zlib-not-gzip": (lambda b: zlib.compress(b), "gzip", {400}),
    "gzip-of-gzip": (lambda b: gzip.compress(gzip.compress(b)), "gzip", {400}),
    "gzip-then-garbage": (lambda b: gzip.compress(b) + b"garbage", "gzip", None),
    "two-gzip-members": (lambda b: gzip.compress(b) + gzip.compress(b), "gzip", None),
    "gzip-bomb-50MB": (lambda b: bomb(b"\0" * 50_000_000), "gzip", {413}),
    "gzip-bomb-of-json": (lambda b: bomb(b'{"batch":[' + b'{"type":"track","userId":"u","event":"E"},' * 200_000 + b"1]}"), "gzip", {413}),
    "deflate": (lambda b: zlib.compress(b), "deflate", {415}),
    "br": (lambda b: b, "br", {415}),
    "gzip-twice-declared": (lambda b: gzip.compress(gzip.compress(b)), "gzip, gzip", {415}),
    "identity": (lambda b: b, "identity", {200}),
    "gzip-upper-case": (lambda b: gzip.compress(b), "GZIP", {200}),
}


@functools.cache
def bomb(inflated: bytes) -> bytes:
    return gzip.compress(inflated, compresslevel=9)


@pytest.mark.parametrize("name", list(GZIP_CASES))
def test_bodies_that_lie_about_their_encoding(collector, session, healthy, name):
    """gzip that is not gzip, is truncated, corrupt, nested, or inflates to far more than 500 KB."""
    transform, encoding, expected = GZIP_CASES[name]
    for path in INGEST_PATHS:  # a bomb is a 413 (inflating stops at the cap), a hang a request timeout
        answer = post(session, collector, path, transform(as_message(path)), {"Content-Type": "application/json", "Content-Encoding": encoding})
        if expected is not None:
            assert answer.status_code in expected, (name, path, answer.status_code, answer.content[:200])
        check_response(answer, path)
