"""The HTTP contract: a live collector answers exactly as its OpenAPI document says.

The document, collector/static/openapi.json, is written by scripts/openapi.py (change the API
there and run it); the first test checks the two agree and that the document is valid OpenAPI.

Schemathesis reads the shipped document (the second test checks that a running collector serves
exactly it), generates requests for every operation (schema-valid ones, and
schema-violating ones that must be turned away cleanly), sends them with each way of passing
the write key (and with none, or a wrong one), and checks every answer: never a 5xx, only
documented status codes, content types and headers, bodies that match their schemas, and
every schema-valid request with a valid key accepted.

Checks left out, on purpose: ``negative_data_rejection`` (a batch answers 200 and lists each
invalid message under ``rejected``, and a body's ``writeKey`` is ignored when a header carries
the key: both are the documented contract, not schema violations to refuse).

The privacy API (tag ``privacy``) is fuzzed with the access token like the Profile API, its
GETs only: a schema-valid POST /v1/regulations is a real suppression or erasure (the erasure
rewrites every segment, the example person's too), so that operation is left out of the fuzz
and checked by the explicit tests at the end, each answer validated against the document.

Examples per operation: 25 and 15 (plus schemathesis's boundary-value coverage cases in the
first test); set ``INTILERY_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from helpers import CollectorProcess, wait_until
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from collector.api import MAX_ID_CHARS, MAX_SUBJECTS, PRIVACY_ERRORS, PROFILE_ERRORS
from collector.privacy.regulations import TYPES
from collector.privacy.subjects import SUBJECT_TYPES
from tests.hardening.conftest import fuzz_settings

KEY = "wk_contract"
TOKEN = "at_contract"  # the access token: what the Profile API's operations need (never a write key)
PERSON = "u-contract"  # the document's example profile (scripts/openapi.py EXAMPLE_PROFILE)
NOBODY = "u-contract-nobody"  # suppressed by the fixture and the explicit tests: no message ever names them
CREATE = "createRegulation"  # POST /v1/regulations: not fuzzed (see the module docstring)
AUTH_MODES = ["basic", "header", "body", "query", "none", "wrong"]  # how the write key is sent, if at all
VALID = frozenset({"basic", "header", "body", "query"})

CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # A schema-valid request with a valid key is accepted: 2xx (or 304 for a cached tag), nothing else.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "304"]},
            "negative_data_rejection": {"enabled": False},
        },
        "request-timeout": 15,  # a hang fails the run instead of stalling it
    }
)


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("contract")
    with CollectorProcess(workdir, sources=[{"name": "web", "write_key": KEY}], access_token=TOKEN) as running:
        requests.post(running.url + "/v1/identify", json={"userId": PERSON, "traits": {"plan": "pro"}},
                      headers={"X-Write-Key": KEY}, timeout=10).raise_for_status()  # fmt: skip
        traits = f"{running.url}/v1/spaces/default/collections/users/profiles/user_id:{PERSON}/traits"
        wait_until(lambda: requests.get(traits, headers=READ, timeout=10).status_code == 200, timeout=30,
                   what="the example profile")  # fmt: skip
        # one request on record, so the fuzzed GET /v1/regulations answers a list with a status object in it
        requests.post(running.url + "/v1/regulations", headers=READ, timeout=30, json={
            "regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": [NOBODY]}).raise_for_status()  # fmt: skip
        yield running
    log = running.log.read_text()
    assert "Traceback" not in log, f"the collector logged an exception:\n{log[-4000:]}"


# Loaded at collection time from the package, not through a fixture: schemathesis's lazy
# fixture loader breaks on pytest 9.2 ('Function' object has no attribute '_nodeid').
DOCUMENT = resources.files("collector").joinpath("static/openapi.json")
schema = schemathesis.openapi.from_path(str(DOCUMENT), config=CONFIG)


def test_the_document_is_valid_openapi_and_generated():
    """The shipped document is valid OpenAPI 3.1, and exactly what scripts/openapi.py writes."""
    from openapi_spec_validator import validate

    validate(json.loads(DOCUMENT.read_text()))
    script = Path(__file__).resolve().parents[2] / "scripts" / "openapi.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_collector_serves_the_document(collector):
    with requests.get(collector.url + "/openapi.json", timeout=10) as answer:
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
        assert answer.json() == json.loads(DOCUMENT.read_text())


READ = {"Authorization": f"Bearer {TOKEN}"}


def _profiles(case) -> bool:
    """A Profile, audiences, privacy or destinations API operation: it reads with the access token, and a
    valid path may name nobody (404: a profile, an audience, a regulateId, a destination)."""
    return bool({"profiles", "privacy", "audiences", "destinations", "journeys", "email"} & set(case.operation.tags or []))


def _send_key(case, mode: str) -> dict:
    """Put the write key where ``mode`` says; the extra headers to send."""
    body = case.body if isinstance(case.body, dict) else None
    if mode in ("query", "none", "wrong") and body is not None:
        body.pop("writeKey", None)  # a body key comes before the query: leave only the one under test
    if mode == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    if mode == "header":
        return {"X-Write-Key": KEY}
    if mode == "wrong":
        return {"X-Write-Key": "wk_not_a_source"}
    if mode == "body" and body is not None:
        body["writeKey"] = KEY
    elif mode == "body" or mode == "query":
        case.query = {**(case.query or {}), "writeKey": KEY}
    return {}


def _compat_key(case) -> None:
    """The SDK configuration routes (collector/compat/) name their write key in the path or the query,
    where a generated one is some other source's (a 404): a valid request there carries the source's key."""
    if "writeKey" in (case.path_parameters or {}):
        case.path_parameters["writeKey"] = KEY
    if "writeKey" in (case.query or {}):
        case.query["writeKey"] = KEY


@schema.exclude(operation_id=CREATE).exclude(tag=["console"]).parametrize()  # the console: tests/console
@fuzz_settings(25)
def test_the_collector_answers_as_documented(case, collector):
    """Every phase (explicit examples, boundary coverage, fuzzing), the key in X-Write-Key (the access
    token for the Profile and privacy APIs): no 5xx, as documented."""
    _compat_key(case)
    if _profiles(case):
        case.call_and_validate(base_url=collector.url, headers=READ, excluded_checks=[positive_data_acceptance])
    else:
        case.call_and_validate(base_url=collector.url, headers={"X-Write-Key": KEY})


@schema.exclude(tag=["profiles", "privacy", "audiences", "console", "destinations", "journeys", "email"]).parametrize()
@schema.given(mode=st.sampled_from(AUTH_MODES))
@fuzz_settings(15)
def test_every_way_of_sending_the_write_key(case, mode, collector):
    """Basic, X-Write-Key, body and query keys are accepted alike; nothing is accepted without a valid key."""
    if mode in VALID:
        _compat_key(case)
    headers = _send_key(case, mode)
    excluded = [] if mode in VALID else [positive_data_acceptance]
    response = case.call_and_validate(base_url=collector.url, headers=headers, excluded_checks=excluded)
    if case.method == "POST" and mode not in VALID:
        assert response.status_code != 200, "a message was accepted without a valid write key"


@pytest.mark.parametrize("what", ["traits", "events", "external_ids", "metadata"])
def test_a_write_key_never_reads_a_profile(collector, what):
    """Every Profile API operation, with the write key sent each way ingest takes it, or with nothing: a 401."""
    url = f"{collector.url}/v1/spaces/default/collections/users/profiles/user_id:{PERSON}/{what}"
    for headers, query in [({"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}, {}),
                           ({"Authorization": f"Bearer {KEY}"}, {}), ({"X-Write-Key": KEY}, {}), ({}, {"writeKey": KEY}),
                           ({}, {})]:  # fmt: skip
        with requests.get(url, headers=headers, params=query, timeout=10) as answer:
            assert answer.status_code == 401, (headers, query, answer.text)
    with requests.get(url, headers=READ, timeout=10) as answer:
        assert answer.status_code == 200, answer.text


# --- the privacy API's POST, explicitly (a fuzzed one would suppress or erase for real) ---------
REGISTRY = Registry().with_resource("urn:openapi", Resource.from_contents(json.loads(DOCUMENT.read_text()),
                                                                          default_specification=DRAFT202012))  # fmt: skip
REGULATIONS_PATH = "/v1/regulations"


def _pointer(*parts: str) -> str:
    return "urn:openapi#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _validator(*parts: str) -> Draft202012Validator:
    """The document's schema at ``parts`` (a JSON pointer into it), its $refs resolved in the document."""
    node = json.loads(DOCUMENT.read_text())
    for at, part in enumerate(parts):
        assert isinstance(node, dict) and part in node, f"the document has no {'/'.join(parts[:at + 1])}"
        node = node[part]
    return Draft202012Validator({"$ref": _pointer(*parts)}, registry=REGISTRY)


