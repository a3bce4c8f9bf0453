"""The whole path as a real site uses it: the demo shop on one origin, the collector on another, Chromium between."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta, timezone

import pytest

from helpers import wait_until
from tests.e2e.conftest import ROOT

UTM = "?utm_source=newsletter&utm_medium=email&utm_campaign=winter_sale"
SCREENSHOT = ROOT / "docs" / "demo-shop.png"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def step(event: dict) -> tuple[str, str]:
    if event["type"] == "page":
        return ("page", event["context"]["page"]["path"])
    return (event["type"], event.get("event") or event.get("userId"))


def in_call_order(events: list[dict]) -> list[dict]:
    """Events as the visitor made them: by the browser's call time (ties keep arrival order)."""
    return sorted(events, key=lambda e: e["originalTimestamp"])


def accept_consent(page) -> None:
    page.click("#consent-accept")


JOURNEY = [
    ("page", "/"),
    ("page", "/products.html"),
    ("page", "/product.html"),
    ("track", "Product Viewed"),
    ("track", "Product Added"),
    ("page", "/products.html"),
    ("page", "/product.html"),
    ("track", "Product Viewed"),
    ("page", "/cart.html"),
    ("page", "/signin.html"),
    ("identify", "u_ann_example_com"),
    ("track", "Signed In"),
    ("page", "/cart.html"),
    ("track", "Order Completed"),
    ("page", "/app"),
    ("page", "/app/orders"),
    ("page", "/app/settings"),
    ("track", "Signed Out"),
    ("page", "/"),
]


def test_visitor_journey(demo, new_context):
    """Land with utm, browse two products, add to cart, sign in, check out, use the account section, sign out."""
    visitor = new_context()
    page = visitor.new_page()
    # The visitor's clock runs an hour fast: the collector's skew correction must undo it.
    page.clock.install(time=datetime.now(timezone.utc) + timedelta(hours=1))
    page.goto(demo.site + "/" + UTM)
    if os.environ.get("INTILERY_UPDATE_SCREENSHOT") or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
    accept_consent(page)
    page.click("#shop-now")
    page.click("#card-mug-01")
    page.click("#add-to-cart")
    page.wait_for_selector("#added:not([hidden])")
    page.click("nav >> text=Products")
    page.click("#card-lamp-03")
    page.wait_for_selector("#product-name:has-text('Desk Lamp')")
    page.click("#cart-link")
    page.click("#signin-to-checkout")
    page.fill("#email", "ann@example.com")
    page.fill("#name", "Ann")
    page.click("#signin-submit")
    page.wait_for_url(demo.site + "/cart.html")  # not the sign-in page's "?next=/cart.html"
    page.click("#checkout")
    page.wait_for_selector("#thanks:not([hidden])")
    page.click("nav >> text=My account")
    page.wait_for_url("**/app")
    page.click("#tab-orders")
    page.click("#tab-settings")
    page.wait_for_selector("#view-title:has-text('Settings')")
    page.click("#sign-out")
    page.wait_for_url(demo.site + "/")

    events = in_call_order(demo.wait_for(len(JOURNEY), what="of the journey"))
    page.evaluate("intilery.flush()")
    assert [step(e) for e in events] == JOURNEY
    assert len({e["messageId"] for e in events}) == len(events)

    first_anonymous = events[0]["anonymousId"]
    signed_in = next(i for i, e in enumerate(events) if e["type"] == "identify")
    for i, event in enumerate(events[:-1]):
        assert event["anonymousId"] == first_anonymous, f"event {i} changed anonymousId"
        assert ("userId" in event) == (i >= signed_in), f"event {i}: userId stitched at the wrong time"
        if i >= signed_in:
            assert event["userId"] == "u_ann_example_com"
    last = events[-1]
    assert last["anonymousId"] != first_anonymous and "userId" not in last, "reset() did not forget the visitor"

    identify = events[signed_in]
    assert identify["traits"] == {"email": "ann@example.com", "name": "Ann"}
    order = next(e for e in events if e.get("event") == "Order Completed")
    assert order["properties"]["revenue"] == 12.5 and order["properties"]["currency"] == "GBP"
    assert [p["sku"] for p in order["properties"]["products"]] == ["mug-01"]
    added = next(e for e in events if e.get("event") == "Product Added")
    assert added["properties"]["sku"] == "mug-01" and added["properties"]["price"] == 12.5

    landing = events[0]
    assert landing["context"]["campaign"] == {"source": "newsletter", "medium": "email", "name": "winter_sale"}
    assert landing["context"]["page"]["url"] == demo.site + "/" + UTM
    assert landing["context"]["page"]["search"] == UTM
    assert events[1]["context"]["page"]["referrer"] == demo.site + "/" + UTM
    for event in events:
        context = event["context"]
        assert event["source"] == "demo"
        assert context["library"]["name"] == "intilery.js"
        assert context["page"]["url"].startswith(demo.site) and context["page"]["title"]
        assert context["location"]["city"] == "London" and context["location"]["countryCode"] == "GB"
        assert context["ip"] == "127.0.0.0"
        assert context["os"]["name"] == "Linux" and context["device"]["type"] == "desktop"
        assert context["browser"]["name"] in ("Chrome", "HeadlessChrome")
        # skew: the browser said it was an hour later; the stored timestamp is the server's view
        original, corrected, received = when(event["originalTimestamp"]), when(event["timestamp"]), when(event["receivedAt"])
        assert timedelta(minutes=59) < original - received < timedelta(minutes=61)
        assert timedelta(0) <= received - corrected < timedelta(seconds=30)
    assert visitor.console.errors == []

    # the demo's audiences (demo_site/engage/): Ann looked at products, so she is browsing now, and
    # the platform appended that to the log as her Audience Entered, once (while she was anonymous,
    # or under her user id once she had signed in)
    entered = demo.wait_for(1, lambda e: e.get("event") == "Audience Entered"
                            and e["properties"]["audience_key"] == "browsing_now", "for Ann", platform=True)  # fmt: skip
    assert len(entered) == 1 and entered[0]["source"] == "intilery"
    assert entered[0].get("userId") == "u_ann_example_com" or entered[0]["anonymousId"] == first_anonymous


