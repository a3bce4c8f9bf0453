"""Delivery: the unload path, outages, retries, the persisted queue and its tabs, request sizes."""

from __future__ import annotations

import json

from harness import Tab, event_named, of_visitor, wait_until


def count(events: list[dict], name: str) -> int:
    return sum(1 for e in events if e.get("event") == name)


class TestUnload:
    def test_event_tracked_right_before_navigating_away_arrives(self, tab, site, collector, front):
        """A track() followed at once by navigation is delivered by the page being left, and stored once."""
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        collector.wait_for(of_visitor(aid))
        tab.js("intilery.track('Leaving', {to: 'other'}); location.href = '/other.html?host=' + encodeURIComponent(%r)"
               % front.url)  # fmt: skip
        tab.wait_loaded()

        collector.wait_for(lambda e: e["anonymousId"] == aid and e["context"]["page"]["path"] == "/other.html")
        leaving = collector.wait_for(event_named("Leaving", aid))
        assert len(leaving) == 1
        # The first request that carried it came from the page being left (a beacon, or the
        # keepalive fetch when the batch timer won the race), not from the next page's resend.
        first = front.requests_with(event_named("Leaving"))[0]
        assert all(m["context"]["page"]["path"] == "/oneline.html" for m in first["body"]["batch"])

    def test_what_waits_for_a_retry_leaves_by_beacon(self, tab, site, collector, front):
        """A message waiting out a Retry-After goes by sendBeacon (text/plain Blob) when the page is left."""
        front.fail(lambda m: m.get("event") == "Waiting", 503, retry_after=600)
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        tab.js("intilery.track('Waiting')")
        wait_until(lambda: front.requests_with(event_named("Waiting")), what="the 503")
        tab.js("location.href = '/other.html?host=' + encodeURIComponent(%r)" % front.url)
        tab.wait_loaded()

        collector.wait_for(event_named("Waiting", aid))
        first_try, beacon = front.requests_with(event_named("Waiting"))[:2]
        assert first_try["status"] == 503
        assert beacon["content_type"] == "text/plain"  # a Blob of type text/plain: the beacon
        assert all(m["context"]["page"]["path"] == "/oneline.html" for m in beacon["body"]["batch"])

    def test_beacon_batches_stay_under_the_keepalive_budget(self, tab, site, collector, front):
        """At pagehide a large queue leaves as several beacons, each body under 64 KB."""
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        collector.wait_for(of_visitor(aid))
        # 12 messages of ~10 KB: more than one 64 KB request. The page leaves before the batch timer.
        tab.js(
            """host => { for (let i = 0; i < 12; i++) intilery.track('Bulk', {i, pad: 'x'.repeat(10000)});
                         location.href = '/other.html?host=' + encodeURIComponent(host) }""",
            front.url,
        )
        tab.wait_loaded()
        bulk = collector.wait_for(event_named("Bulk", aid), count=12)
        assert sorted(e["properties"]["i"] for e in bulk) == list(range(12))
        requests = front.requests_with(event_named("Bulk"))
        assert len(requests) >= 2
        assert all(len(json.dumps(r["body"]).encode()) < 64 * 1024 for r in requests)