def _answer_schema(path: str, method: str, status: int, content: str = "application/json") -> Draft202012Validator:
    return _validator("paths", path, method, "responses", str(status), "content", content, "schema")


def _matches(answer: requests.Response, path: str, method: str) -> dict:
    """The answer's JSON body, once checked against the document's schema for its status."""
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body = answer.json()
    _answer_schema(path, method, answer.status_code).validate(body)
    return body


def _regulations(collector) -> list[dict]:
    with requests.get(collector.url + REGULATIONS_PATH, headers=READ, timeout=10) as answer:
        return _matches(answer, REGULATIONS_PATH, "get")["data"]


def test_a_suppression_is_accepted_as_documented(collector):
    """A valid SUPPRESS (of an id no message names): 202 {regulateId}, then its status and the list, as documented."""
    body = {"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": [NOBODY, NOBODY + "-2"]}
    _validator("paths", REGULATIONS_PATH, "post", "requestBody", "content", "application/json", "schema").validate(body)
    with requests.post(collector.url + REGULATIONS_PATH, json=body, headers=READ, timeout=30) as answer:
        assert answer.status_code == 202, answer.text
        regulate_id = _matches(answer, REGULATIONS_PATH, "post")["regulateId"]
    one = REGULATIONS_PATH + "/{regulateId}"
    with requests.get(f"{collector.url}{REGULATIONS_PATH}/{regulate_id}", headers=READ, timeout=10) as answer:
        assert answer.status_code == 200, answer.text
        status = _matches(answer, one, "get")
    assert (status["regulateId"], status["regulationType"], status["subjectType"], status["subjects"]) == (
        regulate_id, "SUPPRESS", "USER_ID", 2)  # fmt: skip
    assert "subjectHashes" not in status and NOBODY not in answer.text  # never the identifiers, nor their hashes
    assert regulate_id in [r["regulateId"] for r in _regulations(collector)]
    with requests.get(f"{collector.url}{REGULATIONS_PATH}/reg_{'0' * 24}", headers=READ, timeout=10) as answer:
        assert answer.status_code == 404 and _matches(answer, one, "get")["code"] == "regulation_not_found"