def test_two_visitors_at_once_never_mix(demo, new_context):
    """Two browser contexts sign in as different people; each event carries only its own identity."""
    visitors = {"ann": new_context(), "bob": new_context()}
    pages = {}
    for name, context in visitors.items():
        page = pages[name] = context.new_page()
        page.goto(demo.site + "/")
        accept_consent(page)
    for name, page in pages.items():
        page.click("#sign-in")
        page.fill("#email", f"{name}@example.com")
        page.fill("#name", name.title())
        page.click("#signin-submit")
    for name, page in pages.items():
        page.wait_for_url(demo.site + "/")
        page.click("#card-tee-02")
        page.click("#add-to-cart")
    added = demo.wait_for(2, lambda e: e.get("event") == "Product Added", "(one Product Added per visitor)")
    events = demo.events()
    anonymous = {}
    for name in visitors:
        user_id = f"u_{name}_example_com"
        [identify] = [e for e in events if e["type"] == "identify" and e["userId"] == user_id]
        anonymous[name] = identify["anonymousId"]
    assert anonymous["ann"] != anonymous["bob"]
    for event in events:
        owner = next(n for n, a in anonymous.items() if a == event["anonymousId"])
        assert event.get("userId") in (None, f"u_{owner}_example_com")
    assert {e["userId"] for e in added} == {"u_ann_example_com", "u_bob_example_com"}


def test_declined_consent_sends_nothing_and_accepted_is_tracked(demo, new_context):
    decliner = new_context().new_page()
    decliner.goto(demo.site + "/")
    decliner.click("#consent-decline")
    decliner.click("#card-mug-01")
    decliner.click("#add-to-cart")
    decliner.goto(demo.site + "/products.html")

    accepter = new_context().new_page()
    accepter.goto(demo.site + "/products.html")
    accepter.click("#consent-accept")
    accepter.click("#card-pack-04")
    accepter.click("#add-to-cart")
    demo.wait_for(1, lambda e: e.get("event") == "Product Added", "from the visitor who accepted")
    decliner.evaluate("intilery.flush()")
    decliner.wait_for_timeout(500)
    events = demo.events()
    assert {e["anonymousId"] for e in events} == {accepter.evaluate("intilery.user().anonymousId()")}
    assert [step(e) for e in in_call_order(events)] == [
        ("page", "/products.html"), ("page", "/product.html"), ("track", "Product Viewed"), ("track", "Product Added"),
    ]  # fmt: skip


