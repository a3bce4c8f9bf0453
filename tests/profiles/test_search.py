"""Finding a person (issue 35): the Profile API's search, the console's, and ``intilery profile search``.

By email, user id, anonymous id or a trait, a prefix of the value, paged, with the access token.
"""

from __future__ import annotations

import base64

import pytest

from collector.cli import main
from collector.profiles.builder import Builder
from collector.profiles.database import open_store

TOKEN = "at_test_secret_token"
SEARCH = "/v1/spaces/default/collections/users/profiles"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRITE = {"X-Write-Key": "wk_server"}


@pytest.fixture
async def api(make_client, config, profiles_db):
    """Three people in the log, their profiles built from it (SQLite and PostgreSQL)."""
    client = await make_client(config, access_token=TOKEN, profiles_db=profiles_db)
    batch = [
        {"type": "identify", "userId": "user-42", "anonymousId": "anon-g1",
         "traits": {"email": "Grace@Example.com", "plan": "pro", "name": "Grace"}},
        {"type": "identify", "userId": "user-7", "traits": {"email": "bob@example.com", "plan": "free"}},
        {"type": "page", "anonymousId": "anon-x9", "name": "Home"},
        {"type": "track", "userId": "user-42", "event": "Order Completed", "properties": {"revenue": 42}},
    ]  # fmt: skip
    answer = await client.post("/v1/batch", json={"batch": batch}, headers=WRITE)
    assert answer.status == 200
    store = open_store(profiles_db)
    Builder(store, config.data_dir).catch_up()
    store.close()
    return client


async def search(client, query: str, path: str = SEARCH, headers=BEARER):
    answer = await client.get(path + query, headers=headers)
    return answer.status, await answer.json()


def ids(body: dict) -> list[str]:
    """Each match as its user id, else its anonymous id."""
    found = []
    for match in body["data"]:
        kinds = dict(i.split(":", 1) for i in reversed(match["identifiers"]))
        found.append(kinds.get("user_id") or kinds["anonymous_id"])
    return found


class TestTheProfileAPI:
    @pytest.mark.parametrize(("query", "expected"), [
        pytest.param("?q=grace@example.com", ["user-42"], id="an email, whole"),
        pytest.param("?q=GRACE", ["user-42"], id="an email's prefix, any case"),
        pytest.param("?q=email:bob", ["user-7"], id="a typed prefix"),
        pytest.param("?q=user_id:user-", ["user-42", "user-7"], id="user ids by prefix"),
        pytest.param("?q=anon-x", ["anon-x9"], id="an anonymous id"),
        pytest.param("?q=anonymous_id:anon-g1", ["user-42"], id="an anonymous id of a signed-in person"),
        pytest.param("?q=plan:pro", ["user-42"], id="a trait"),
        pytest.param("?q=name:gr", ["user-42"], id="a trait's prefix, any case"),
        pytest.param("?q=nobody", [], id="no match"),
    ])  # fmt: skip
    async def test_finds_people_by_any_identifier_or_trait(self, api, query, expected):
        """A prefix of an identifier's value (any type, or the type named) or of a trait's value."""
        status, body = await search(api, query)
        assert status == 200, body
        assert sorted(ids(body)) == sorted(expected)

    async def test_a_match_names_the_profile_its_identifiers_and_traits(self, api):
        status, body = await search(api, "?q=grace")
        assert status == 200
        (match,) = body["data"]
        assert match["profile_id"].startswith("prf_")
        assert {"user_id:user-42", "email:grace@example.com", "anonymous_id:anon-g1"} <= set(match["identifiers"])
        assert match["traits"]["plan"] == "pro" and match["last_seen"]
        _, by_id = await search(api, f"?q=profile_id:{match['profile_id']}")
        assert ids(by_id) == ["user-42"]

    async def test_pages_follow_the_cursor(self, api):
        """No q is everyone: limit=1 over three people is three pages, each once, then no more."""
        seen, query = [], "?limit=1"
        for _ in range(4):
            status, body = await search(api, query)
            assert status == 200, body
            seen += ids(body)
            if not body["cursor"]["has_more"]:
                break
            query = f"?limit=1&next={body['cursor']['next']}"
        assert sorted(seen) == ["anon-x9", "user-42", "user-7"]

    @pytest.mark.parametrize(("query", "headers", "status", "code"), [
        pytest.param("?q=grace", {}, 401, "missing_access_token", id="no token"),
        pytest.param("?q=grace", WRITE | {"Authorization": "Basic " + base64.b64encode(b"wk_server:").decode()}, 401,
                     "invalid_access_token", id="a write key"),
        pytest.param("?q=grace&limit=0", BEARER, 400, "invalid_parameter", id="limit 0"),
        pytest.param("?q=grace&next=zzz", BEARER, 400, "invalid_parameter", id="a cursor it did not give"),
        pytest.param("?limit=abc", BEARER, 400, "invalid_parameter", id="limit not a number"),
    ])  # fmt: skip
    async def test_bad_requests_get_a_status_a_code_and_a_sentence(self, api, query, headers, status, code):
        answer, body = await search(api, query, headers=headers)
        assert (answer, body["code"], body["success"]) == (status, code, False)
        assert body["message"]

    async def test_another_space_is_a_404(self, api):
        status, body = await search(api, "?q=grace", path=SEARCH.replace("default", "other"))
        assert (status, body["code"]) == (404, "unknown_space")


class TestTheConsole:
    async def test_the_console_searches_with_the_access_token(self, api):
        status, body = await search(api, "?q=bob", path="/console/api/profiles")
        assert status == 200 and ids(body) == ["user-7"]
        status, _ = await search(api, "?q=bob", path="/console/api/profiles", headers={})
        assert status == 401


class TestTheCommand:
    async def test_profile_search_prints_each_match(self, api, config, profiles_db, capsys):
        """One line a person (profile id, identifiers, email); none: exit 1 and a sentence."""
        code = main(["profile", "search", "user_id:user-", "--data-dir", str(config.data_dir), "--profiles-db", profiles_db])
        out, _ = capsys.readouterr()
        assert code == 0
        lines = out.splitlines()
        assert len(lines) == 2 and all(line.startswith("prf_") for line in lines)
        assert any("user_id:user-42" in line and "email:grace@example.com" in line for line in lines)
        code = main(["profile", "search", "nobody", "--data-dir", str(config.data_dir), "--profiles-db", profiles_db])
        assert code == 1 and "no profile matches 'nobody'" in capsys.readouterr().err
