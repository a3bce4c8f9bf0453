"""Only the access token opens the console: every page, asset, stream and API answers 401 without it."""

from __future__ import annotations

import json

import pytest

from collector.console import auth
from tests.console.conftest import SOURCES, TOKEN, WRITE_KEY, call

GETS = ["/console", "/console/static/console.js", "/console/static/console.css", "/console/stream",
        "/console/api/dashboard", "/console/api/profiles/user_id:u1", "/console/api/audiences", "/console/api/regulations"]  # fmt: skip


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
    assert call(collector.url + "/console/api/dashboard", headers={"Cookie": session})[0] == 401  # signed out
    # the page's policy lets its own form send its Origin (under no-referrer a browser sends "null")
    _, answer, _ = call(collector.url + "/console/signin", data=f"token={TOKEN}".encode(), headers=form)
    status, answer, _ = call(collector.url + "/console", headers={"Cookie": answer["Set-Cookie"].split(";", 1)[0]})
    assert status == 200 and answer["Referrer-Policy"] == "same-origin"


def test_a_changed_token_takes_effect_without_a_restart_and_ends_open_streams(tmp_path):
    """Review P9: the generated token file rewritten (the operator rotates it): the old token no
    longer opens the console, the Profile API or the privacy API, the new one does, and a console
    stream opened with the old one ends, all without a restart."""
    from helpers import CollectorProcess, wait_until
    from tests.console.sse import Stream

    with CollectorProcess(tmp_path, SOURCES) as proc:
        path = proc.data_dir / "access-token"
        old = path.read_text().strip()
        routes = ["/console/api/dashboard", "/v1/regulations", "/v1/spaces/default/collections/users/profiles?q=x"]
        for route in routes:
            assert call(proc.url + route, headers={"Authorization": f"Bearer {old}"})[0] == 200, route
        stream = Stream(proc.url + "/console/stream", old)
        assert stream.status == 200
        new = "at_rotated_" + "x" * 24
        tmp = path.with_name("new-token")
        tmp.write_text(new + "\n")
        tmp.rename(path)
        wait_until(lambda: call(proc.url + routes[0], headers={"Authorization": f"Bearer {old}"})[0] == 401,
                   what="the old token refused")  # fmt: skip
        for route in routes:
            assert call(proc.url + route, headers={"Authorization": f"Bearer {old}"})[0] == 401, route
            assert call(proc.url + route, headers={"Authorization": f"Bearer {new}"})[0] == 200, route
        wait_until(lambda: not stream.thread.is_alive(), what="the old token's stream ended")
        stream.close()


def test_signing_out_ends_the_sessions_open_streams_and_refuses_its_cookie(collector):
    """Review P9: a session signed out is refused by every route from then on (its cookie copied
    elsewhere too), and its open stream ends."""
    from helpers import wait_until
    from tests.console.sse import Stream

    status, headers, _ = call(collector.url + "/console/signin", data=b"token=" + TOKEN.encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 303
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    session = {"Cookie": cookie}
    assert call(collector.url + "/console/api/dashboard", headers=session)[0] == 200
    stream = Stream(collector.url + "/console/stream", None, headers=session)
    assert stream.status == 200
    out = call(collector.url + "/console/signout", data=b"", method="POST", headers={**session, "Sec-Fetch-Site": "same-origin"})
    assert out[0] == 303
    assert call(collector.url + "/console/api/dashboard", headers=session)[0] == 401
    wait_until(lambda: not stream.thread.is_alive(), what="the signed-out session's stream ended")
    stream.close()
