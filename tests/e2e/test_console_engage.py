"""The console's Destinations and Journeys pages and a person's journey runs, in Chromium (issues 30 and 32,
item 6): per destination its counts, a chart of its deliveries per minute, its dead deliveries with the
answer that killed them and a Replay button (confirmed first); per journey its steps in order with the
people at each; on a profile, the person's runs. The collector is tests/console/test_engage.py's.

The screenshots docs/console/destinations.png and journeys.png are taken here (again with INTILERY_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

from tests.console.test_engage import REFUSAL, by, engaged, get  # noqa: F401 (the fixture)
from tests.e2e.test_console import screenshot
from tests.e2e.test_console_audiences import cells, signed_in


def figures(page, card: str) -> dict[str, str]:
    return dict(page.eval_on_selector_all(card + " .figures > div",
                                          "boxes => boxes.map(b => [b.getAttribute('data-figure'), b.querySelector('b').textContent])"))  # fmt: skip


def test_the_destinations_and_journeys_pages_and_a_person_s_runs(engaged, new_context):  # noqa: F811
    context = new_context(viewport={"width": 1280, "height": 900})
    page = signed_in(engaged, context)

    page.click("nav button[data-tab=journeys]")
    page.wait_for_selector("#j-list .journey[data-key=abandoned_cart]")
    card = "#j-list .journey[data-key=abandoned_cart]"
    assert page.text_content(card + " h2").startswith("Abandoned cart")
    assert figures(page, card) == {"entered": "2", "active": "1", "exited": "0", "converted": "1", "completed": "0"}
    steps = page.eval_on_selector_all(card + " ol.steps li", "items => items.map(i => [i.getAttribute('data-step'), i.querySelector('b').textContent])")
    names = [s[0] for s in steps]
    assert names.index("wait_for_order") < names.index("remind") and ["wait_for_order", "1"] in steps and ["remind", "0"] in steps
    screenshot(page, "journeys")

    page.click("nav button[data-tab=destinations]")
    page.wait_for_selector("#d-list .dest[data-name=ads] table.dead tr")
    assert figures(page, "#d-list .dest[data-name=crm]") == {"delivered": "3", "pending": "0", "failed": "0", "dead": "0"}
    assert figures(page, "#d-list .dest[data-name=ads]") == {"delivered": "0", "pending": "0", "failed": "0", "dead": "3"}
    dead = cells(page, "#d-list .dest[data-name=ads] table.dead tr")
    assert len(dead) == 3 and all(row[2] == "HTTP 422" and REFUSAL in row[3] for row in dead)
    bars = page.eval_on_selector_all("#d-list .dest[data-name=crm] svg.minutes rect", "rs => rs.map(r => r.getAttribute('data-state'))")
    assert bars and set(bars) == {"delivered"}  # one bar a minute with deliveries: the last minute or two
    assert page.is_disabled("#d-list .dest[data-name=crm] button.replay")
    screenshot(page, "destinations")

    page.click("#d-list .dest[data-name=ads] button.replay")
    assert page.is_visible("#d-confirm") and "3 dead and failed deliveries of ads" in page.text_content("#d-confirm-text")
    page.click("#d-confirm-no")  # nothing is sent again without the confirmation
    assert page.is_hidden("#d-confirm") and by(get(engaged, "/console/api/destinations")[1]["data"], "name")["ads"]["dead"] == 3
    engaged.receiver.refusing = False
    page.click("#d-list .dest[data-name=ads] button.replay")
    page.click("#d-confirm-yes")
    page.wait_for_selector("#d-replayed:text-is('Replayed 3 deliveries of ads.')")

    page.click("nav button[data-tab=profiles]")
    page.select_option("#p-type", "user_id")
    page.fill("#p-value", "ann")
    page.click("#p-find")
    page.wait_for_selector("#p-journeys tr")
    ((journey, where),) = cells(page, "#p-journeys tr")
    assert journey == "abandoned_cart (A)" and where.startswith("at wait_for_order, next timer ") and len(where) == len("at wait_for_order, next timer 2026-12-08 04:00:00")
    errors = [e for e in context.console.errors if "401 (Unauthorized)" not in e]
    assert errors == []
