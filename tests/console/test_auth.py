"""Only the access token opens the console: every page, asset, stream and API answers 401 without it."""

from __future__ import annotations

import json

import pytest

from collector.console import auth
from tests.console.conftest import TOKEN, WRITE_KEY, call

GETS = ["/console", "/console/static/console.js", "/console/static/console.css", "/console/stream",
        "/console/api/dashboard", "/console/api/profiles/user_id:u1", "/console/api/regulations"]  # fmt: skip


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("authorization", [None, f"Bearer {WRITE_KEY}", "Bearer at_not_the_token", "Basic Zm9vOg=="])
def test_no_console_route_answers_without_the_token(collector, path, authorization):
    """No token, a write key, a wrong token: 401; /console shows only the sign-in form."""
    status, headers, body = call(collector.url + path, headers={"Authorization": authorization} if authorization else {})
    assert status == 401
    if path == "/console":
        assert b'id="signin"' in body and b"console.js" not in body
    else:
        answer = json.loads(body)
        assert answer["success"] is False
        assert answer["code"] == ("missing_access_token" if authorization is None else "invalid_access_token")


@pytest.mark.parametrize("path", GETS)
def test_every_console_route_accepts_the_bearer_token(collector, path):
    if path == "/console/stream":
        from tests.console.sse import Stream

        with Stream(collector.url + path, TOKEN) as stream:
            assert stream.status == 200 and stream.response.headers["Content-Type"] == "text/event-stream"
        return
    status, headers, body = call(collector.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == (404 if "profiles" in path else 200), body
    if path == "/console":
        assert b"console.js" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]


def test_the_sign_in_form_sets_a_strict_http_only_session_cookie(collector):
    status, headers, body = call(collector.url + "/console/signin", data=b"token=at_wrong",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 401 and b"the access token is not valid" in body and "Set-Cookie" not in headers
    status, headers, body = call(collector.url + "/console/signin", data=f"token={WRITE_KEY}".encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 401 and "Set-Cookie" not in headers, "a write key signed in"

    status, headers, _ = call(collector.url + "/console/signin", data=f"token={TOKEN}".encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 303 and headers["Location"] == "/console"
    cookie = headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes and attributes["samesite"].strip().lower() == "samesite=strict"
    assert "secure" not in attributes  # plain HTTP here; Secure when the request came over HTTPS
    assert TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    assert call(collector.url + "/console/api/dashboard", headers={"Cookie": session})[0] == 200
    assert call(collector.url + "/console", headers={"Cookie": session})[0] == 200

    name, _, value = session.partition("=")
    expiry, _, mac = value.partition(".")
    for forged in (f"{int(expiry) + 3600}.{mac}", f"{expiry}.{'0' * len(mac)}", "", "garbage"):
        status, _, body = call(collector.url + "/console/api/dashboard", headers={"Cookie": f"{name}={forged}"})
        assert status == 401 and json.loads(body)["code"] == "invalid_access_token", forged


def test_a_session_ends_at_its_expiry_and_when_the_token_changes():
    value = auth.session_value("at_one", now=1_000_000)
    assert auth.valid_session(value, "at_one", now=1_000_000 + auth.SESSION_SECONDS - 1)
    assert not auth.valid_session(value, "at_one", now=1_000_000 + auth.SESSION_SECONDS)
    assert not auth.valid_session(value, "at_two", now=1_000_001)


def test_the_cookie_is_secure_over_https_through_a_trusted_proxy(tmp_path):
    """X-Forwarded-Proto: https makes the cookie Secure only when it comes from a trusted proxy."""
    from helpers import CollectorProcess
    from tests.console.conftest import SOURCES

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    (tmp_path / "trusting").mkdir()
    (tmp_path / "plain").mkdir()
    with CollectorProcess(tmp_path / "trusting", SOURCES, access_token=TOKEN, trusted_proxies=["127.0.0.1/32"]) as trusting:
        _, headers, _ = call(trusting.url + "/console/signin", data=f"token={TOKEN}".encode(),
                             headers={**form, "X-Forwarded-Proto": "https"})  # fmt: skip
        assert "secure" in [p.strip().lower() for p in headers["Set-Cookie"].split(";")]
    with CollectorProcess(tmp_path / "plain", SOURCES, access_token=TOKEN) as plain:
        _, headers, _ = call(plain.url + "/console/signin", data=f"token={TOKEN}".encode(),
                             headers={**form, "X-Forwarded-Proto": "https"})  # fmt: skip
        assert "secure" not in [p.strip().lower() for p in headers["Set-Cookie"].split(";")]


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    {"Origin": "http://evil.example"},
    {},  # neither: not a browser's same-origin form
], ids=["cross-site", "other-host", "none"])  # fmt: skip
def test_another_site_cannot_sign_the_console_out(collector, headers):
    """Sign-out is a POST on the session cookie like any other: from another origin it is a 403 and
    the cookie stays; the console's own sign-out button (same origin) clears it."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, answer, _ = call(collector.url + "/console/signin", data=f"token={TOKEN}".encode(), headers=form)
    session = answer["Set-Cookie"].split(";", 1)[0]
    status, answer, body = call(collector.url + "/console/signout", data=b"", headers={**form, "Cookie": session, **headers})
    assert status == 403 and json.loads(body)["code"] == "cross_origin_request", body
    assert "Set-Cookie" not in answer
    for own in ({"Sec-Fetch-Site": "same-origin"}, {"Origin": collector.url}):  # with fetch metadata, or without
        status, answer, _ = call(collector.url + "/console/signout", data=b"", headers={**form, "Cookie": session, **own})
        assert status == 303 and answer["Set-Cookie"].startswith(f"{auth.COOKIE}=\"\";") and "Max-Age=0" in answer["Set-Cookie"]
    # the page's policy lets its own form send its Origin (under no-referrer a browser sends "null")
    status, answer, _ = call(collector.url + "/console", headers={"Cookie": session})
    assert status == 200 and answer["Referrer-Policy"] == "same-origin"
