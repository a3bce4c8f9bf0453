"""The Profile API: Segment's paths and shapes, the access token, errors with status and code."""

from __future__ import annotations

import base64
import logging
import stat

import pytest

from collector.ingest.access import access_token
from collector.profiles.builder import Builder
from collector.profiles.database import open_store

TOKEN = "at_test_secret_token"
BASE = "/v1/spaces/default/collections/users/profiles"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRITE = {"X-Write-Key": "wk_server"}


def basic(user: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}


@pytest.fixture
async def api(make_client, config, profiles_db):
    """A collector with two people's events in its log, and their profiles built from it (SQLite and PostgreSQL)."""
    client = await make_client(config, access_token=TOKEN, profiles_db=profiles_db)
    batch = [
        {"type": "page", "anonymousId": "a1", "name": "Home", "timestamp": "2026-11-28T10:00:01.000Z"},
        {"type": "track", "anonymousId": "a1", "event": "Product Viewed", "timestamp": "2026-11-28T10:00:02.000Z"},
        {"type": "identify", "anonymousId": "a1", "userId": "u-42", "traits": {"email": "Ann@Example.com", "plan": "pro"},
         "timestamp": "2026-11-28T10:00:03.000Z"},
    ] + [{"type": "track", "userId": "u-42", "event": f"E{n}", "timestamp": f"2026-11-28T10:01:{n:02d}.000Z"}
         for n in range(25)] + [{"type": "track", "userId": "u-7", "event": "Other"}]  # fmt: skip
    answer = await client.post("/v1/batch", json={"batch": batch}, headers=WRITE)
    assert answer.status == 200
    store = open_store(profiles_db)
    Builder(store, config.data_dir).catch_up()
    store.close()
    return client


async def get(client, path: str, headers=BEARER):
    answer = await client.get(BASE + path, headers=headers)
    return answer.status, await answer.json()


class TestLookups:
    async def test_traits_by_every_identifier_type(self, api):
        """The same person by user_id, anonymous_id, email (any case) and profile_id."""
        status, body = await get(api, "/user_id:u-42/traits")
        assert status == 200
        assert body["traits"]["plan"] == "pro" and body["traits"]["email"] == "Ann@Example.com"
        assert body["traits"]["event_count"] == 28 and body["traits"]["counts_by_type"] == {"identify": 1, "page": 1, "track": 26}
        _, meta = await get(api, "/user_id:u-42/metadata")
        for other in ("anonymous_id:a1", "email:ann@example.com", "email:ANN@example.com", f"profile_id:{meta['metadata']['profile_id']}"):
            assert (await get(api, f"/{other}/traits"))[1]["traits"] == body["traits"], other

    async def test_include_names_the_traits_returned(self, api):
        status, body = await get(api, "/user_id:u-42/traits?include=plan,first_seen,nothing")
        assert (status, body["traits"]) == (200, {"plan": "pro", "first_seen": "2026-11-28T10:00:01.000Z"})

    async def test_events_newest_first_paged_with_a_cursor_from_the_log(self, api):
        """Every event of the person, anonymous ones included, newest first, as stored in the log."""
        seen, url = [], "/user_id:u-42/events?limit=10"
        while url:
            status, body = await get(api, url)
            assert status == 200
            seen += body["data"]
            url = f"/user_id:u-42/events?limit=10&next={body['cursor']['next']}" if body["cursor"]["has_more"] else None
        assert [e.get("event") or e["type"] for e in seen] == [f"E{n}" for n in reversed(range(25))] + ["identify", "Product Viewed", "page"]
        assert all("receivedAt" in e and e["source"] == "server" for e in seen)

    async def test_external_ids_and_metadata(self, api):
        _, ids = await get(api, "/anonymous_id:a1/external_ids")
        assert {(i["type"], i["id"], i["source"]) for i in ids["data"]} == {
            ("anonymous_id", "a1", "server"), ("user_id", "u-42", "server"), ("email", "ann@example.com", "server")}  # fmt: skip
        _, meta = await get(api, "/anonymous_id:a1/metadata")
        assert meta["metadata"]["created_at"] == "2026-11-28T10:00:01.000Z"
        assert meta["metadata"]["refused_links"] == []


class TestAccess:
    @pytest.mark.parametrize("headers, status, code", [
        pytest.param({}, 401, "missing_access_token", id="none"),
        pytest.param(basic("wk_server"), 401, "invalid_access_token", id="a-write-key-as-basic"),
        pytest.param({"Authorization": "Bearer wk_server"}, 401, "invalid_access_token", id="a-write-key-as-bearer"),
        pytest.param({"Authorization": "Bearer " + TOKEN[:-1]}, 401, "invalid_access_token", id="a-prefix-of-the-token"),
        pytest.param({"Authorization": "Basic !!!"}, 401, "missing_access_token", id="basic-not-base64"),
        pytest.param(basic(TOKEN), 200, None, id="basic-token-as-user-name"),
        pytest.param(BEARER, 200, None, id="bearer"),
    ])  # fmt: skip
    async def test_only_the_access_token_authorizes(self, api, headers, status, code):
        """Write keys are public: they never read a profile; the token does, as Basic user or Bearer."""
        answer_status, body = await get(api, "/user_id:u-42/traits", headers)
        assert answer_status == status
        if code:
            assert body["success"] is False and body["code"] == code and body["message"]

    async def test_the_token_never_appears_in_a_log_line(self, api, caplog):
        caplog.set_level(logging.DEBUG)
        for headers in (BEARER, basic(TOKEN), {"Authorization": "Bearer " + TOKEN + "x"}):
            await get(api, "/user_id:u-42/traits", headers)
            await get(api, "/user_id:nobody/traits", headers)
        assert TOKEN not in caplog.text and all(TOKEN not in str(r.__dict__) for r in caplog.records)

    def test_the_banner_shows_where_the_token_is_never_the_token_nor_a_database_password(self, config):
        from dataclasses import replace

        from collector.serve.serving import profiles_line

        line = profiles_line(replace(config, access_token=TOKEN, profiles_db="postgresql://app:pw-secret@db:5432/p"))
        assert TOKEN not in line and "pw-secret" not in line and "db:5432/p" in line
        generated = profiles_line(config)
        assert str(config.data_dir / "access-token") in generated
        assert (config.data_dir / "access-token").read_text().strip() not in generated

    def test_without_configuration_a_token_is_generated_with_mode_0600(self, config):
        token, path = access_token(config)
        assert token.startswith("at_") and path == config.data_dir / "access-token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert access_token(config) == (token, path), "the generated token is kept"


