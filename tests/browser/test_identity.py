"""The API calls and the identity they carry: stored fields, persistence, reset, cookies."""

from __future__ import annotations

import json
import time

from harness import Tab, event_named, of_visitor

YEAR = 365 * 24 * 3600


class TestCalls:
    def test_track_identify_group_alias_land_with_ids_and_fields(self, tab, site, collector):
        """Each call is stored with its own fields, and every one carries the visitor's ids."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        tab.js(
            """() => {
              intilery.track('Clicked Buy', {sku: 'A-1', price: 9.5});
              intilery.identify('user-42', {email: 'ann@example.com', plan: 'free'});
              intilery.identify({plan: 'pro'});
              intilery.track('Viewed Plans', {}, {integrations: {All: false}, context: {app: 'web'}});
              intilery.group('acme', {name: 'Acme Ltd', seats: 5});
              intilery.alias('user-42-new');
              intilery.page('Docs', 'Setup', {section: 2});
              intilery.page('Pricing');
            }"""
        )

        events = collector.wait_for(of_visitor(aid), count=9)[1:]  # after the automatic first page

        clicked, ident1, ident2, viewed, group, alias, docs, pricing = events
        assert (clicked["type"], clicked["event"], clicked["properties"]) == ("track", "Clicked Buy", {"sku": "A-1", "price": 9.5})
        assert "userId" not in clicked
        assert (ident1["type"], ident1["userId"]) == ("identify", "user-42")
        assert ident1["traits"] == {"email": "ann@example.com", "plan": "free"}
        assert ident2["userId"] == "user-42"
        assert ident2["traits"] == {"email": "ann@example.com", "plan": "pro"}  # traits accumulate
        assert (viewed["event"], viewed["userId"]) == ("Viewed Plans", "user-42")
        assert viewed["integrations"] == {"All": False} and viewed["context"]["app"] == "web"
        assert (group["type"], group["groupId"], group["userId"]) == ("group", "acme", "user-42")
        assert group["traits"] == {"name": "Acme Ltd", "seats": 5}
        assert (alias["type"], alias["userId"], alias["previousId"]) == ("alias", "user-42-new", "user-42")
        assert (docs["category"], docs["name"], docs["properties"]["section"]) == ("Docs", "Setup", 2)
        assert docs["properties"]["name"] == "Setup" and docs["properties"]["path"] == "/oneline.html"
        assert (pricing.get("category"), pricing["name"]) == (None, "Pricing")
        assert {e["anonymousId"] for e in events} == {aid}
        assert len({e["messageId"] for e in events}) == len(events)

    def test_callbacks_and_ready_run_and_user_reports_identity(self, tab, site, collector):
        """Callbacks (Segment's last argument) and ready() run; user() reads the stored identity."""
        tab.open(f"{site.url}/oneline.html")
        got = tab.js(
            """() => new Promise(resolve => {
                 const seen = [];
                 intilery.ready(() => seen.push('ready'));
                 intilery.identify('user-7', {name: 'Bo'}, () => seen.push('identify'));
                 intilery.track('With callback', {a: 1}, () => {
                   seen.push('track');
                   const u = intilery.user();
                   resolve({seen, id: u.id(), traits: u.traits(), aid: u.anonymousId()});
                 });
               })"""
        )
        assert got["seen"] == ["ready", "identify", "track"]
        assert (got["id"], got["traits"]) == ("user-7", {"name": "Bo"})
        collector.wait_for(event_named("With callback", got["aid"]))


    def test_alias_without_a_user_id_sends_nothing(self, tab, site, collector):
        """alias() with no userId is dropped (debug says so), not sent with the userId "undefined"."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        tab.js("intilery.debug(true); intilery.alias(); intilery.track('After alias')")
        collector.wait_for(event_named("After alias", aid))  # queued after the alias: it would have gone first
        assert not [e for e in collector.events() if e["anonymousId"] == aid and e["type"] == "alias"]
        assert any("alias: no userId" in line for line in tab.console)


class TestIdentity:
    def test_identity_persists_across_loads_and_reset_clears_it(self, tab, site, collector):
        """anonymousId, userId and traits survive a page load; reset() forgets them all."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        tab.js("intilery.identify('user-9', {plan: 'team'}); intilery.group('g-1', {tier: 'gold'})")

        tab.open(f"{site.url}/other.html")
        assert tab.js("[intilery.user().anonymousId(), intilery.user().id(), intilery.user().traits()]") == [
            aid, "user-9", {"plan": "team"},
        ]  # fmt: skip
        [page] = collector.wait_for(lambda e: e["anonymousId"] == aid and e["context"]["page"]["path"] == "/other.html")
        assert page["userId"] == "user-9"

        tab.js("intilery.reset(); intilery.track('After reset')")
        new_aid = tab.anonymous_id()
        [after] = collector.wait_for(event_named("After reset", new_aid))
        assert "userId" not in after
        assert after["anonymousId"] != aid
        assert tab.js("[intilery.user().id(), intilery.user().traits()]") == [None, {}]
        stored = tab.storage()
        assert not {"itl_uid", "itl_traits", "itl_gid", "itl_gtraits"} & set(stored)
        assert "itl_uid" not in tab.cookies()

        tab.open(f"{site.url}/oneline.html")  # and it stays forgotten
        assert tab.js("intilery.user().id()") is None

    def test_cookie_is_first_party_for_a_year_and_the_one_truth(self, tab, site, collector):
        """The ids live in SameSite=Lax cookies for a year (mirrored in localStorage); traits in localStorage."""
        tab.open(f"{site.url}/oneline.html")
        aid = tab.anonymous_id()
        tab.js("intilery.identify('user-c', {x: 1})")
        collector.wait_for(lambda e: e["type"] == "identify" and e["anonymousId"] == aid)

        cookies = tab.cookies()
        assert cookies["itl_aid"]["value"] == aid and cookies["itl_uid"]["value"] == "user-c"
        for c in (cookies["itl_aid"], cookies["itl_uid"]):
            assert c["sameSite"] == "Lax" and c["path"] == "/" and not c["secure"]  # Secure only on https
            assert abs(c["expires"] - (time.time() + YEAR)) < 24 * 3600
        stored = tab.storage()
        assert stored["itl_aid"] == aid and stored["itl_uid"] == "user-c"
        assert json.loads(stored["itl_traits"]) == {"x": 1}

        # Cookies cleared (by the visitor, or a sibling subdomain's reset): the mirror does not bring them back.
        tab.page.context.clear_cookies()
        tab.open(f"{site.url}/other.html")
        assert tab.js("intilery.user().id()") is None
        new_aid = tab.anonymous_id()
        assert new_aid != aid and tab.cookies()["itl_aid"]["value"] == new_aid
        assert tab.js("intilery.user().traits()") == {}  # another visitor's traits are not carried over

    def test_cookie_goes_on_the_top_level_domain(self, tab, site, collector):
        """On www.shop.example.com the cookie is set for example.com, shared by its subdomains."""
        url = f"http://www.shop.example.com:{site.port}/oneline.html"  # mapped to 127.0.0.1 in this browser
        tab.open(url)
        aid = tab.anonymous_id()
        collector.wait_for(of_visitor(aid))
        cookie = tab.cookies()["itl_aid"]
        assert cookie["domain"] == ".example.com" and cookie["value"] == aid
        assert "itl_tld" not in tab.cookies()  # the probe cookie is removed

        tab.open(f"http://blog.example.com:{site.port}/other.html")
        assert tab.anonymous_id() == aid  # another subdomain: the same visitor

    def test_sign_out_on_one_subdomain_holds_on_another(self, context, site, collector):
        """reset() on a.example.com is not undone by b.example.com's localStorage on its next load."""
        a = Tab(context.new_page()).open(f"http://a.example.com:{site.port}/oneline.html")
        a.js("intilery.identify('user-sib', {plan: 'pro'})")
        aid = a.anonymous_id()
        b = Tab(context.new_page()).open(f"http://b.example.com:{site.port}/oneline.html")
        b.js("intilery.identify({seen: 'b'})")
        assert b.js("[intilery.user().anonymousId(), intilery.user().id()]") == [aid, "user-sib"]

        a.js("intilery.reset()")  # signed out on a
        b.open(f"http://b.example.com:{site.port}/other.html")
        assert b.js("[intilery.user().id(), intilery.user().traits()]") == [None, {}]
        assert b.anonymous_id() != aid
        a.open(f"http://a.example.com:{site.port}/other.html")
        assert a.js("intilery.user().id()") is None and a.anonymous_id() == b.anonymous_id()
        assert "itl_uid" not in a.cookies()
        assert not a.errors + b.errors
