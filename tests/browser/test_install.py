"""Installing the tag: the one-line script and the stub snippet, and the first page they send."""

from __future__ import annotations

import re
import uuid

import pytest

from harness import WRITE_KEY, event_named, of_visitor

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def assert_full_page_context(event: dict, url: str, title: str, referrer: str) -> None:
    """A page event as the tag sends it: ids, time, and every context field the design lists."""
    assert event["type"] == "page"
    assert event["source"] == "web"
    assert event["messageId"].startswith("itl-") and UUID4.match(event["messageId"][4:])
    assert UUID4.match(event["anonymousId"])
    assert ISO.match(event["originalTimestamp"])
    ctx = event["context"]
    path, _, search = url.split("://", 1)[1].partition("/")[2].partition("?")
    page = {"path": "/" + path, "referrer": referrer, "search": "?" + search if search else "", "title": title, "url": url}
    assert ctx["page"] == page
    assert {k: event["properties"][k] for k in page} == page
    assert "HeadlessChrome" in ctx["userAgent"]
    assert ctx["locale"] == "en-US"
    assert ctx["timezone"]
    assert ctx["screen"] == {"width": 1280, "height": 720, "density": 1}
    assert ctx["library"]["name"] == "intilery.js" and re.match(r"^\d+\.\d+\.\d+", ctx["library"]["version"])


class TestOneLine:
    def test_first_page_has_full_context_and_campaign(self, tab, site, collector):
        """The one-line install sends a page on load, with the page, device and utm_* campaign."""
        query = "utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=banner"
        url = f"{site.url}/oneline.html?{query}"
        tab.open(url, referer="https://search.example/?q=shoes")
        aid = tab.anonymous_id()

        [page] = collector.wait_for(of_visitor(aid))

        assert_full_page_context(page, url, "One-line install", "https://search.example/?q=shoes")
        assert page["context"]["campaign"] == {
            "source": "newsletter", "medium": "email", "name": "spring", "term": "shoes", "content": "banner",
        }  # fmt: skip
        assert "userId" not in page
        assert page["receivedAt"] and page["context"]["ip"] == "127.0.0.0"  # the collector's part

    def test_requests_go_to_the_script_origin(self, tab, site, collector):
        """Without data-host the tag posts its batches to the origin it was loaded from."""
        tab.open(f"{site.url}/oneline.html")
        collector.wait_for(of_visitor(tab.anonymous_id()))
        tab.js("0")  # let Playwright deliver the request events
        [request] = tab.sent
        assert request["url"] == collector.url + "/v1/batch"
        assert request["body"]["writeKey"] == WRITE_KEY and ISO.match(request["body"]["sentAt"])

    def test_data_host_overrides_and_body_is_text_plain(self, tab, site, collector, front):
        """data-host sends elsewhere; the body is text/plain, so the browser needs no CORS preflight."""
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        collector.wait_for(of_visitor(aid))
        [seen] = front.wait_for(of_visitor(aid))
        assert seen["content_type"] == "text/plain;charset=UTF-8"
        assert seen["body"]["writeKey"] == WRITE_KEY


class TestStub:
    def test_queued_calls_replay_in_order_with_the_page_they_were_made_on(self, tab, site, collector):
        """The stub queues calls before the tag loads; they arrive in order, each with its own page."""
        tab.open(f"{site.url}/stub.html")
        assert tab.js("window.queuedBeforeLoad") >= 6, "the calls were not made before the tag loaded"
        aid = tab.anonymous_id()

        events = collector.wait_for(of_visitor(aid), count=6)

        kinds = [(e["type"], e.get("event"), e["context"]["page"]["path"]) for e in events]
        assert kinds == [
            ("page", None, "/stub.html"),  # the snippet's own page(), at the landing URL
            ("track", "Before load 1", "/stub.html"),
            ("identify", None, "/stub.html"),
            ("track", "Before load 2", "/stub.html"),
            ("track", "Before load 3", "/stub/moved"),  # made after pushState, before load
            ("page", None, "/stub/moved"),  # the automatic page: the path changed before load
        ]
        assert_full_page_context(events[0], f"{site.url}/stub.html", "Stub install", "")
        times = [e["originalTimestamp"] for e in events]
        assert times == sorted(times)
        assert [e.get("userId") for e in events] == [None, None, "user-early", "user-early", "user-early", "user-early"]
        assert events[2]["traits"] == {"plan": "pro"}
        assert events[4]["context"]["page"]["search"] == "?step=3"

    def test_pasting_the_snippet_twice_is_harmless(self, tab, site, collector):
        """A second copy of the snippet neither loads the tag twice nor repeats any call."""
        tab.open(f"{site.url}/stub-twice.html")
        aid = tab.anonymous_id()
        tab.js("intilery.track('Marker')")
        collector.wait_for(event_named("Marker", aid))

        events = collector.wait_for(of_visitor(aid), count=3)
        assert [(e["type"], e.get("event")) for e in events] == [
            ("page", None), ("track", "Between snippets"), ("track", "Marker"),
        ]  # fmt: skip
        assert tab.js("document.querySelectorAll('script[src$=\"/intilery.js\"]').length") == 1

    def test_one_line_and_stub_together_run_one_tag(self, tab, site, collector):
        """The tag loaded a second time (one-line next to the snippet) leaves the first copy alone."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        tab.js(
            """src => new Promise(resolve => {
                 const s = document.createElement('script'); s.src = src; s.dataset.writeKey = 'wk_test';
                 s.onload = resolve; document.head.appendChild(s) })""",
            f"{collector.url}/intilery.js?again",
        )
        tab.js("intilery.track('Once')")
        collector.wait_for(event_named("Once", aid))
        assert [e["type"] for e in collector.events() if e["anonymousId"] == aid] == ["page", "track"]


class TestNames:
    @pytest.mark.parametrize("page", ["element-stub.html", "element-oneline.html"])
    def test_an_element_with_id_intilery_changes_nothing(self, tab, site, collector, page):
        """An element with id="intilery" (window.intilery until a script assigns it) neither stops the tag
        nor makes the stub throw."""
        marker = uuid.uuid4().hex
        tab.page.goto(f"{site.url}/{page}?m={marker}")
        [event] = collector.wait_for(lambda e: e["type"] == "page" and marker in e["context"]["page"]["url"])
        tab.page.wait_for_function("window.intilery && typeof window.intilery.user == 'function'")
        assert tab.anonymous_id() == event["anonymousId"]
        if page == "element-stub.html":
            collector.wait_for(event_named("Next to the element", event["anonymousId"]))
        assert tab.errors == []