BAD_BODIES = {
    "not JSON": (b"{not json", "invalid_regulation"),
    "not an object": ([{"regulationType": "SUPPRESS"}], "invalid_regulation"),
    "no regulationType": ({"subjectType": "USER_ID", "subjectIds": [NOBODY]}, "invalid_regulation"),
    "unknown regulationType": ({"regulationType": "FORGET", "subjectType": "USER_ID", "subjectIds": [NOBODY]}, "invalid_regulation"),
    "unknown subjectType": ({"regulationType": "SUPPRESS", "subjectType": "PHONE", "subjectIds": [NOBODY]}, "invalid_regulation"),
    "subjectIds not an array": ({"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": NOBODY}, "invalid_regulation"),
    "no subjectIds": ({"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": []}, "too_many_subjects"),
    "too many subjectIds": ({"regulationType": "SUPPRESS", "subjectType": "USER_ID",
                             "subjectIds": [f"{NOBODY}-{i}" for i in range(MAX_SUBJECTS + 1)]}, "too_many_subjects"),
    "a subjectId too long": ({"regulationType": "SUPPRESS", "subjectType": "USER_ID",
                              "subjectIds": ["x" * (MAX_ID_CHARS + 1)]}, "invalid_regulation"),
    "an empty subjectId": ({"regulationType": "SUPPRESS", "subjectType": "EMAIL", "subjectIds": ["  "]}, "invalid_regulation"),
    "a subjectId not a string": ({"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": [42]}, "invalid_regulation"),
}  # fmt: skip


@pytest.mark.parametrize("what", BAD_BODIES)
def test_each_bad_regulation_body_gets_its_documented_400(collector, what):
    """Each malformed body: a 400 with the code the document lists, and the document's body schema refuses it too;
    no request is recorded."""
    body, code = BAD_BODIES[what]
    assert PRIVACY_ERRORS[code].status == 400
    if not isinstance(body, bytes):
        assert not _validator("paths", REGULATIONS_PATH, "post", "requestBody", "content", "application/json",
                              "schema").is_valid(body), f"the document's body schema accepts {what}"  # fmt: skip
    before = len(_regulations(collector))
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**READ, "Content-Type": "application/json"}
    with requests.post(collector.url + REGULATIONS_PATH, data=data, headers=headers, timeout=30) as answer:
        assert answer.status_code == 400, answer.text
        assert _matches(answer, REGULATIONS_PATH, "post")["code"] == code
    assert len(_regulations(collector)) == before


