"""First-party mode: the collector sets ``itl_aid`` for same-site requests of first-party sources, once a day."""

from __future__ import annotations

import pytest

from collector.config import ConfigError, Source, load_config
from tests.conftest import WEB

SITE = Source(name="site", write_key="wk_site", first_party=True, cookie_domain="shop.example")
HOST_ONLY = Source(name="host", write_key="wk_host", first_party=True)
AID = "6f1c5a0e-2b7d-4c3e-9a8f-0d1e2f3a4b5c"
SAME_ORIGIN = {"Origin": "https://www.shop.example", "Sec-Fetch-Site": "same-origin"}
BODY = {"batch": [{"type": "track", "event": "E", "anonymousId": AID}]}


def set_cookies(answer) -> dict[str, dict]:
    """The answer's Set-Cookie headers, by cookie name: {"value", attribute: value, ...}."""
    found = {}
    for header in answer.headers.getall("Set-Cookie", []):
        name, _, rest = header.partition("=")
        value, *attrs = [part.strip() for part in rest.split(";")]
        found[name] = {"value": value, **{a.partition("=")[0].lower(): a.partition("=")[2] for a in attrs}}
    return found


@pytest.fixture
async def fp_client(make_client, config):
    return await make_client(config, sources=(WEB, SITE, HOST_ONLY))


async def post(client, headers=None, key="wk_site", body=BODY):
    return await client.post("/v1/batch", json=body, headers={"X-Write-Key": key, **(headers or {})})


class TestTheCookie:
    async def test_a_same_site_request_gets_itl_aid_with_the_attributes(self, fp_client):
        """itl_aid = the batch's anonymousId, Path=/, 400 days, SameSite=Lax, the cookie_domain, readable by the tag."""
        answer = await post(fp_client, SAME_ORIGIN)
        assert answer.status == 200
        aid = set_cookies(answer)["itl_aid"]
        assert aid["value"] == AID
        assert (aid["path"], aid["max-age"], aid["samesite"], aid["domain"]) == ("/", str(400 * 86400), "Lax", "shop.example")
        assert "httponly" not in aid and "secure" not in aid  # plain HTTP from a client, not a proxy

    async def test_without_cookie_domain_the_cookie_is_host_only(self, fp_client):
        answer = await post(fp_client, SAME_ORIGIN, key="wk_host")
        assert "domain" not in set_cookies(answer)["itl_aid"]

    async def test_the_newest_message_names_the_visitor(self, fp_client):
        """After a reset() mid-batch, the cookie carries the id of the batch's last message."""
        body = {"batch": [{"type": "track", "event": "E", "anonymousId": "old"}, BODY["batch"][0]]}
        assert set_cookies(await post(fp_client, SAME_ORIGIN, body=body))["itl_aid"]["value"] == AID

    @pytest.mark.parametrize(
        "headers, trusted, secure",
        [
            pytest.param({"X-Forwarded-Proto": "https"}, True, True, id="https-at-a-trusted-proxy"),
            pytest.param({"X-Forwarded-Proto": "https"}, False, False, id="https-claimed-by-an-untrusted-peer"),
            pytest.param({"X-Forwarded-Proto": "http"}, True, False, id="http-at-a-trusted-proxy"),
        ],
    )
    async def test_secure_on_https_through_a_trusted_proxy(self, make_client, config, headers, trusted, secure):
        client = await make_client(config, sources=(SITE,), trusted_proxies=config.trusted_proxies if trusted else ())
        cookies = set_cookies(await post(client, {**SAME_ORIGIN, **headers}))
        assert ("secure" in cookies["itl_aid"]) is secure
        assert ("secure" in cookies["itl_aid_fresh"]) is secure


