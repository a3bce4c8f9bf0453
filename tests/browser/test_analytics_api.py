"""The rest of analytics.js's API in the tag: source middleware, setAnonymousId, user and group
objects, trackLink / trackForm, the ajs_* query-string API, sessions and outbound links; and a
hostile page (storage that throws, a middleware that throws, a strict CSP) where nothing breaks."""

from __future__ import annotations

import socket

import pytest

from collector.serve.snippet import METHODS
from harness import WRITE_KEY, event_named, of_visitor, wait_until
from test_privacy import STORAGE_THROWS

MINUTE = 60_000  # ms


@pytest.fixture
def silent():
    """A collector URL that takes connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def load(tab, site, collector, query: str = "", **options) -> str:
    """Opens links.html, loads the tag with ``options`` (host: the collector); the anonymousId."""
    tab.page.goto(f"{site.url}/links.html{query}")
    tab.page.wait_for_function("window.intilery && !Array.isArray(window.intilery)")
    tab.js("([key, o]) => intilery.load(key, o)", [WRITE_KEY, {"host": collector.url, **options}])
    return tab.anonymous_id()


class TestSourceMiddleware:
    def test_middleware_changes_drops_and_chains(self, tab, site, collector):
        """Each middleware sees the message (Segment's {payload: {obj}, next}); next(null) drops it."""
        aid = load(tab, site, collector)
        tab.js(
            """() => {
              intilery.addSourceMiddleware(({payload, next}) => {
                if (payload.obj.event == 'Secret') return next(null);
                payload.obj.properties = {...payload.obj.properties, first: true};
                next(payload);
              });
              intilery.addSourceMiddleware(({payload, next, integrations}) => {
                payload.obj.context.seen = typeof integrations;
                next(payload);
              });
              intilery.track('Secret', {pin: 1234});
              intilery.track('Changed', {plan: 'pro'});
            }"""
        )
        [changed] = collector.wait_for(event_named("Changed", aid))
        assert changed["properties"] == {"plan": "pro", "first": True}
        assert changed["context"]["seen"] == "object"
        tab.js("intilery.track('After')")
        collector.wait_for(event_named("After", aid))
        assert not [e for e in collector.events() if e.get("event") == "Secret"]

    def test_a_middleware_that_throws_drops_nothing(self, tab, site, collector):
        """The message goes on as it was before that middleware (even if it changed it, then threw); debug logs it."""
        aid = load(tab, site, collector, debug=True)
        tab.js(
            """() => {
              intilery.addSourceMiddleware(({payload}) => { payload.obj.properties.broken = 1; throw new Error('bad middleware') });
              intilery.addSourceMiddleware(({payload, next}) => { payload.obj.properties.later = 1; next(payload) });
              intilery.track('Through a broken middleware', {plan: 'pro'});
            }"""
        )
        [event] = collector.wait_for(event_named("Through a broken middleware", aid))
        assert event["properties"] == {"plan": "pro", "later": 1}
        assert any("bad middleware" in line for line in tab.console)


    def test_a_message_structured_clone_refuses_still_goes_through_every_middleware(self, tab, site, collector):
        """An element, a function or a Proxy in properties (or no structuredClone, old Safari): the middleware
        still runs on a copy of the message as it is sent; one that cannot be sent at all (BigInt) is dropped."""
        aid = load(tab, site, collector, debug=True)
        tab.js(
            """() => {
              intilery.addSourceMiddleware(({payload, next}) => { delete payload.obj.properties.email; next(payload) });
              intilery.track('Odd properties', {email: 'a@example.com', el: document.body, fn: () => 1,
                                                 proxy: new Proxy({a: 1}, {}), plan: 'pro'});
              intilery.track('Unsendable', {email: 'b@example.com', n: 1n});
              delete window.structuredClone;
              intilery.track('Old Safari', {email: 'c@example.com'});
            }"""
        )
        [odd] = collector.wait_for(event_named("Odd properties", aid))
        assert odd["properties"] == {"el": {}, "proxy": {"a": 1}, "plan": "pro"}
        [old] = collector.wait_for(event_named("Old Safari", aid))
        assert old["properties"] == {}
        assert not [e for e in collector.events() if "@example.com" in str(e.get("properties"))]
        assert not [e for e in collector.events() if e.get("event") == "Unsendable"] and not tab.errors

    def test_a_middleware_calling_next_later_with_an_unsendable_payload_does_not_throw_into_the_page(
        self, tab, site, collector
    ):
        aid = load(tab, site, collector)
        tab.js(
            """() => {
              intilery.addSourceMiddleware(({payload, next}) => setTimeout(() => {
                if (payload.obj.event == 'Later') payload.obj.properties.n = 10n;
                next(payload);
              }));
              intilery.track('Later');
              intilery.track('Fine');
            }"""
        )
        collector.wait_for(event_named("Fine", aid))
        tab.settle()
        assert not tab.errors
        assert not [e for e in collector.events() if e.get("event") == "Later"]

class TestIdentity:
    def test_set_anonymous_id_user_traits_and_group(self, tab, site, collector):
        """setAnonymousId() is the id of what follows; user().traits(), group().id(), group().traits()."""
        load(tab, site, collector)
        state = tab.js(
            """() => {
              intilery.setAnonymousId('anon-from-elsewhere');
              intilery.identify('user-7', {email: 'u7@example.com'});
              intilery.group('acme', {plan: 'enterprise'});
              intilery.group({seats: 5});
              return {aid: intilery.user().anonymousId(), traits: intilery.user().traits(),
                      gid: intilery.group().id(), gtraits: intilery.group().traits()};
            }"""
        )
        assert state == {"aid": "anon-from-elsewhere", "traits": {"email": "u7@example.com"}, "gid": "acme",
                         "gtraits": {"plan": "enterprise", "seats": 5}}  # fmt: skip
        events = collector.wait_for(of_visitor("anon-from-elsewhere"), count=3)
        assert [e["type"] for e in events] == ["identify", "group", "group"]

    def test_the_stub_snippet_queues_every_method_of_the_tag(self, tab, site):
        """collector/serve/snippet.py's METHODS are exactly the tag's methods (a new one would be lost before load)."""
        tab.open(f"{site.url}/oneline.html")
        methods = tab.js("Object.keys(intilery).filter(k => typeof intilery[k] == 'function' && !['push', 'user'].includes(k))")
        assert sorted(methods) == sorted(METHODS.split())


class TestQueryString:
    def test_ajs_parameters_identify_track_and_set_the_anonymous_id(self, tab, site, collector):
        """?ajs_aid, ?ajs_uid with ajs_trait_*, ?ajs_event with ajs_prop_*, as analytics.js reads them."""
        query = "?ajs_aid=aid-from-email&ajs_uid=user-9&ajs_trait_email=u9%40example.com&ajs_event=Email%20Clicked&ajs_prop_campaign=winter"
        load(tab, site, collector, query)
        events = collector.wait_for(of_visitor("aid-from-email"), count=3)
        identify = next(e for e in events if e["type"] == "identify")
        assert (identify["userId"], identify["traits"]) == ("user-9", {"email": "u9@example.com"})
        track = next(e for e in events if e["type"] == "track")
        assert (track["event"], track["properties"], track["userId"]) == ("Email Clicked", {"campaign": "winter"}, "user-9")


class TestSessions:
    def test_every_message_carries_the_session_and_the_first_starts_it(self, tab, site, collector):
        """context.sessionId is the start time in ms; sessionStart: true on the first message only."""
        aid = load(tab, site, collector)
        tab.js("intilery.track('One'); intilery.track('Two')")
        page, one, two = collector.wait_for(of_visitor(aid), count=3)
        sid = page["context"]["sessionId"]
        assert isinstance(sid, int) and abs(sid - tab.js("Date.now()")) < 3_600_000
        assert page["context"]["sessionStart"] is True
        assert [e["context"]["sessionId"] for e in (one, two)] == [sid, sid]
        assert "sessionStart" not in one["context"] and "sessionStart" not in two["context"]

    def test_a_new_session_after_the_timeout_and_after_reset(self, tab, site, collector):
        """30 minutes without a call (the last call's time moved back), or reset(): a new session."""
        aid = load(tab, site, collector)
        tab.js("intilery.track('Before the pause')")
        [before] = collector.wait_for(event_named("Before the pause", aid))
        tab.js(f"localStorage.setItem('itl_sat', Date.now() - 31 * {MINUTE})")
        tab.js("intilery.track('After the pause')")
        [after] = collector.wait_for(event_named("After the pause", aid))
        assert after["context"]["sessionId"] > before["context"]["sessionId"]
        assert after["context"]["sessionStart"] is True
        tab.js(f"localStorage.setItem('itl_sat', Date.now() - 29 * {MINUTE}); intilery.track('Within 30 minutes')")
        [within] = collector.wait_for(event_named("Within 30 minutes", aid))
        assert within["context"]["sessionId"] == after["context"]["sessionId"]
        tab.js("intilery.reset(); intilery.track('After reset')")
        [reset] = collector.wait_for(event_named("After reset", tab.anonymous_id()))  # reset() made a new id
        assert reset["context"]["sessionId"] >= within["context"]["sessionId"] and reset["context"]["sessionStart"] is True

    def test_the_timeout_is_configurable(self, tab, site, collector):
        """sessionTimeout: 60000 (ms): two minutes without a call start a new session."""
        aid = load(tab, site, collector, sessionTimeout=MINUTE)
        tab.js("intilery.track('First')")
        [first] = collector.wait_for(event_named("First", aid))
        tab.js(f"localStorage.setItem('itl_sat', Date.now() - 2 * {MINUTE}); intilery.track('Second')")
        [second] = collector.wait_for(event_named("Second", aid))
        assert second["context"]["sessionStart"] is True and second["context"]["sessionId"] > first["context"]["sessionId"]


class TestLinksAndForms:
    def test_track_link_sends_before_the_navigation_goes_on(self, tab, site, collector):
        """trackLink(elements, event, properties): the click's event is stored (sent from this page: the
        next has no tag), then the page goes on."""
        aid = load(tab, site, collector)
        tab.js(
            """() => intilery.trackLink(document.querySelectorAll('a.tracked'), 'Link Clicked',
                                        a => ({href: a.getAttribute('href')}))"""
        )
        tab.page.click("#next")
        tab.page.wait_for_url("**/plain.html")
        [event] = collector.wait_for(event_named("Link Clicked", aid))
        assert event["properties"] == {"href": "/plain.html"}
        # a link it was not given is left alone
        assert not [e for e in collector.events() if e.get("properties", {}).get("href") == "/plain.html?plain=1"]

    def test_track_form_sends_before_the_submission_goes_on(self, tab, site, collector):
        """trackForm(form, event, properties): the event is stored and the form is submitted."""
        aid = load(tab, site, collector)
        tab.js("intilery.trackForm(document.getElementById('signup'), 'Signed Up', {source: 'form'})")
        tab.page.click("#send")
        tab.page.wait_for_url("**/plain.html?plan=pro")
        [event] = collector.wait_for(event_named("Signed Up", aid))
        assert event["properties"] == {"source": "form"}


    def test_track_form_with_a_control_named_submit_keeps_the_pressed_button(self, tab, site, collector):
        """A control named submit hides form.submit(): the form is still sent, with the button pressed
        (e.submitter) and nothing thrown into the page."""
        aid = load(tab, site, collector)
        tab.js(
            """() => {
              const f = document.getElementById('signup');
              f.insertAdjacentHTML('beforeend', '<input type=submit id=go name=submit value=Go>');
              intilery.trackForm(f, 'Submitted By Button');
            }"""
        )
        tab.page.click("#go")
        tab.page.wait_for_url("**/plain.html?plan=pro&submit=Go")
        collector.wait_for(event_named("Submitted By Button", aid))
        assert not tab.errors

    def test_track_form_leaves_a_submission_the_page_cancelled_alone(self, tab, site, collector):
        """The page's own handlers (on the form, or delegated like React's) cancel and post by fetch: the
        event is sent, the tag does not submit the form a second time."""
        aid = load(tab, site, collector)
        tab.js(
            """() => {
              const f = document.getElementById('signup');
              intilery.trackForm(f, 'Posted By Script');
              document.addEventListener('submit', e => { e.preventDefault(); window.posted = (window.posted || 0) + 1 });
            }"""
        )
        tab.page.click("#send")
        collector.wait_for(event_named("Posted By Script", aid))
        tab.page.wait_for_timeout(700)
        assert tab.page.url.endswith("/links.html") and tab.js("window.posted") == 1

    @pytest.mark.parametrize("element", ["form", "link"])
    def test_a_cancelled_submission_or_click_stays_cancelled_while_a_send_is_in_flight(self, tab, site, collector, element):
        """With an earlier batch still on its way, the tag's wait for delivery ends at once; the page's
        handler that runs after the tag's (and cancels) still wins: the browser stays on the page."""
        aid = load(tab, site, collector)
        held, released = [], []
        tab.page.route("**/v1/batch", lambda route: route.continue_() if released else held.append(route))
        tab.js("intilery.track('Before')")
        wait_until(lambda: tab.js("0") or held, timeout=10, what="the tag's batch in flight")  # js() pumps the routes
        tab.js(
            """(element) => {
              const el = element == 'form' ? document.getElementById('signup') : document.getElementById('plain')
              element == 'form' ? intilery.trackForm(el, 'Cancelled') : intilery.trackLink(el, 'Cancelled')
              document.addEventListener(element == 'form' ? 'submit' : 'click', e => e.preventDefault())
            }""",
            element,
        )
        tab.page.click("#send" if element == "form" else "#plain")
        tab.page.wait_for_timeout(700)  # past the tag's 300 ms hold
        assert tab.page.url.endswith("/links.html")
        released.append(True)  # a batch routed from now on goes straight on, the held ones here
        for route in held:
            route.continue_()
        tab.page.unroute("**/v1/batch")  # later batches are not routed (the waits below do not pump)
        collector.wait_for(event_named("Cancelled", aid), poke=lambda: tab.js("0"))  # pumps a route not yet removed

    def test_track_link_lets_the_browser_handle_other_targets_downloads_and_modified_clicks(self, tab, site, collector):
        """Only a plain primary click on a link to this frame (no target or _self) is held and followed by the
        tag; a named target, a download, an Alt-click, or a click the page cancelled are the browser's."""
        aid = load(tab, site, collector)
        tab.js(
            """() => {
              const p = document.getElementById('next').parentNode;
              p.insertAdjacentHTML('beforeend', '<a id=side href=/plain.html?side=1 target=side>Side</a>'
                + ' <a id=dl href=/plain.html?dl=1 download>Download</a> <a id=self href=/plain.html?self=1 target=_self>Self</a>');
              intilery.trackLink(document.querySelectorAll('a'), 'Any Link', a => ({id: a.id}));
              document.getElementById('plain').addEventListener('click', e => e.preventDefault());
            }"""
        )
        with tab.page.context.expect_page() as popup:
            tab.page.click("#side")
        popup.value.close()
        with tab.page.expect_download():
            tab.page.click("#dl")
        tab.page.click("#plain")
        tab.page.click("#next", modifiers=["Alt"])
        collector.wait_for(event_named("Any Link", aid), count=4)
        tab.page.wait_for_timeout(700)
        assert tab.page.url.endswith("/links.html")
        tab.page.click("#self")
        tab.page.wait_for_url("**/plain.html?self=1")

    def test_a_collector_that_never_answers_does_not_hold_the_navigation(self, tab, site, silent):
        """The navigation waits for delivery at most a moment (300 ms), not for an answer that never comes."""
        tab.page.goto(f"{site.url}/links.html")
        tab.page.wait_for_function("window.intilery && !Array.isArray(window.intilery)")
        tab.js("([key, host]) => intilery.load(key, {host, autoPage: false})", [WRITE_KEY, silent])
        tab.js("intilery.trackLink(document.getElementById('next'), 'Clicked While Down')")
        tab.page.click("#next")
        tab.page.wait_for_url("**/plain.html")

    def test_outbound_links_are_tracked_when_asked(self, tab, site, collector):
        """trackOutbound: a click to another host sends Outbound Link Clicked with the URL, then leaves."""
        aid = load(tab, site, collector, trackOutbound=True)
        out = tab.js("document.getElementById('out').href = 'http://www.shop.example.com:' + location.port + '/plain.html'")
        tab.js("document.getElementById('next').addEventListener('click', e => e.preventDefault())")
        tab.page.click("#next")  # same host (and cancelled by the page): not outbound
        tab.page.click("#out")
        tab.page.wait_for_url(out)
        [event] = collector.wait_for(event_named("Outbound Link Clicked", aid))
        assert event["properties"] == {"url": out}
        assert len([e for e in collector.events() if e.get("event") == "Outbound Link Clicked" and e["anonymousId"] == aid]) == 1

    def test_outbound_links_are_not_tracked_by_default(self, tab, site, collector):
        aid = load(tab, site, collector)
        out = tab.js("document.getElementById('out').href = 'http://www.shop.example.com:' + location.port + '/plain.html'")
        tab.page.click("#out")
        tab.page.wait_for_url(out)
        tab.page.go_back()
        tab.page.wait_for_function("window.intilery && !Array.isArray(window.intilery)")
        tab.js("([key, host]) => intilery.load(key, {host})", [WRITE_KEY, collector.url])
        tab.js("intilery.track('Marker')")
        collector.wait_for(event_named("Marker", aid))
        assert not [e for e in collector.events() if e.get("event") == "Outbound Link Clicked" and e["anonymousId"] == aid]


class TestHostilePage:
    def test_throwing_storage_and_middleware_and_bad_elements(self, tab, site, collector):
        """Storage that throws, a middleware that throws, trackLink given nonsense: the page is untouched,
        events flow, links and forms still work."""
        tab.page.add_init_script(STORAGE_THROWS)
        aid = load(tab, site, collector, "?ajs_event=From%20Query", debug=True, trackOutbound=True)
        result = tab.js(
            """() => {
              intilery.addSourceMiddleware(() => { throw new Error('hostile middleware') });
              intilery.addSourceMiddleware('not a function');
              intilery.trackLink(null, 'Nothing');
              intilery.trackLink(42, 'Nothing');
              intilery.trackForm(document.getElementById('signup'), () => { throw new Error('hostile event name') });
              intilery.setAnonymousId();
              intilery.track('Hostile but fine');
              return 'no exception';
            }"""
        )
        assert result == "no exception"
        events = collector.wait_for(lambda e: e.get("event") in ("Hostile but fine", "From Query"), count=2)
        assert {e["event"] for e in events} == {"Hostile but fine", "From Query"}
        assert all(e["context"]["sessionId"] for e in events)
        tab.page.click("#send")  # its event name throws: logged, the submission goes on
        tab.page.wait_for_url("**/plain.html?plan=pro")
        assert any("hostile middleware" in line for line in tab.console)

    def test_strict_content_security_policy(self, tab, site, collector):
        """Under default-src 'none' (only the collector allowed) links, middleware and sessions work."""
        tab.page.goto(f"{site.url}/links.html?csp=1")
        tab.page.wait_for_function("window.intilery && !Array.isArray(window.intilery)")
        tab.js("([key, host]) => intilery.load(key, {host, trackOutbound: true})", [WRITE_KEY, collector.url])
        aid = tab.anonymous_id()
        tab.js(
            """() => {
              intilery.addSourceMiddleware(({payload, next}) => { payload.obj.properties.csp = true; next(payload) });
              intilery.trackLink(document.getElementById('next'), 'CSP Link');
            }"""
        )
        tab.page.click("#next")
        tab.page.wait_for_url("**/plain.html")
        [event] = collector.wait_for(event_named("CSP Link", aid))
        assert event["properties"] == {"csp": True} and event["context"]["sessionId"]