def _write_key_ways() -> list[tuple[dict, dict]]:
    basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    return [({}, {}), ({"Authorization": basic}, {}), ({"Authorization": f"Bearer {KEY}"}, {}), ({"X-Write-Key": KEY}, {}),
            ({}, {"writeKey": KEY}), ({"Authorization": "Bearer at_not_the_token"}, {})]  # fmt: skip


def test_the_privacy_api_needs_the_access_token(collector):
    """No token, a write key sent each way ingest takes it, or a wrong token: a documented 401 from every
    privacy operation, and nothing recorded. The token as Basic user name works as Bearer does."""
    body = {"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": [NOBODY]}
    export = "/v1/spaces/{space}/collections/users/profiles/{profile}/export"
    calls = [("post", REGULATIONS_PATH, REGULATIONS_PATH), ("get", REGULATIONS_PATH, REGULATIONS_PATH),
             ("get", REGULATIONS_PATH + "/{regulateId}", f"{REGULATIONS_PATH}/reg_{'0' * 24}"),
             ("get", export, f"/v1/spaces/default/collections/users/profiles/user_id:{PERSON}/export")]  # fmt: skip
    before = len(_regulations(collector))
    for method, documented, url in calls:
        for headers, query in _write_key_ways():
            with requests.request(method, collector.url + url, headers=headers, params=query, timeout=30,
                                  json=body if method == "post" else None) as answer:  # fmt: skip
                assert answer.status_code == 401, (method, url, headers, query, answer.text)
                assert _matches(answer, documented, method)["code"] in ("missing_access_token", "invalid_access_token")
    assert len(_regulations(collector)) == before
    basic = {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()}
    with requests.get(collector.url + REGULATIONS_PATH, headers=basic, timeout=10) as answer:
        assert answer.status_code == 200, answer.text


def test_the_export_is_documented_ndjson(collector):
    """The export of the example person: the content type the document gives, one JSON object a line."""
    path = "/v1/spaces/{space}/collections/users/profiles/{profile}/export"
    operation = json.loads(DOCUMENT.read_text())["paths"][path]["get"]
    url = f"{collector.url}/v1/spaces/default/collections/users/profiles/user_id:{PERSON}/export"
    with requests.get(url, headers=READ, timeout=30) as answer:
        assert answer.status_code == 200, answer.text
        content_type = answer.headers["Content-Type"].split(";")[0]
        assert content_type in operation["responses"]["200"]["content"]
        lines = [json.loads(line) for line in answer.text.splitlines() if line]
    assert lines and all(isinstance(line, dict) for line in lines)
    for status, code in [(404, "unknown_space"), (404, "profile_not_found"), (400, "invalid_profile_id")]:
        assert {**PROFILE_ERRORS, **PRIVACY_ERRORS}[code].status == status
    for wrong, code in [("/v1/spaces/other/collections/users/profiles/user_id:u-contract/export", "unknown_space"),
                        ("/v1/spaces/default/collections/users/profiles/user_id:u-contract-nobody/export", "profile_not_found"),
                        ("/v1/spaces/default/collections/users/profiles/phone:123/export", "invalid_profile_id")]:  # fmt: skip
        with requests.get(collector.url + wrong, headers=READ, timeout=10) as answer:
            assert _matches(answer, path, "get")["code"] == code, answer.text


def test_every_privacy_route_is_documented():
    """The document has each route of collector/api.py PRIVACY_ROUTES, each code of PRIVACY_ERRORS, and the
    request body's limits from the code."""
    document = json.loads(DOCUMENT.read_text())
    text = json.dumps(document)
    for route in ("/v1/regulations", "/v1/regulations/{regulateId}",
                  "/v1/spaces/{space}/collections/users/profiles/{profile}/export"):  # fmt: skip
        assert route in document["paths"], route
    for code in PRIVACY_ERRORS:
        assert f'"{code}"' in text, code
    ids = document["components"]["schemas"]["RegulationRequest"]["properties"]
    assert ids["subjectIds"]["maxItems"] == MAX_SUBJECTS and ids["subjectIds"]["items"]["maxLength"] == MAX_ID_CHARS
    assert ids["regulationType"]["enum"] == list(TYPES) and ids["subjectType"]["enum"] == list(SUBJECT_TYPES)
