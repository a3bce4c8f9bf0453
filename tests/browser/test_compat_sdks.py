"""Sites on Segment or RudderStack today: their real SDKs, pointed at the collector, deliver here.

The pinned npm packages (``sdks/package.json``, installed by ``npm ci`` there) are served by the
page server; only the SDK's configuration and data-plane URLs name the collector. Each SDK fetches
its configuration from the collector (``collector/compat/``), then page, track, identify, group
and alias land in the store with the SDK's own ``context.library``, over its normal transport
and over its beacon one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

import pytest

from harness import SDK_FILES, WRITE_KEY
from helpers import wait_until

CALLS = ("page", "track", "identify", "group", "alias")


@pytest.fixture(autouse=True)
def sdks_installed():
    missing = [str(f) for f in SDK_FILES.values() if not f.is_file()]
    assert not missing, f"the SDKs are not installed (npm ci in tests/browser/sdks): {missing}"


@pytest.fixture
def recorded(tab):
    """The tab, also recording every request it makes: path, method, resource type (``ping``: sendBeacon)."""
    tab.requests = []
    tab.page.on("request", lambda r: tab.requests.append((urlsplit(r.url).path, r.method, r.resource_type)))
    return tab


def run_calls(tab, user: str) -> None:
    """The five calls, as a site's own code makes them, on the SDK instance the page keeps as ``sdk``."""
    tab.js(
        """([user]) => {
            sdk.page('Docs', 'Home', {user});
            sdk.track('Compat Tested', {user});
            sdk.identify(user, {email: user + '@example.com'});
            sdk.group('acme-' + user, {plan: 'enterprise'});
            sdk.alias(user + '-new');
        }""",
        [user],
    )


def stored_calls(collector, user: str) -> dict[str, dict]:
    """The five calls of ``user`` in the store, by type (waits until all five are there)."""

    def mine(e):
        return (e.get("userId") or "").startswith(user) or (e.get("properties") or {}).get("user") == user

    def all_five():
        found = {e["type"]: e for e in collector.events() if mine(e)}
        return found if set(CALLS) <= set(found) else None

    return wait_until(all_five, what=f"page, track, identify, group and alias of {user} in the store")


def sent_by(tab, path: str, kind: str) -> list:
    """The requests of ``kind`` to ``path`` (waits for one; Playwright's sync API reports requests while called)."""

    def found():
        tab.js("0")
        return [r for r in tab.requests if r[0] == path and r[2] == kind]

    return wait_until(found, what=f"a {kind} to {path}")


@pytest.mark.parametrize("transport", ["standard", "batching"])
def test_segment_analytics_next_with_only_cdnURL_at_the_collector(recorded, site, collector, transport):
    """analytics-next reads its settings from the collector, then delivers every call here: one fetch
    a call (standard) or keepalive batches to /v1/b (batching, its beacon-like transport)."""
    tab = recorded
    tab.page.goto(site.url + "/segment.html")
    options = {}
    if transport == "batching":
        strategy = {"strategy": "batching", "config": {"size": 5, "timeout": 200, "keepalive": True}}
        options = {"integrations": {"Segment.io": {"deliveryStrategy": strategy}}}
    tab.js(
        """async ([cdn, key, options]) => {
            const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({writeKey: key, cdnURL: cdn}, options);
            window.sdk = analytics;
        }""",
        [collector.url, WRITE_KEY, options],
    )
    user = "seg-" + uuid.uuid4().hex[:8]
    run_calls(tab, user)
    stored = stored_calls(collector, user)
    for kind, event in stored.items():
        assert event["context"]["library"]["name"] == "analytics.js", kind
        assert event["context"]["library"]["version"].endswith("1.84.3"), kind
        assert event["messageId"].startswith("ajs-"), kind
    assert stored["track"]["event"] == "Compat Tested"
    assert stored["identify"]["traits"] == {"email": user + "@example.com"}
    assert stored["group"]["groupId"] == "acme-" + user
    assert stored["alias"]["previousId"]  # (analytics-next fills userId itself from the identified user)
    assert ("/v1/projects/" + WRITE_KEY + "/settings", "GET", "fetch") in tab.requests
    if transport == "standard":
        for short in "tpiga":
            sent_by(tab, "/v1/" + short, "fetch")
    else:
        sent_by(tab, "/v1/b", "fetch")
        assert not [r for r in tab.requests if r[0] in ("/v1/t", "/v1/p")]
    # nothing went anywhere but the page server and the collector (no CDN, no metrics to Segment)
    assert {urlsplit(r).netloc for r in tab.js("performance.getEntries().map(e => e.name).filter(n => n.startsWith('http'))")} <= {
        urlsplit(site.url).netloc, urlsplit(collector.url).netloc}  # fmt: skip


