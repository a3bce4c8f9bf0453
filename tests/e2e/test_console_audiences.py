"""The console's Audiences page and a person's audiences, in Chromium (issue 29, item 5): each audience
with its size, last update and a sparkline of its size over the last 30 days (or hours); on a profile,
the audiences the person is in, since when, and their computed traits. The collector is
tests/console/test_audiences.py's (memberships written as the live evaluation writes them).

The screenshot docs/console/audiences.png is taken here (again with INTILERY_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

from tests.console.conftest import TOKEN
from tests.console.test_audiences import engaged  # noqa: F401 (the fixture)
from tests.e2e.test_console import screenshot


def signed_in(collector, context):
    page = context.new_page()
    page.goto(collector.url + "/console")
    page.fill("#token", TOKEN)
    page.click("#signin button")
    page.wait_for_selector("#state[data-state=live]")
    return page


def cells(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(selector, "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def test_the_audiences_page_and_a_person_s_audiences(engaged, new_context):  # noqa: F811
    context = new_context(viewport={"width": 1280, "height": 800})
    page = signed_in(engaged, context)
    page.click("nav button[data-tab=audiences]")
    page.wait_for_selector("#a-list tr[data-key=lamp_viewers]")
    rows = cells(page, "#a-list tr")
    assert [row[:3] for row in rows] == [["high_value", "High-value buyers", "2"], ["lamp_viewers", "Viewed a lamp", "1"]]
    assert all(len(row[3]) == 19 for row in rows)  # YYYY-MM-DD HH:MM:SS
    points = page.eval_on_selector_all("#a-list tr svg.spark polyline", "lines => lines.map(l => l.getAttribute('points').split(' ').length)")
    assert points == [30, 30]
    heights = page.eval_on_selector("#a-list tr[data-key=high_value] polyline",
                                    "l => l.getAttribute('points').split(' ').map(p => +p.split(',')[1])")  # fmt: skip
    assert heights[0] > heights[-1] and len(set(heights)) == 3  # 0 a month ago, 1 and 2 since: three heights
    assert page.text_content("#a-series-head") == "last 30 days"
    assert page.is_hidden("#a-empty")
    screenshot(page, "audiences")

    page.select_option("#a-period", "hour")
    page.wait_for_selector("#a-series-head:text-is('last 30 hours')")  # (the console's CSP forbids eval: no wait_for_function)

    page.click("nav button[data-tab=profiles]")
    page.select_option("#p-type", "user_id")
    page.fill("#p-value", "u-1")
    page.click("#p-find")
    page.wait_for_selector("#p-audiences tr")
    assert [row[0] for row in cells(page, "#p-audiences tr")] == ["High-value buyers (high_value)"]
    assert ["orders_90d", "4"] in cells(page, "#p-computed tr")
    errors = [e for e in context.console.errors if "401 (Unauthorized)" not in e]
    assert errors == []
