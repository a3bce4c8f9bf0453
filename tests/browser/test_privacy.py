"""Privacy and robustness: GPC, Do Not Track, consent, opt-out, strict CSP, hostile storage."""

from __future__ import annotations

from harness import Tab, event_named, of_visitor, wait_until

GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
DNT_ON = "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
# Storage that throws on every use, as in a sandboxed frame or with cookies blocked.
STORAGE_THROWS = """
for (const name of ['localStorage', 'sessionStorage'])
  Object.defineProperty(window, name, {get() { throw new DOMException('blocked', 'SecurityError') }});
Object.defineProperty(Document.prototype, 'cookie', {
  get() { throw new DOMException('blocked', 'SecurityError') },
  set(v) { throw new DOMException('blocked', 'SecurityError') },
});
"""


def assert_nothing_sent_or_stored(tab, front) -> None:
    """After a flush and a generous pause, no request left the page and nothing was written."""
    tab.js("intilery.flush()")
    tab.page.wait_for_timeout(1000)  # the tag batches within 100 ms: a send would have happened
    assert not front.records and not tab.sent_messages()
    assert tab.storage() == {} or set(tab.storage()) == {"itl_opt"}
    assert tab.cookies() == {}


class TestSignals:
    def test_global_privacy_control_sends_and_stores_nothing(self, tab, site, front):
        """With GPC on, no page, no track, no cookie, no localStorage; debug says why."""
        tab.page.add_init_script(GPC_ON)
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        tab.js("intilery.debug(true); intilery.identify('user-gpc'); intilery.track('Should not go')")
        assert_nothing_sent_or_stored(tab, front)
        assert any('dropped track "Should not go": Global Privacy Control' in line for line in tab.console)

    def test_gpc_can_be_overridden_by_an_explicit_opt_in(self, tab, site, collector):
        """optIn() is the visitor's own choice and outweighs the browser-wide signal."""
        tab.page.add_init_script(GPC_ON)
        tab.open(f"{site.url}/oneline.html")
        tab.js("intilery.optIn(); intilery.track('Chose to share')")
        collector.wait_for(event_named("Chose to share", tab.anonymous_id()))

    def test_gpc_can_be_ignored_by_the_site_owner(self, tab, site, collector):
        """load(key, {respectGPC: false}) turns the default off."""
        tab.page.add_init_script(GPC_ON)
        tab.open(f"{site.url}/manual.html")
        tab.js("intilery.load('wk_test', {respectGPC: false})")
        collector.wait_for(of_visitor(tab.anonymous_id()))

    def test_do_not_track_only_when_asked(self, tab, site, front, collector):
        """DNT is ignored by default (as analytics.js does) and honoured with respectDoNotTrack."""
        tab.page.add_init_script(DNT_ON)
        tab.open(f"{site.url}/manual.html")
        tab.js("host => intilery.load('wk_test', {host, respectDoNotTrack: true, debug: true})", front.url)
        tab.js("intilery.track('DNT')")
        assert_nothing_sent_or_stored(tab, front)
        assert any("Do Not Track" in line for line in tab.console)

        tab.open(f"{site.url}/oneline.html")  # default options: DNT alone does not stop it
        collector.wait_for(of_visitor(tab.anonymous_id()))


