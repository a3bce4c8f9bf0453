"""A real collector (``python -m collector serve``) with a known access token, for the console tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from helpers import CollectorProcess

TOKEN = "at_console_test_token_0123456789"
WRITE_KEY = "wk_console"
SOURCES = [{"name": "web", "write_key": WRITE_KEY}, {"name": "server", "write_key": "wk_console_server"}]


def call(url: str, *, data: bytes | dict | None = None, headers: dict | None = None, method: str | None = None):
    """``(status, headers, body bytes)`` of one request; an HTTP error status is an answer, not raised."""
    if isinstance(data, dict):
        data = json.dumps(data).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def send(url: str, message: dict, write_key: str = WRITE_KEY, kind: str = "track") -> int:
    status, _, _ = call(f"{url}/v1/{kind}", data=message, headers={"X-Write-Key": write_key})
    return status


def batch(url: str, messages: list[dict], write_key: str = WRITE_KEY) -> int:
    status, _, _ = call(f"{url}/v1/batch", data={"batch": messages}, headers={"X-Write-Key": write_key})
    return status


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("console")
    with CollectorProcess(workdir, SOURCES, access_token=TOKEN) as running:
        yield running
