"""Delivery: the unload path, outages, retries, the persisted queue and its tabs, request sizes."""

from __future__ import annotations

import json

import pytest

from harness import Tab, event_named, of_visitor, wait_until

# The page going to the background ('hidden') and coming back ('visible': the browser's own state
# again), as a tab switch does: headless Chromium never changes visibility by itself.
VISIBILITY = """state => {
  if (state == 'hidden') Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
  else delete document.visibilityState;
  document.dispatchEvent(new Event('visibilitychange', {bubbles: true})) }"""
# Counts the fetch calls the page makes while `body` runs (synchronously), and returns the count.
FETCHES_DURING = """() => { let n = 0; const f = window.fetch; window.fetch = (...a) => (n++, f(...a));
                            try { %s } finally { window.fetch = f } return n }"""


def count(events: list[dict], name: str) -> int:
    return sum(1 for e in events if e.get("event") == name)


def beacons(front, name: str) -> list[dict]:
    """The requests carrying event ``name`` that came by sendBeacon (a text/plain Blob; fetch adds a charset)."""
    return [r for r in front.requests_with(event_named(name)) if r["content_type"] == "text/plain"]


def retrying(tab) -> bool:
    """Whether the tag (in debug mode) has logged a scheduled retry: an answer was handled, a wait began."""
    tab.js("0")  # let Playwright deliver the console events
    return any("retry in" in line for line in tab.console)


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
        first = front.wait_for(event_named("Leaving"))[0]
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
        first_try, beacon = front.wait_for(event_named("Waiting"), count=2)[:2]
        assert first_try["status"] == 503
        assert beacon["content_type"] == "text/plain"  # a Blob of type text/plain: the beacon
        assert all(m["context"]["page"]["path"] == "/oneline.html" for m in beacon["body"]["batch"])

    def test_beacon_batches_stay_under_the_keepalive_budget(self, tab, site, collector, front):
        """At pagehide a large queue leaves by beacon in requests under 64 KB; what the browser's keepalive
        budget cannot take arrives with the next page."""
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
        # The page being left sent beacons (the next page's resend, by fetch, does not count here),
        # recorded by the front once answered: wait until the answered requests hold all twelve.
        wait_until(lambda: {m["properties"]["i"] for r in front.requests_with(event_named("Bulk")) if r["status"] == 200
                            for m in r["body"]["batch"] if m.get("event") == "Bulk"} == set(range(12)),
                   what="the front's record of every Bulk request")  # fmt: skip
        sent = beacons(front, "Bulk")
        assert sent and all(len(json.dumps(r["body"]).encode()) < 64 * 1024 for r in sent)
        assert all(m["context"]["page"]["path"] == "/oneline.html" for r in sent for m in r["body"]["batch"])
        assert len(front.requests_with(event_named("Bulk"))) >= 2  # 120 KB: never one request

    def test_a_tab_switch_during_an_outage_keeps_the_queue(self, tab, site, collector, front):
        """Beaconed while the collector is down, messages stay queued and saved until a request confirms them."""
        front.fail(lambda m: True, 503, retry_after=600, times=10**6)  # down for everything, beacons too
        tab.open(f"{site.url}/manual.html")
        tab.js("host => { intilery.load('wk_test', {host, debug: true}); intilery.track('Before the switch') }", front.url)
        aid = tab.anonymous_id()
        # The 503 is handled: nothing is in flight, everything waits out the Retry-After.
        wait_until(lambda: retrying(tab) and "Before the switch" in {m.get("event") for m in tab.queued()},
                   what="the queue waiting")  # fmt: skip
        tab.js(VISIBILITY, "hidden")
        wait_until(lambda: beacons(front, "Before the switch"), what="the beacon at visibilitychange")
        tab.js(VISIBILITY, "visible")
        tab.js("intilery.track('After the switch')")
        tab.settle()  # the queue is saved
        assert {"Before the switch", "After the switch"} <= {m.get("event") for m in tab.queued()}

        front.rules.clear()  # the collector is back; the next page load resends what was never confirmed
        tab.page.reload()
        tab.js("host => intilery.load('wk_test', {host})", front.url)
        for name in ("Before the switch", "After the switch"):
            collector.wait_for(event_named(name, aid))
        wait_until(lambda: tab.js("intilery.flush()") or not tab.queued(), what="an empty queue", interval=0.3)
        events = [e for e in collector.events() if e["anonymousId"] == aid]
        assert count(events, "Before the switch") == 1 and count(events, "After the switch") == 1

    @pytest.mark.parametrize("beacon", ["missing", "throws"])
    def test_leaving_without_a_working_send_beacon_throws_nothing(self, tab, site, make_collector, beacon):
        """pagehide with sendBeacon absent or throwing: nothing reaches the page, the queue stays saved."""
        down = make_collector()
        tab.open(f"{site.url}/oneline.html?host={down.url}")
        wait_until(tab.queued, what="the persisted queue")
        errors = tab.js(
            """kind => {
              const errors = [];
              addEventListener('error', e => errors.push(e.message));
              const value = kind == 'missing' ? undefined : () => { throw new TypeError('beacon refused') };
              Object.defineProperty(navigator, 'sendBeacon', {value, configurable: true});
              dispatchEvent(new Event('pagehide'));
              return errors
            }""",
            beacon,
        )
        assert errors == []
        assert [m["type"] for m in tab.queued()] == ["page"]


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

    def test_a_408_is_retried(self, tab, site, collector, front):
        """A 408 (the request timed out at a proxy) is retried, not dropped."""
        front.fail(lambda m: m.get("event") == "Timed out", 408)
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        tab.js("intilery.track('Timed out')")
        collector.wait_for(event_named("Timed out", aid))
        # the proxy records an answer after the collector has stored it: wait for the record too
        statuses = lambda: [r["status"] for r in front.requests_with(event_named("Timed out"))]  # noqa: E731
        wait_until(lambda: len(statuses()) >= 2, what="the retry's answer recorded")
        assert statuses() == [408, 200]

    def test_flush_waits_out_a_retry_after(self, tab, site, front):
        """While the collector's Retry-After runs, flush() and new calls send nothing."""
        front.fail(lambda m: m.get("event") == "Told to wait", 503, retry_after=600)
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        tab.js("intilery.debug(true); intilery.track('Told to wait')")
        wait_until(lambda: retrying(tab), what="the 503 handled")
        assert tab.js(FETCHES_DURING % "intilery.flush(); intilery.track('Meanwhile'); intilery.flush()") == 0
        assert {"Told to wait", "Meanwhile"} <= {m.get("event") for m in tab.queued()}

    def test_a_message_older_than_the_dedup_window_is_dropped(self, tab, site, collector, front):
        """A message still queued 24 h after it was made is dropped: past the collector's dedup window a
        resend of a message that did arrive would be stored twice."""
        front.fail(lambda m: m.get("event") == "Stale", 503, retry_after=600)
        tab.page.clock.install()
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        tab.js("intilery.debug(true); intilery.track('Stale')")
        wait_until(lambda: retrying(tab), what="the 503 handled")
        tab.page.clock.fast_forward("25:00:00")
        tab.js("intilery.track('Fresh'); intilery.flush()")
        collector.wait_for(event_named("Fresh", aid))
        assert not [e for e in collector.events() if e.get("event") == "Stale"]
        assert [r["status"] for r in front.requests_with(event_named("Stale"))] == [503]

    def test_a_503_is_retried_after_retry_after(self, tab, site, collector, front):
        """A 503 with Retry-After: 2 is retried, not before two seconds, and stored once."""
        front.fail(lambda m: m.get("event") == "Flaky", 503, retry_after=2)
        tab.open(f"{site.url}/oneline.html?host={front.url}")
        aid = tab.anonymous_id()
        tab.js("intilery.track('Flaky')")

        collector.wait_for(event_named("Flaky", aid))
        wait_until(lambda: len(front.requests_with(event_named("Flaky"))) >= 2, what="the retry's answer recorded")
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

    def test_the_queue_is_saved_once_per_task_not_on_every_call(self, tab, site, front):
        """Fifty calls in one task write the queue to localStorage once, not fifty times."""
        front.fail(lambda m: True, 503, retry_after=600, times=10**6)  # nothing leaves: no save but ours
        tab.open(f"{site.url}/manual.html")
        tab.js("host => intilery.load('wk_test', {host, debug: true})", front.url)
        wait_until(lambda: retrying(tab), what="the queue waiting")
        writes = tab.js(
            """() => new Promise(resolve => {
                 let n = 0;
                 const set = Storage.prototype.setItem;
                 Storage.prototype.setItem = function (k, v) { n += k.startsWith('itl_q.'); return set.call(this, k, v) };
                 for (let i = 0; i < 50; i++) intilery.track('Burst', {i});
                 setTimeout(() => { Storage.prototype.setItem = set; resolve(n) })
               })"""
        )
        assert writes == 1
        assert [m["properties"]["i"] for m in tab.queued() if m.get("event") == "Burst"] == list(range(50))

    def test_the_persisted_queue_is_capped_in_bytes(self, tab, site, make_collector):
        """While the collector is away the queue keeps the newest messages that fit in 500 KB."""
        down = make_collector()
        tab.open(f"{site.url}/oneline.html?host={down.url}")
        tab.js("for (let i = 0; i < 100; i++) intilery.track('Pile', {i, pad: 'x'.repeat(10000)})")  # 1 MB
        tab.settle()  # the queue is saved
        [saved] = [v for k, v in tab.storage().items() if k.startswith("itl_q.")]
        kept = [m["properties"]["i"] for m in json.loads(saved)["q"] if m.get("event") == "Pile"]
        assert len(saved) <= 500_000 and len(kept) >= 40
        assert kept == list(range(100 - len(kept), 100))  # the newest

    def test_a_queue_too_big_for_the_storage_leaves_no_stale_copy(self, tab, site, make_collector):
        """When saving the queue fails (storage full), no older copy is left behind for a later page to resend."""
        down = make_collector()
        tab.open(f"{site.url}/oneline.html?host={down.url}")
        aid = tab.anonymous_id()
        wait_until(tab.queued, what="the persisted queue")
        tab.js(  # fills localStorage to the last byte
            """() => { const big = 'x'.repeat(1 << 20); let i = 0;
                       for (let n = 1 << 20; n >= 1; ) try { localStorage.setItem('fill' + i++, big.slice(0, n)) }
                                                        catch (e) { n >>= 1 } }"""
        )
        tab.js("intilery.track('Too big to save', {pad: 'x'.repeat(20000)})")
        tab.settle()  # the queue is saved, or not
        assert "Too big to save" in {m.get("event") for m in tab.queued()} or not tab.queued(), tab.queued()

        down.start()  # the queue in memory is still delivered
        down.wait_for(event_named("Too big to save", aid), poke=lambda: tab.js("intilery.flush()"))


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