class TestWhenItIsSet:
    @pytest.mark.parametrize(
        "headers, expected",
        [
            pytest.param(SAME_ORIGIN, True, id="same-origin"),
            pytest.param({"Origin": "https://shop.example", "Sec-Fetch-Site": "same-site"}, True, id="same-site"),
            pytest.param({"Origin": "https://other.example", "Sec-Fetch-Site": "cross-site"}, False, id="cross-site"),
            pytest.param({"Origin": "https://www.shop.example"}, True, id="no-fetch-metadata-origin-under-cookie-domain"),
            pytest.param({"Origin": "https://shop.example.evil"}, False, id="no-fetch-metadata-other-origin"),
            pytest.param({}, False, id="neither-header-a-server-not-a-browser"),
        ],
    )
    async def test_only_same_site_requests_get_it(self, fp_client, headers, expected):
        answer = await post(fp_client, headers)
        assert answer.status == 200
        assert ("itl_aid" in set_cookies(answer)) is expected

    async def test_a_source_without_first_party_sets_no_cookie(self, fp_client):
        answer = await post(fp_client, {"Origin": "https://shop.example", "Sec-Fetch-Site": "same-origin"}, key="wk_web")
        assert answer.status == 200 and set_cookies(answer) == {}

    async def test_once_a_day_the_fresh_cookie_holds_it_back(self, fp_client):
        """A visitor whose itl_aid matches and whose itl_aid_fresh (1 day, HttpOnly) is present gets no Set-Cookie."""
        first = set_cookies(await post(fp_client, SAME_ORIGIN))
        fresh = first["itl_aid_fresh"]
        assert ("httponly" in fresh, fresh["max-age"], fresh["domain"]) == (True, "86400", "shop.example")
        jar = {"Cookie": f"itl_aid={AID}; itl_aid_fresh={fresh['value']}"}
        assert set_cookies(await post(fp_client, {**SAME_ORIGIN, **jar})) == {}

    @pytest.mark.parametrize(
        "cookie",
        [
            pytest.param(f"itl_aid={AID}", id="fresh-marker-expired"),
            pytest.param("itl_aid=another-id; itl_aid_fresh=1", id="another-id-after-reset"),
            pytest.param("itl_aid_fresh=1", id="itl_aid-deleted"),
            pytest.param('itl_aid="\\x; ;;==; itl_aid_fresh', id="garbled-cookie-header"),
        ],
    )
    async def test_it_is_set_again_when_stale_or_another_id(self, fp_client, cookie):
        answer = await post(fp_client, {**SAME_ORIGIN, "Cookie": cookie})
        assert set_cookies(answer)["itl_aid"]["value"] == AID

    @pytest.mark.parametrize(
        "aid",
        [
            pytest.param("a; Domain=evil.example", id="attribute-injection"),
            pytest.param("x" * 300, id="too-long"),
            pytest.param("ann smith", id="a-space"),
        ],
    )
    async def test_an_id_unfit_for_a_cookie_sets_none(self, fp_client, aid):
        body = {"batch": [{"type": "track", "event": "E", "anonymousId": aid, "userId": "u"}]}
        answer = await post(fp_client, SAME_ORIGIN, body=body)
        assert answer.status == 200 and set_cookies(answer) == {}

    async def test_an_error_answer_sets_none(self, fp_client):
        answer = await fp_client.post("/v1/track", data=b"{", headers={"X-Write-Key": "wk_site", "Content-Type": "application/json", **SAME_ORIGIN})
        assert answer.status == 400 and set_cookies(answer) == {}


class TestConfig:
    def test_first_party_and_cookie_domain_are_read(self, tmp_path):
        path = tmp_path / "intilery.toml"
        path.write_text('[[source]]\nname = "s"\nwrite_key = "k"\nfirst_party = true\ncookie_domain = ".Shop.Example.com"\n')
        source = load_config(path, environ={}).sources[0]
        assert (source.first_party, source.cookie_domain) == (True, "shop.example.com")

    @pytest.mark.parametrize(
        "extra",
        [
            pytest.param('cookie_domain = "shop.example.com"', id="cookie_domain-without-first_party"),
            pytest.param('first_party = true\ncookie_domain = "shop.example.com; HttpOnly"', id="not-a-domain"),
            pytest.param('first_party = true\ncookie_domain = "https://shop.example.com"', id="a-url"),
        ],
    )
    def test_bad_settings_are_refused(self, tmp_path, extra):
        path = tmp_path / "intilery.toml"
        path.write_text(f'[[source]]\nname = "s"\nwrite_key = "k"\n{extra}\n')
        with pytest.raises(ConfigError, match="cookie_domain"):
            load_config(path, environ={})

