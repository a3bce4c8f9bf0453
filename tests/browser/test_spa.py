"""Single-page navigation: one automatic page per path change, whatever the router does."""

from __future__ import annotations

from harness import event_named, of_visitor


def navigate(tab, script: str) -> None:
    """Runs history calls in one task, then lets the tag's zero-delay check run."""
    tab.js(f"async () => {{ {script}; await new Promise(r => setTimeout(r, 0)) }}")


class TestSinglePageApp:
    def test_exactly_one_page_per_path_change(self, tab, site, collector):
        """pushState, replaceState+pushState, same-path changes and popstate give one page per new path."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        collector.wait_for(of_visitor(aid))

        navigate(tab, "history.pushState({}, '', '/spa/a')")
        # A router saving scroll state on the current entry, then pushing the next route.
        navigate(tab, "history.replaceState({scroll: 1}, '', location.href); history.pushState({}, '', '/spa/b')")
        navigate(tab, "history.pushState({}, '', '/spa/b?tab=2')")  # same path: no page
        navigate(tab, "history.pushState({}, '', '/spa/b?tab=2#details')")  # same path: no page
        navigate(tab, "history.replaceState({}, '', '/spa/b?tab=3')")  # same path: no page
        # A redirecting router: replaceState to one route then pushState to the next, same task.
        navigate(tab, "history.replaceState({}, '', '/spa/c'); history.pushState({}, '', '/spa/d')")
        tab.js("() => new Promise(r => { addEventListener('popstate', () => setTimeout(r, 0), {once: true}); history.back() })")
        tab.js("intilery.track('SPA done')")

        collector.wait_for(event_named("SPA done", aid))
        pages = [e for e in collector.events() if e["anonymousId"] == aid and e["type"] == "page"]
        assert [p["context"]["page"]["path"] for p in pages] == ["/oneline.html", "/spa/a", "/spa/b", "/spa/d", "/spa/c"]
        # Each page's referrer is the page before it in the app; its URL is the one navigated to.
        refs = [p["context"]["page"]["referrer"] for p in pages]
        urls = [p["context"]["page"]["url"] for p in pages]
        assert refs[1:4] == urls[:3]
        assert urls[2] == f"{site.url}/spa/b"

    def test_events_carry_the_current_route(self, tab, site, collector):
        """A track made after a route change carries the new route as its page context."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        navigate(tab, "document.title = 'Cart'; history.pushState({}, '', '/spa/cart?step=1')")
        tab.js("intilery.track('Checkout Started')")
        [event] = collector.wait_for(event_named("Checkout Started", aid))
        assert event["context"]["page"]["path"] == "/spa/cart"
        assert event["context"]["page"]["search"] == "?step=1"
        assert event["context"]["page"]["title"] == "Cart"
        assert event["context"]["page"]["referrer"] == f"{site.url}/oneline.html"

    def test_auto_page_can_be_turned_off(self, tab, site, collector):
        """load(key, {autoPage: false}) sends pages only when asked."""
        tab.open(f"{site.url}/manual.html")
        tab.js("intilery.load('wk_test', {autoPage: false})")
        aid = tab.anonymous_id()
        navigate(tab, "history.pushState({}, '', '/spa/x')")
        tab.js("intilery.page('Manual'); intilery.track('Manual done')")
        collector.wait_for(event_named("Manual done", aid))
        pages = [e for e in collector.events() if e["anonymousId"] == aid and e["type"] == "page"]
        assert [p["name"] for p in pages] == ["Manual"]