@pytest.mark.parametrize("transport", ["xhr", "beacon"])
def test_rudderstack_v3_with_configUrl_and_data_plane_at_the_collector(recorded, site, collector, transport):
    """The v3 SDK reads its source configuration from the collector, then delivers every call here:
    by XHR to /v1/<type> (its default) or by sendBeacon to /beacon/v1/batch (useBeacon)."""
    tab = recorded
    tab.page.goto(site.url + "/rudderstack.html")
    tab.js(
        """([url, key, beacon]) => new Promise(resolve => {
            const sdk = window.sdk = new rudderanalytics.RudderAnalytics();
            sdk.load(key, url, {configUrl: url, useBeacon: beacon, beaconQueueOptions: {flushQueueInterval: 200}});
            sdk.ready(() => resolve(true));
        })""",
        [collector.url, WRITE_KEY, transport == "beacon"],
    )
    user = "rs-" + uuid.uuid4().hex[:8]
    run_calls(tab, user)
    stored = stored_calls(collector, user)
    for kind, event in stored.items():
        assert event["context"]["library"]["name"] == "RudderLabs JavaScript SDK", kind
        assert event["context"]["library"]["version"] == "3.34.1", kind
        assert event["channel"] == "web", kind
    assert stored["track"]["event"] == "Compat Tested"
    assert stored["identify"]["context"]["traits"] == {"email": user + "@example.com"}
    assert stored["group"]["groupId"] == "acme-" + user
    assert stored["alias"]["userId"] == user + "-new" and stored["alias"]["previousId"] == user
    assert any(r[0] == "/sourceConfig/" for r in tab.requests)
    if transport == "xhr":
        for kind in CALLS:
            sent_by(tab, "/v1/" + kind, "xhr")
    else:
        sent_by(tab, "/beacon/v1/batch", "ping")
        assert not [r for r in tab.requests if r[0].startswith("/v1/")]


def get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_segment_settings_document(collector):
    """Readable from any origin, cacheable, the Segment.io integration at this collector; 404 for an unknown key."""
    status, headers, body = get(f"{collector.url}/v1/projects/{WRITE_KEY}/settings", {"Origin": "https://shop.example"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in headers["Cache-Control"]
    host = urlsplit(collector.url).netloc
    assert body["integrations"] == {"Segment.io": {**body["integrations"]["Segment.io"], "apiKey": WRITE_KEY,
                                                   "apiHost": host + "/v1", "protocol": "http"}}  # fmt: skip
    assert list(body["integrations"]) == ["Segment.io"] and body["remotePlugins"] == []
    status, headers, body = get(f"{collector.url}/v1/projects/wk_nobody/settings")
    assert (status, body["code"]) == (404, "unknown_source") and body["success"] is False and body["message"]


def test_rudderstack_source_config_document(collector):
    """The key from ?writeKey= or Basic auth; no destinations; 401 without a key, 404 for an unknown one."""
    import base64

    basic = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    for url, headers in ((f"{collector.url}/sourceConfig/?writeKey={WRITE_KEY}", {}),
                         (f"{collector.url}/sourceConfig/", {"Authorization": basic})):  # fmt: skip
        status, answer_headers, body = get(url, {**headers, "Origin": "https://shop.example"})
        assert status == 200 and answer_headers["Access-Control-Allow-Origin"] == "*"
        assert body["source"]["writeKey"] == WRITE_KEY and body["source"]["enabled"] is True
        assert body["source"]["destinations"] == []
    status, _, body = get(f"{collector.url}/sourceConfig/")
    assert (status, body["code"]) == (401, "missing_write_key")
    status, _, body = get(f"{collector.url}/sourceConfig/?writeKey=wk_nobody")
    assert (status, body["code"]) == (404, "unknown_source")