class TestConsent:
    def test_consent_mode_sends_nothing_until_opt_in(self, tab, site, collector, front):
        """data-consent="required": nothing stored or sent; optIn() then sends what was held and more."""
        tab.open(f"{site.url}/oneline.html?host={front.url}&consent=required")
        tab.js("intilery.debug(true); intilery.track('Before consent')")
        assert_nothing_sent_or_stored(tab, front)
        assert any("waiting for consent" in line for line in tab.console)

        tab.js("intilery.optIn(); intilery.track('After consent')")
        aid = tab.anonymous_id()
        events = collector.wait_for(of_visitor(aid), count=3)
        assert [(e["type"], e.get("event")) for e in events] == [
            ("page", None), ("track", "Before consent"), ("track", "After consent"),
        ]  # fmt: skip
        assert tab.cookies()["itl_aid"]["value"] == aid and tab.storage()["itl_opt"] == "in"

        tab.open(f"{site.url}/other.html?host={front.url}&consent=required")  # consent is remembered
        collector.wait_for(lambda e: e["anonymousId"] == aid and e["context"]["page"]["path"] == "/other.html")

    def test_opt_out_persists_and_clears_the_visitor(self, tab, site, collector, front):
        """optOut() stops sending, forgets the ids, and still holds on the next page load."""
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        collector.wait_for(of_visitor(aid))
        tab.js("intilery.identify('user-out'); intilery.optOut(); intilery.track('After opt-out')")
        tab.open(f"{site.url}/other.html?host={front.url}")
        tab.js("intilery.debug(true); intilery.track('Next page')")
        before = len(front.records)
        tab.js("intilery.flush()")
        tab.page.wait_for_timeout(1000)
        assert len(front.records) == before
        assert not [e for e in collector.events() if e["anonymousId"] == aid and e.get("event") in ("After opt-out", "Next page")]
        assert tab.storage() == {"itl_opt": "out"} and set(tab.cookies()) == {"itl_opt"}
        assert any('dropped track "Next page": opted out' in line for line in tab.console)

    def test_opt_out_on_one_subdomain_holds_on_another(self, context, site, collector):
        """optOut() on a.example.com holds on b.example.com, which had stored the visitor before."""
        a = Tab(context.new_page()).open(f"http://a.example.com:{site.port}/oneline.html")
        aid = a.anonymous_id()
        b = Tab(context.new_page()).open(f"http://b.example.com:{site.port}/oneline.html")
        assert b.anonymous_id() == aid
        collector.wait_for(of_visitor(aid), count=2)

        a.js("intilery.optOut()")
        sent = len(b.sent_messages())
        b.open(f"http://b.example.com:{site.port}/other.html")
        b.js("intilery.debug(true); intilery.track('After opt-out elsewhere')")
        dropped = 'dropped track "After opt-out elsewhere": opted out'
        wait_until(lambda: b.js("0") or any(dropped in line for line in b.console), what="the drop")
        assert len(b.sent_messages()) == sent
        assert b.cookies()["itl_opt"]["value"] == "out" and "itl_aid" not in b.cookies()
        assert not a.errors + b.errors


class TestHostileSites:
    def test_strict_content_security_policy(self, tab, site, collector):
        """Under default-src 'none' with only the collector allowed (and Trusted Types), the tag works."""
        tab.open(f"{site.url}/oneline.html?csp=1")
        # The policy is in force: the page may not even fetch from its own origin.
        assert tab.js("() => fetch('/other.html').then(() => 'allowed', () => 'blocked')") == "blocked"
        aid = tab.anonymous_id()
        tab.js("intilery.track('Under CSP')")
        collector.wait_for(event_named("Under CSP", aid))
        assert collector.wait_for(of_visitor(aid), count=2)[0]["type"] == "page"
        tab.js("0")
        violations = [line for line in tab.console if "Content Security Policy" in line]
        assert violations and all("/other.html" in line or "favicon" in line for line in violations)

    def test_storage_that_throws_degrades_to_memory(self, tab, site, collector):
        """localStorage and cookies that throw: the page works, events flow, identity holds in memory."""
        tab.page.add_init_script(STORAGE_THROWS)
        tab.open(f"{site.url}/oneline.html")
        assert tab.js("() => { try { localStorage; document.cookie; return 'usable' } catch (e) { return e.name } }") == (
            "SecurityError"
        )
        aid = tab.anonymous_id()
        tab.js("intilery.identify('user-mem', {a: 1}); intilery.track('In memory')")
        [event] = collector.wait_for(event_named("In memory", aid))
        assert event["userId"] == "user-mem"
        assert tab.js("[intilery.user().anonymousId(), intilery.user().id()]") == [aid, "user-mem"]
        pages = collector.wait_for(of_visitor(aid), count=3)
        assert [e["type"] for e in pages] == ["page", "identify", "track"]

    def test_never_throws_into_the_page(self, tab, site, collector):
        """Bad arguments, unknown calls, unserialisable or oversized data: no exception reaches the page."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        result = tab.js(
            """() => {
              const loop = {}; loop.self = loop;
              intilery.debug(true);
              intilery.track('Circular', loop);
              intilery.track('Huge', {blob: 'x'.repeat(40000)});
              intilery.push(['noSuchMethod', 1]);
              intilery.track();
              intilery.identify(undefined, undefined, undefined, 'not a function');
              intilery.ready('not a function');
              intilery.page(null, null, null, null);
              intilery.track('Callback throws', {}, () => { throw new Error('host callback') });
              intilery.track('Still fine');
              return 'no exception';
            }"""
        )
        assert result == "no exception"
        collector.wait_for(event_named("Still fine", aid))
        names = {e.get("event") for e in collector.events() if e["anonymousId"] == aid}
        assert "Circular" not in names and "Huge" not in names
        # The throwing callback runs 300 ms after its call: logged in debug mode, not thrown.
        wait_until(lambda: tab.js("0") or any("host callback" in line for line in tab.console),
                   what="the callback's log")  # fmt: skip
        assert any("over 32 KB" in line for line in tab.console)