def test_iphone_is_stored_as_a_mobile_device(demo, new_context, playwright_instance):
    iphone = playwright_instance.devices["iPhone 13"]
    page = new_context(**iphone).new_page()
    page.goto(demo.site + "/")
    accept_consent(page)
    [event] = demo.wait_for(1, what="from the phone")
    context = event["context"]
    assert context["device"] == {"type": "mobile", "brand": "Apple", "model": "iPhone"}
    assert context["os"]["name"] == "iOS"
    assert context["screen"]["width"] == iphone["viewport"]["width"]


PAGES = ["/", "/products.html", "/product.html?sku=tee-02", "/cart.html", "/signin.html", "/app", "/app/orders"]


@pytest.mark.parametrize("collector_up", [True, False], ids=["collector-up", "collector-down"])
def test_no_console_errors_on_any_page(demo, new_context, collector_up):
    """No script error on any demo page, whether or not the collector takes the events.

    Collector down: the tag itself still loads (as from the browser's cache), every batch is refused.
    """
    context = new_context()
    refused: list[str] = []  # the bodies of the refused batches
    if not collector_up:  # the batch endpoint refuses connections, as when the collector is down
        context.route(demo.collector + "/v1/**", lambda route: (refused.append(route.request.post_data or ""),
                                                                route.abort("connectionrefused")))  # fmt: skip
    page = context.new_page()
    for path in PAGES:
        page.goto(demo.site + path)
        page.wait_for_function("window.intilery && !Array.isArray(window.intilery)")  # the tag runs
        if path == "/":
            accept_consent(page)
        page.evaluate("intilery.flush()")
        bare = path.partition("?")[0]
        if collector_up:
            demo.wait_for(1, lambda e: e["type"] == "page" and e["context"]["page"]["path"] == bare)
        else:  # the tag tried to send this page's page view (pumping Playwright runs the route handler)
            sent = '"path":"%s"' % bare
            wait_until(lambda: page.evaluate("0") or any(sent in body for body in refused), what=f"a batch from {path}")
    errors = context.console.errors
    if not collector_up:  # the browser itself reports the refused loads; the page must add nothing
        errors = [e for e in errors if "net::ERR_CONNECTION_REFUSED" not in e and "Failed to load resource" not in e]
    assert errors == []


def test_the_demo_command_itself(demo, new_context):
    """Started as a subprocess, driven by a browser, stopped with SIGINT: closed, compressed segments."""
    page = new_context().new_page()
    page.goto(demo.site + "/products.html")
    accept_consent(page)
    demo.wait_for(1, what="(the first page view)")
    assert demo.stop(signal.SIGINT) == 0
    log = demo.log.read_text()
    assert demo.site in log and demo.collector in log and "events" in log
    segments = list((demo.data_dir / "events").glob("**/part-*"))
    assert segments and all(p.name.endswith(".ndjson.gz") for p in segments)
    assert [e["context"]["page"]["path"] for e in demo.events()] == ["/products.html"]


def test_outbound_link_is_tracked_as_the_visitor_leaves(demo, new_context):
    """The track call made on the click arrives although the page is unloading."""
    context = new_context()
    context.route("https://example.com/**", lambda route: route.fulfill(body="<h1>Supplier</h1>", content_type="text/html"))
    page = context.new_page()
    page.goto(demo.site + "/")
    accept_consent(page)
    page.click("#outbound")
    page.wait_for_url("https://example.com/supplier")
    [event] = demo.wait_for(1, lambda e: e.get("event") == "Outbound Link Clicked", "(the outbound click)")
    assert event["properties"] == {"url": "https://example.com/supplier", "text": "Meet our supplier"}


def test_every_demo_page_carries_the_snippet_as_printed():
    """The pages hold what `intilery snippet --consent required` prints, pasted as a site owner would."""
    from collector.serve.demo import DEMO_WRITE_KEY, PASTED_HOST, SITE_DIR
    from collector.serve.snippet import snippet

    printed = snippet(DEMO_WRITE_KEY, PASTED_HOST, consent=True)
    pages = sorted(SITE_DIR.glob("**/*.html"))
    assert len(pages) >= 7
    for page in pages:
        assert printed in page.read_text(), f"{page.name} lacks the snippet"