@pytest.mark.parametrize("path, status, code", [
    pytest.param("/user_id:nobody/traits", 404, "profile_not_found", id="unknown-person"),
    pytest.param("/phone:123/traits", 400, "invalid_profile_id", id="unknown-type"),
    pytest.param("/u-42/traits", 400, "invalid_profile_id", id="no-type"),
    pytest.param("/user_id:/traits", 400, "invalid_profile_id", id="no-value"),
    pytest.param("/user_id:u-42/events?limit=0", 400, "invalid_parameter", id="limit-0"),
    pytest.param("/user_id:u-42/events?limit=101", 400, "invalid_parameter", id="limit-101"),
    pytest.param("/user_id:u-42/events?limit=ten", 400, "invalid_parameter", id="limit-not-a-number"),
    pytest.param("/user_id:u-42/events?next=%%%", 400, "invalid_parameter", id="cursor-not-ours"),
    pytest.param("/user_id:u-42/traits?include=,", 400, "invalid_parameter", id="include-empty"),
])  # fmt: skip
async def test_bad_requests_get_a_status_a_code_and_a_sentence(api, path, status, code):
    answer_status, body = await get(api, path)
    assert (answer_status, body["success"], body["code"]) == (status, False, code)
    assert body["message"] and "\n" not in body["message"]


async def test_another_space_is_not_found(api):
    answer = await api.get("/v1/spaces/other/collections/users/profiles/user_id:u-42/traits", headers=BEARER)
    assert answer.status == 404 and (await answer.json())["code"] == "unknown_space"


@pytest.mark.parametrize("path", [BASE + "/user_id:u-big/events?limit=10", "/console/api/profiles/user_id:u-big?limit=10"],
                         ids=["profile-api", "console"])  # fmt: skip
async def test_reading_a_page_from_closed_segments_does_not_stop_ingest(make_client, config, tmp_path, path):
    """A page of 10 events, one at the end of each of 10 closed segments (each decompressed to its
    end to reach it), through the Profile API and the console's profile view: ingest requests are
    answered while the read is under way, counted as those sent after it opened its first segment
    and answered before it opened its last (S8)."""
    import asyncio
    import gzip
    import os
    import time

    import orjson

    from collector.profiles.api import PROFILE_API

    db = str(tmp_path / "profiles.db")
    directory = config.data_dir / "events" / "dt=2026-11-28/hr=10"
    directory.mkdir(parents=True)
    for n in range(10):
        filler = [{"type": "track", "userId": "filler", "event": "Pad", "messageId": f"f{n}-{i}",
                   "receivedAt": "2026-11-28T10:00:00.000Z", "pad": os.urandom(50_000).hex()} for i in range(80)]  # fmt: skip
        mine = {"type": "track", "userId": "u-big", "event": f"E{n}", "messageId": f"m{n}",
                "receivedAt": "2026-11-28T10:00:01.000Z", "timestamp": f"2026-11-28T10:00:{n:02d}.000Z"}  # fmt: skip
        data = b"".join(orjson.dumps(e) + b"\n" for e in [*filler, mine])
        (directory / f"part-test_0-{n + 1:06d}.ndjson.gz").write_bytes(gzip.compress(data, 1))
    store = open_store(db)
    Builder(store, config.data_dir).catch_up()
    store.close()
    client = await make_client(config, access_token=TOKEN, profiles_db=db)
    reader = client.server.app[PROFILE_API].reader
    base = reader.stats["decompressed"]
    page = asyncio.create_task(client.get(path, headers=BEARER))
    served, deadline = 0, time.monotonic() + 120  # a liveness bound, not a measurement
    while not page.done():
        assert time.monotonic() < deadline, "the page was not answered"
        before = reader.stats["decompressed"] - base
        answer = await client.post("/v1/track", json={"userId": "u-7", "event": "During"}, headers=WRITE)
        after = reader.stats["decompressed"] - base
        assert answer.status == 200
        served += 1 <= before and after < 10
    body = await (await page).json()
    assert [e["event"] for e in body.get("data") or body["events"]] == [f"E{n}" for n in reversed(range(10))]
    assert reader.stats["decompressed"] - base == 10
    assert served >= 1, "no ingest request was answered while the page was read from the log"
