"""The console in Chromium against ``intilery demo``: sign in with the access token, watch the
shop's events arrive live, filter them, open one, read the dashboard and a profile; data
that looks like HTML is shown as text and never runs.

The README's screenshots (docs/console/*.png) are taken here (again with INTILERY_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

from collector.serve.demo import DEMO_WRITE_KEY
from helpers import wait_until
from tests.e2e.conftest import ROOT

SHOTS = ROOT / "docs" / "console"
XSS = "<img src=x onerror=alert(1)>"


def screenshot(page, name: str) -> None:
    path = SHOTS / f"{name}.png"
    if os.environ.get("INTILERY_UPDATE_SCREENSHOT") or not path.exists():
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)


def token(demo) -> str:
    return (demo.data_dir / "access-token").read_text().strip()


def open_console(demo, context):
    page = context.new_page()
    page.goto(demo.collector + "/console")
    assert page.locator("#signin").count() == 1 and page.locator("#rows").count() == 0
    page.fill("#token", "at_wrong")
    page.click("#signin button")
    page.wait_for_selector("#signin-error")
    page.fill("#token", token(demo))
    page.click("#signin button")
    page.wait_for_selector("#state[data-state=live]")
    # the browser logs the sign-in form's 401s as errors; from here on there must be none
    context.console.errors[:] = [e for e in context.console.errors if "401 (Unauthorized)" not in e]
    return page


def post(demo, path: str, message: dict) -> int:
    request = urllib.request.Request(demo.collector + path, data=json.dumps(message).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Write-Key": DEMO_WRITE_KEY})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def rows(page) -> list[list[str]]:
    return page.eval_on_selector_all("#rows tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")



def signed_in_shopper(demo, new_context, email: str, name: str):
    """A visitor of the demo shop who consents, puts a mug in the cart and signs in: the page."""
    shop = new_context().new_page()
    shop.goto(demo.site + "/")
    for step in ("#consent-accept", "#shop-now", "#card-mug-01", "#add-to-cart", "#cart-link", "#signin-to-checkout"):
        shop.click(step)
    shop.fill("#email", email)
    shop.fill("#name", name)
    shop.click("#signin-submit")
    shop.wait_for_url(demo.site + "/cart.html")  # not the sign-in page's "?next=/cart.html"
    return shop

def test_demo_prints_the_console_and_how_to_sign_in(demo):
    printed = demo.log.read_text()
    assert f"{demo.collector}/console" in printed
    assert f"cat {demo.data_dir.resolve() / 'access-token'}" in printed or str(demo.data_dir / "access-token") in printed


def test_the_shop_s_events_appear_live_rejections_with_their_code_and_filters_narrow(demo, new_context):
    console = open_console(demo, new_context())
    shop = new_context().new_page()
    shop.goto(demo.site + "/")
    shop.click("#consent-accept")
    shop.click("#shop-now")
    shop.click("#card-mug-01")
    clicked = time.monotonic()
    shop.click("#add-to-cart")
    console.wait_for_selector("#rows tr.accepted td:text-is('Product Added')")
    print(f"Product Added shown in the console {time.monotonic() - clicked:.3f}s after the click")

    assert post(demo, "/v1/track", {"type": "track", "userId": "u_console", "properties": {"sku": "x"}}) == 400
    console.wait_for_selector("#rows tr.rejected td:text-is('missing_event')")
    row = next(r for r in rows(console) if r[1] == "rejected")
    assert row[2] == "track" and row[4] == "u_console" and row[5] == "demo"

    console.click("#rows tr.accepted:has(td:text-is('Product Added'))")
    assert '"event": "Product Added"' in console.inner_text("#detail-body")
    console.click("#show-raw")
    assert '"event":"Product Added"' in console.inner_text("#detail-body")
    console.click("#show-pretty")
    screenshot(console, "live")

    console.click("#rows tr.rejected")
    assert console.inner_text("#detail-reason").startswith("missing_event: ")

    console.fill("#f-event", "Product Added")
    console.click("#apply")
    console.wait_for_selector("#rows tr")
    wait_until(lambda: rows(console) and all(r[3] == "Product Added" for r in rows(console)), what="only Product Added")
    console.fill("#f-event", "")
    console.select_option("#f-status", "rejected")
    console.click("#apply")
    wait_until(lambda: rows(console) and all(r[1] == "rejected" for r in rows(console)), what="only rejections")

    console.click("#pause")
    assert post(demo, "/v1/track", {"userId": "u_paused"}) == 400
    console.wait_for_selector("#n-held:text-is('1')")
    assert not any(r[4] == "u_paused" for r in rows(console))
    console.click("#pause")
    console.wait_for_selector("#rows td:text-is('u_paused')")
    assert console.context.console.errors == []


def test_event_data_is_shown_as_text_never_run(demo, new_context):
    context = new_context()
    console = open_console(demo, context)
    dialogs = []
    console.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    assert post(demo, "/v1/track", {"event": XSS, "userId": XSS, "properties": {"html": "<script>alert(2)</script>"}}) == 200
    assert post(demo, "/v1/track", {"userId": XSS, "properties": {"html": XSS}}) == 400
    console.wait_for_selector(f"#rows tr.accepted td:text-is('{XSS}')")
    console.wait_for_selector("#rows tr.rejected")
    console.click("#rows tr.accepted")
    assert XSS in console.inner_text("#detail-body") and "<script>alert(2)</script>" in console.inner_text("#detail-body")
    console.click("#rows tr.rejected")
    assert XSS in console.inner_text("#detail-body")
    assert console.locator("img").count() == 0 and console.locator("main script").count() == 0
    assert dialogs == []
    assert context.console.errors == []


def test_the_dashboard_and_a_profile(demo, new_context):
    shop = signed_in_shopper(demo, new_context, "ann@example.com", "Ann")
    assert post(demo, "/v1/track", {"userId": "u_bad"}) == 400

    console = open_console(demo, new_context())
    console.click("nav button[data-tab=dashboard]")
    console.wait_for_selector("#top-events td:text-is('Product Added')")
    console.wait_for_selector("#top-codes td:text-is('missing_event')")
    console.wait_for_selector("#top-pages td:text-is('/product.html')")
    console.wait_for_selector("#top-sources td:text-is('demo')")
    assert console.locator("#chart rect.bar[data-kind=page]").count() >= 1
    assert console.locator("#chart rect.bar[data-kind=rejected]").count() >= 1
    assert int(console.inner_text("#d-visitors")) >= 1 and int(console.inner_text("#d-rejected")) >= 1
    screenshot(console, "dashboard")

    console.click("nav button[data-tab=profiles]")
    console.select_option("#p-type", "email")
    console.fill("#p-value", "ann@example.com")

    def found():
        console.click("#p-find")
        console.wait_for_selector("#profile:not([hidden]), #p-error:not([hidden])")
        return console.is_visible("#profile")

    wait_until(found, what="the profile built from the shop's events")
    assert console.locator("#p-ids td:text-is('u_ann_example_com')").count() == 1
    assert console.locator("#p-traits td:text-is('Ann')").count() == 1
    assert console.locator("#p-computed td:text-is('event_count')").count() == 1
    console.wait_for_selector("#p-events td:text-is('Signed In')")
    screenshot(console, "profile")
    assert console.context.console.errors == []


def test_what_the_page_cannot_take_is_dropped_and_counted_on_it(demo, new_context):
    """Paused, filtered to one event, 2,500 of them in one batch: held plus dropped (the server's
    queue overflowing, shown on the page) add up to all of them; resumed, the held ones show."""
    console = open_console(demo, new_context())
    console.fill("#f-event", "Flood")
    console.click("#apply")
    console.wait_for_selector("#state[data-state=live]")
    console.click("#pause")
    messages = [{"type": "track", "event": "Flood", "userId": f"u{n}"} for n in range(2500)]
    assert post(demo, "/v1/batch", {"batch": messages}) == 200

    def counted():
        return int(console.inner_text("#n-held")) + int(console.inner_text("#dropped")) == 2500

    wait_until(counted, what="held + dropped on the page == 2,500")
    held = int(console.inner_text("#n-held"))
    assert 0 < held < 2500
    console.click("#pause")
    console.wait_for_selector(f"#shown:text-is('{min(held, 2500)}')")
    assert console.locator("#rows tr").count() == min(held, 500)
    assert console.context.console.errors == []


def profile_status(demo, who: str) -> int:
    request = urllib.request.Request(f"{demo.collector}/v1/spaces/default/collections/users/profiles/{who}/traits",
                                     headers={"Authorization": f"Bearer {token(demo)}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def requests_listed(demo) -> list[dict]:
    request = urllib.request.Request(demo.collector + "/v1/regulations", headers={"Authorization": f"Bearer {token(demo)}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["data"]


def test_a_privacy_request_filed_and_followed_in_the_console(demo, new_context):
    """Sign in, file SUPPRESS_WITH_DELETE for a shop customer (confirmed: it cannot be undone), see it
    listed and reach FINISHED with its counts; the Profile API then has no such person. A POST from
    another origin (the shop's: same site, so the Strict cookie goes with it) is refused."""
    shop = signed_in_shopper(demo, new_context, "cleo@example.com", "Cleo")
    who = "user_id:u_cleo_example_com"
    wait_until(lambda: profile_status(demo, who) == 200, what="the shop customer's profile")

    context = new_context()
    console = open_console(demo, context)
    console.click("nav button[data-tab=privacy]")
    console.select_option("#r-type", "SUPPRESS_WITH_DELETE")
    console.select_option("#r-subject", "USER_ID")
    console.fill("#r-ids", "u_cleo_example_com\n")
    console.click("#r-file")
    console.wait_for_selector("#r-confirm:not([hidden])")
    assert "cannot be undone" in console.inner_text("#r-confirm")
    assert requests_listed(demo) == [], "nothing is filed before the confirmation"
    console.click("#r-confirm-yes")
    console.wait_for_selector("#r-list tr[data-status]")
    row = console.locator("#r-list tr[data-status]").first
    assert row.locator("td.type").inner_text() == "SUPPRESS_WITH_DELETE"
    console.wait_for_selector("#r-list tr[data-status=FINISHED]", timeout=60_000)
    counts = console.inner_text("#r-list tr[data-status=FINISHED] td.counts")
    assert "events" in counts and "removed" in counts and "profiles" in counts, counts
    filed = requests_listed(demo)
    assert len(filed) == 1 and filed[0]["status"] == "FINISHED" and filed[0]["stores"]["events"]["removed"] >= 1
    assert console.inner_text("#r-list tr[data-status=FINISHED] td.id") == filed[0]["regulateId"]
    assert profile_status(demo, who) == 404
    screenshot(console, "privacy")

    # an API error shows its code and sentence
    console.select_option("#r-type", "SUPPRESS")
    console.fill("#r-ids", "x" * 1100)
    console.click("#r-file")
    console.wait_for_selector("#r-error:not([hidden])")
    assert console.inner_text("#r-error").startswith("invalid_regulation: each subjectId")

    # the shop's origin, in the browser holding the console's session, cannot file one
    attacker = context.new_page()
    attacker.goto(demo.site + "/")
    body = json.dumps({"regulationType": "UNSUPPRESS", "subjectType": "USER_ID", "subjectIds": ["u_cleo_example_com"]})
    attacker.evaluate("""([url, body]) => fetch(url, {method: "POST", body: body, mode: "no-cors", credentials: "include",
                           headers: {"Content-Type": "text/plain"}}).then(() => null, () => null)""",
                      [demo.collector + "/console/api/regulations", body])  # fmt: skip
    with attacker.expect_navigation():  # the form's answer has come: the collector has handled it
        attacker.evaluate("""([url, body]) => { const f = document.createElement("form"); f.method = "POST";
            f.action = url; f.enctype = "text/plain"; const i = document.createElement("input"); i.name = body;
            i.value = ""; f.appendChild(i); document.body.appendChild(f); f.submit(); }""",
                          [demo.collector + "/console/api/regulations", body])  # fmt: skip
    assert [r["regulationType"] for r in requests_listed(demo)] == ["SUPPRESS_WITH_DELETE"]
    context.console.errors[:] = [e for e in context.console.errors if "403" not in e and "400" not in e]
    assert context.console.errors == []


def test_a_person_is_found_by_the_beginning_of_an_identifier_or_a_trait(demo, new_context):
    """The Profiles tab's search lists the people whose identifier or trait begins with what was
    typed; a match opens the profile."""
    context = new_context()
    console = open_console(demo, context)
    assert post(demo, "/v1/identify", {"userId": "user-finder", "traits": {"email": "Finder@Example.com", "plan": "gold"}}) == 200
    console.click("nav button[data-tab=profiles]")
    console.select_option("#p-type", "search")
    console.fill("#p-value", "finder@")

    def listed():
        console.click("#p-find")
        console.wait_for_selector("#p-matches tr")
        return console.locator("#p-matches button").count() == 1

    wait_until(listed, what="the search to list the new person")
    assert "email:finder@example.com" in console.inner_text("#p-matches")
    console.click("#p-matches button")
    console.wait_for_selector("#profile:not([hidden])")
    assert console.locator("#p-ids td:text-is('user-finder')").count() == 1
    console.fill("#p-value", "plan:gol")
    console.click("#p-find")
    console.wait_for_selector("#p-matches button")
    assert "user_id:user-finder" in console.inner_text("#p-matches")
    console.fill("#p-value", "nobody-at-all")
    console.click("#p-find")
    console.wait_for_selector("#p-matches td:text-is('no profile matches')")
    assert console.context.console.errors == []