class TestOutage:
    def test_collector_down_then_up_delivers_once_even_after_a_reload(self, tab, site, make_collector):
        """Calls made while the collector is down wait, survive a reload, and are stored exactly once."""
        down = make_collector()  # not started yet: connections are refused
        url = f"{site.url}/oneline.html?host={down.url}"
        tab.open(url)
        aid = tab.anonymous_id()
        tab.js("intilery.track('While down 1')")
        wait_until(lambda: {"While down 1"} <= {m.get("event") for m in tab.queued()}, what="the persisted queue")

        down.start()
        flush = lambda: tab.js("intilery.flush()")  # noqa: E731 (sooner than the backoff timer)
        down.wait_for(event_named("While down 1", aid), poke=flush)

        down.stop()
        tab.js("intilery.track('While down 2')")
        wait_until(lambda: {"While down 2"} <= {m.get("event") for m in tab.queued()}, what="the persisted queue")
        tab.page.reload()  # the beacon at pagehide is lost too: the queue in localStorage is not
        tab.wait_loaded()
        wait_until(lambda: {"While down 2"} <= {m.get("event") for m in tab.queued()}, what="the adopted queue")

        down.start()
        down.wait_for(lambda e: e["anonymousId"] == aid and e["type"] == "page", count=2, poke=flush)
        events = down.wait_for(event_named("While down 2", aid), poke=flush)
        events = [e for e in down.events() if e["anonymousId"] == aid]
        assert count(events, "While down 1") == 1 and count(events, "While down 2") == 1
        assert [e["type"] for e in events].count("page") == 2
        assert len({e["messageId"] for e in events}) == len(events)
        wait_until(lambda: not tab.queued(), what="an empty queue once delivered")

    def test_a_400_is_not_retried(self, tab, site, collector, front):
        """A batch the collector rejects with 400 is dropped, not resent; later calls still go."""
        front.fail(lambda m: m.get("event") == "Bad", 400)
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        tab.js("intilery.debug(true); intilery.track('Bad')")
        wait_until(lambda: front.requests_with(event_named("Bad")), what="the batch answered 400")
        wait_until(lambda: not any(m.get("event") == "Bad" for m in tab.queued()), what="Bad out of the queue")

        tab.js("intilery.track('Good'); intilery.flush()")
        collector.wait_for(event_named("Good", aid))
        assert len(front.requests_with(event_named("Bad"))) == 1
        assert not [e for e in collector.events() if e.get("event") == "Bad" and e["anonymousId"] == aid]
        assert any("HTTP 400" in line for line in tab.console)

    def test_a_503_is_retried_after_retry_after(self, tab, site, collector, front):
        """A 503 with Retry-After: 2 is retried, not before two seconds, and stored once."""
        front.fail(lambda m: m.get("event") == "Flaky", 503, retry_after=2)
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        tab.js("intilery.track('Flaky')")

        collector.wait_for(event_named("Flaky", aid))
        first, second = front.requests_with(event_named("Flaky"))[:2]
        assert (first["status"], second["status"]) == (503, 200)
        assert second["time"] - first["time"] >= 1.9  # backoff alone would allow a retry after 0.5 s
        assert count([e for e in collector.events() if e["anonymousId"] == aid], "Flaky") == 1

    def test_network_errors_back_off_with_growing_delays(self, tab, site, make_collector):
        """Unreachable collector: the tag keeps retrying, with growing delays, and keeps the queue."""
        down = make_collector()
        tab.open(f"{site.url}/manual.html")
        tab.js("host => { intilery.load('wk_test', {host, debug: true}); intilery.track('Retried') }", down.url)

        def delays():
            tab.js("0")  # let Playwright deliver the console events
            return [int(line.rsplit(" ", 2)[-2]) for line in tab.console if "retry in" in line]

        wait_until(lambda: len(delays()) >= 3, what="three retries")
        d = delays()
        assert 500 <= d[0] <= 1500 and 1000 <= d[1] <= 3000 and 2000 <= d[2] <= 6000  # 1 s, 2 s, 4 s, ±50 %
        assert {m.get("event") for m in tab.queued()} >= {"Retried"}


    def test_the_persisted_queue_is_bounded(self, tab, site, make_collector):
        """While the collector is away the queue keeps the newest 200 messages, no more."""
        down = make_collector()
        tab.open(f"{site.url}/oneline.html?host={down.url}")
        tab.js("for (let i = 0; i < 250; i++) intilery.track('Pile', {i})")
        queued = [m["properties"]["i"] for m in tab.queued() if m.get("event") == "Pile"]
        assert len(tab.queued()) == 200 and queued == list(range(50, 250))


class TestTabs:
    def test_two_tabs_never_send_the_same_queue(self, context, site, make_collector):
        """A live tab's queue is its own; a closed tab's queue is claimed by exactly one later tab."""
        down = make_collector()
        url = f"{site.url}/oneline.html?host={down.url}"
        a = Tab(context.new_page()).open(url)
        aid = a.anonymous_id()
        a.js("intilery.track('From tab A')")
        wait_until(lambda: "From tab A" in {m.get("event") for m in a.queued()}, what="tab A's queue")

        b = Tab(context.new_page()).open(url)  # A is alive: B must leave A's queue alone
        b.settle()  # B's own first page is queued
        owners = {k: [m.get("event") for m in json.loads(v)["q"]] for k, v in b.storage().items() if k.startswith("itl_q.")}
        assert len(owners) == 2 and sum("From tab A" in events for events in owners.values()) == 1, owners

        a.page.close()  # pagehide marks A's queue as orphaned
        b.page.reload()  # B's next load claims it
        b.wait_loaded()
        c = Tab(context.new_page()).open(url)  # a later tab finds it already claimed
        holders = [k for k, v in c.storage().items() if k.startswith("itl_q.") and "From tab A" in v]
        assert len(holders) == 1

        down.start()
        flush = lambda: (b.js("intilery.flush()"), c.js("intilery.flush()"))  # noqa: E731
        down.wait_for(event_named("From tab A", aid), poke=flush)
        wait_until(lambda: flush() and not b.queued(), what="every queue delivered", interval=0.3)

        assert count([e for e in down.events() if e["anonymousId"] == aid], "From tab A") == 1
        senders = [n for n, t in (("b", b), ("c", c)) if any(m.get("event") == "From tab A" for m in t.sent_messages())]
        assert senders == ["b"]
        assert not a.errors + b.errors + c.errors
