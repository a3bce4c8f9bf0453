"""The console's privacy requests: the privacy API's own functions behind the console's access rule,
and a POST on the session cookie only from the console's own origin (the cookie is SameSite=Strict,
which another origin of the same site, another port of the host, still gets)."""

from __future__ import annotations

import json

import pytest

from collector.privacy.regulations import ENDED
from helpers import wait_until
from tests.console.conftest import TOKEN, call

PATH = "/console/api/regulations"
SUPPRESS = {"regulationType": "SUPPRESS", "subjectType": "USER_ID", "subjectIds": ["u_console_privacy"]}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def session(collector) -> str:
    status, headers, _ = call(collector.url + "/console/signin", data=f"token={TOKEN}".encode(), headers=FORM)
    assert status == 303
    return headers["Set-Cookie"].split(";", 1)[0]


def listed(collector) -> list[dict]:
    status, _, body = call(collector.url + PATH, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    return json.loads(body)["data"]


def post(collector, headers: dict, payload=SUPPRESS):
    status, _, body = call(collector.url + PATH, data=payload, headers=headers)
    return status, json.loads(body)


@pytest.mark.parametrize("authorization", [None, "Bearer at_not_the_token"])
def test_without_the_token_filing_and_listing_answer_401(collector, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    origin = {"Origin": collector.url}
    for method, data in (("GET", None), ("POST", SUPPRESS)):
        status, response, body = call(collector.url + PATH, data=data, headers={**headers, **origin}, method=method)
        assert status == 401, (method, body)
        assert json.loads(body)["code"] == ("missing_access_token" if authorization is None else "invalid_access_token")
        assert "Bearer" in response["WWW-Authenticate"]


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:1"},  # another port of the same host: the same site
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {},  # neither Origin nor Sec-Fetch-Site: not a browser's same-origin request
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
], ids=["other-port", "other-host", "null", "none", "same-site", "cross-site"])  # fmt: skip
def test_a_post_on_the_session_cookie_from_another_origin_is_refused(collector, session, headers):
    before = len(listed(collector))
    status, body = post(collector, {"Cookie": session, **headers})
    assert status == 403 and body["code"] == "cross_origin_request" and body["message"], body
    assert len(listed(collector)) == before


def test_the_console_s_own_origin_files_a_request_the_privacy_api_lists(collector, session):
    status, body = post(collector, {"Cookie": session, "Origin": collector.url})
    assert status == 202, body
    regulate_id = body["regulateId"]
    status, body = post(collector, {"Cookie": session, "Sec-Fetch-Site": "same-origin"})
    assert status == 202, body
    mine = [r for r in listed(collector) if r["regulateId"] == regulate_id]
    assert len(mine) == 1 and mine[0]["regulationType"] == "SUPPRESS" and mine[0]["subjects"] == 1
    # one store, one listing: compared once the jobs have ended (a status moving between the two reads is no difference)
    def all_ended() -> list | None:
        rows = listed(collector)
        return rows if all(r["status"] in ENDED for r in rows) else None

    ended = wait_until(all_ended, timeout=60, what="the requests to end")
    status, _, api = call(f"{collector.url}/v1/regulations", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(api) == {"data": ended}


def test_a_script_with_the_bearer_token_files_without_an_origin(collector):
    status, body = post(collector, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 202 and body["regulateId"].startswith("reg_")


def test_a_bad_request_answers_the_privacy_api_s_code(collector, session):
    bad = {**SUPPRESS, "regulationType": "FORGET"}
    status, body = post(collector, {"Cookie": session, "Origin": collector.url}, bad)
    assert status == 400 and body["code"] == "invalid_regulation" and body["message"].startswith("regulationType is one of")
    status, body = post(collector, {"Cookie": session, "Origin": collector.url}, {**SUPPRESS, "subjectIds": []})
    assert status == 400 and body["code"] == "too_many_subjects"
