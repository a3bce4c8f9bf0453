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
from tests.hardening.conftest import fuzz_settings

KEY = "wk_contract"
TOKEN = "at_contract"  # the access token: what the Profile API's operations need (never a write key)
PERSON = "u-contract"  # the document's example profile (scripts/openapi.py EXAMPLE_PROFILE)
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
    """A Profile API operation: it reads with the access token, and a valid path may name nobody (404)."""
    return "profiles" in (case.operation.tags or [])


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


@schema.parametrize()
@fuzz_settings(25)
def test_the_collector_answers_as_documented(case, collector):
    """Every phase (explicit examples, boundary coverage, fuzzing), the key in X-Write-Key (the access
    token for the Profile API): no 5xx, as documented."""
    _compat_key(case)
    if _profiles(case):
        case.call_and_validate(base_url=collector.url, headers=READ, excluded_checks=[positive_data_acceptance])
    else:
        case.call_and_validate(base_url=collector.url, headers={"X-Write-Key": KEY})


@schema.exclude(tag="profiles").parametrize()
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
