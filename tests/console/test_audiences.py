"""The console's audiences (issue 29, item 5): the Audiences page's figures (each audience's size, last
update and sizes over the last 30 days or hours) and a person's audiences and computed traits on their
profile, from a real collector whose profile database holds memberships as the live evaluation writes them."""

from __future__ import annotations

import json
import time

import pytest

from collector.log.layout import iso_ms
from collector.profiles.builder import Builder
from collector.profiles.database import open_store
from helpers import CollectorProcess
from tests.console.conftest import SOURCES, TOKEN, WRITE_KEY, batch, call
from tests.engage.rows import DAY, DEFINITIONS, HOUR, expected_days, in_force, three_people

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def engaged(tmp_path_factory):
    """A collector (its profiles built here, --no-profiles) with three people, the definitions in force and
    their audiences; ``now`` the moment the stays are written relative to."""
    workdir = tmp_path_factory.mktemp("console-audiences")
    with CollectorProcess(workdir, SOURCES, access_token=TOKEN, args=["--no-profiles"]) as running:
        people = [{"type": "identify", "userId": f"u-{n}", "anonymousId": f"a-{n}", "traits": {"name": f"P{n}"}} for n in (1, 2, 3)]
        assert batch(running.url, people) == 200
        store = open_store(running.data_dir / "profiles.db")
        Builder(store, running.data_dir).catch_up()
        in_force(store, DEFINITIONS)
        running.now = time.time()
        three_people(store, {f"u-{n}": store.find("user_id", f"u-{n}") for n in (1, 2, 3)}, running.now)
        store.close()
        yield running


def get(collector, path: str, headers=BEARER):
    status, _, body = call(collector.url + path, headers=headers)
    return status, json.loads(body)


def test_the_audiences_page_sizes_now_and_over_the_last_30_days(engaged):
    status, body = get(engaged, "/console/api/audiences")
    assert status == 200 and body["period"] == "day" and len(body["at"]) == 30 and body["backfilling"] is False
    assert body["audiences"] == [
        {"key": "high_value", "name": "High-value buyers", "size": 2, "updated_at": iso_ms(engaged.now - 3 * HOUR)},
        {"key": "lamp_viewers", "name": "Viewed a lamp", "size": 1, "updated_at": iso_ms(engaged.now - HOUR)},
    ]  # fmt: skip
    assert body["sizes"]["high_value"] == [expected_days(29 - i) for i in range(30)]
    assert body["sizes"]["lamp_viewers"] == [0] * 29 + [1]


def test_the_audiences_page_over_the_last_30_hours(engaged):
    status, body = get(engaged, "/console/api/audiences?period=hour")
    assert status == 200 and body["period"] == "hour"
    assert body["sizes"]["high_value"] == [1] * 26 + [2] * 4  # u-2 entered 3 hours ago
    assert body["sizes"]["lamp_viewers"] == [0] * 28 + [1] * 2


@pytest.mark.parametrize("period", ["week", ""])
def test_a_period_that_is_not_one_is_a_400(engaged, period):
    status, body = get(engaged, f"/console/api/audiences?period={period}")
    assert status == 400 and body["code"] == "invalid_parameter" and body["message"] == "period is day or hour"


@pytest.mark.parametrize("path", ["/console/api/audiences", "/console/api/profiles/user_id:u-1"])
def test_without_the_token_nothing(engaged, path):
    assert get(engaged, path, {})[1]["code"] == "missing_access_token"
    assert get(engaged, path, {"Authorization": f"Bearer {WRITE_KEY}"})[1]["code"] == "invalid_access_token"


def test_a_person_s_audiences_and_computed_traits_on_their_profile(engaged):
    status, body = get(engaged, "/console/api/profiles/user_id:u-1")
    assert status == 200
    assert body["audiences"] == [{"key": "high_value", "name": "High-value buyers", "entered_at": iso_ms(engaged.now - 10 * DAY)}]
    assert body["computed_traits"]["orders_90d"] == 4 and body["computed_traits"]["event_count"] == 1
    assert "orders_90d" not in body["traits"] and body["traits"]["name"] == "P1"
    status, body = get(engaged, "/console/api/profiles/user_id:u-3")
    assert [a["key"] for a in body["audiences"]] == ["lamp_viewers"]  # high_value's stay has ended
    assert "orders_90d" not in body["computed_traits"]


def test_the_page_has_the_audiences_tab_and_reads_its_route(engaged):
    status, _, page = call(engaged.url + "/console", headers=BEARER)
    assert status == 200
    assert b'data-tab="audiences"' in page and b'id="a-list"' in page and b'id="p-audiences"' in page
    status, _, script = call(engaged.url + "/console/static/console.js", headers=BEARER)
    assert b'"/console/api/audiences?period="' in script and b"p.audiences" in script
