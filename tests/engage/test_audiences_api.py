"""The audiences read back (issue 29, item 5): GET /v1/audiences, the members a page at a time, the
Profile API's ``traits?class=audience|computed_trait`` and the computed traits among the traits,
``intilery audiences``; what is listed is the definitions in force. Memberships and definitions are
rows written straight into the profile database (SQLite and PostgreSQL), as the live evaluation
writes them; the last test runs the real thing (events in, members out through the API)."""

from __future__ import annotations

import base64
import random
import re
import signal

import pytest

from collector import cli
from collector.engage.audiences import reads
from collector.engage.audiences.routes import InForce
from collector.log.layout import iso_ms
from collector.profiles.builder import Builder
from collector.profiles.database import open_store

from helpers import CollectorProcess, wait_until

from .conftest import write_definitions
from .rows import DEFINITIONS, in_force, write_rows

TOKEN = "at_audiences_test_token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PROFILE = "/v1/spaces/default/collections/users/profiles"
BASE = 1_796_000_000.0  # 2026-11-30: when the first member entered
PEOPLE = 25
@pytest.fixture
async def api(make_client, config, profiles_db, tmp_path):
    """A collector with 25 people (u-00 ... u-24) built into profiles; all in high_value (u-00 twice: an
    earlier stay ended), nobody in lamp_viewers, u-01 in an audience no longer defined; u-00's computed traits."""
    client = await make_client(config, access_token=TOKEN, profiles_db=profiles_db)
    batch = [{"type": "identify", "userId": f"u-{n:02d}", "anonymousId": f"a-{n:02d}", "traits": {"plan": "pro"}}
             for n in range(PEOPLE)]  # fmt: skip
    assert (await client.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": "wk_server"})).status == 200
    store = open_store(profiles_db)
    Builder(store, config.data_dir).catch_up()
    in_force(store, DEFINITIONS)
    pids = [store.find("user_id", f"u-{n:02d}") for n in range(PEOPLE)]
    write_rows(
        store,
        members=[("high_value", pid, BASE + n) for n, pid in enumerate(pids)] + [("gone", pids[1], BASE)],
        history=[("high_value", pid, BASE + n, None) for n, pid in enumerate(pids)]
        + [("high_value", pids[0], BASE - 1000, BASE + 500), ("gone", pids[1], BASE, None)],
        computed=[(pids[0], '{"orders_90d": 3, "gone_trait": 1}')],
    )
    store.close()
    client.pids = pids
    return client


async def get(client, path: str, headers=BEARER):
    answer = await client.get(path, headers=headers)
    return answer.status, await answer.json()


class TestAudiences:
    async def test_each_audience_defined_with_its_size_and_last_update(self, api):
        """Sizes from the members; the last update the latest entry or exit (u-00's old stay ended at
        BASE+500, after the last entry); an audience nobody entered is 0 and never; one no longer
        defined is not listed, whatever rows remain."""
        status, body = await get(api, "/v1/audiences")
        assert status == 200
        assert body == {"data": [
            {"key": "high_value", "name": "High-value buyers", "size": PEOPLE, "updated_at": iso_ms(BASE + 500)},
            {"key": "lamp_viewers", "name": "Viewed a lamp", "size": 0, "updated_at": None},
        ]}  # fmt: skip

    async def test_members_a_page_at_a_time_with_user_id_and_entered_at(self, api):
        seen, url = [], "/v1/audiences/high_value/members?limit=10"
        pages = 0
        while url:
            status, body = await get(api, url)
            assert status == 200 and len(body["data"]) <= 10
            seen += body["data"]
            pages += 1
            assert body["cursor"]["url"] == "/v1/audiences/high_value/members"
            url = f"/v1/audiences/high_value/members?limit=10&next={body['cursor']['next']}" if body["cursor"]["has_more"] else None
        assert pages == 3 and body["cursor"]["next"] == ""
        by_pid = {pid: n for n, pid in enumerate(api.pids)}
        assert [m["profile_id"] for m in seen] == sorted(api.pids)
        for member in seen:
            n = by_pid[member["profile_id"]]
            assert member == {"profile_id": api.pids[n], "user_id": f"u-{n:02d}", "anonymous_id": f"a-{n:02d}",
                              "entered_at": iso_ms(BASE + n)}  # fmt: skip
        status, body = await get(api, "/v1/audiences/lamp_viewers/members")
        assert (status, body["data"], body["cursor"]["has_more"]) == (200, [], False)

    @pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=ten", "next=bm90LWEtY3Vyc29y", "next=%%%"])
    async def test_a_bad_limit_or_cursor_is_a_400_with_a_sentence(self, api, query):
        status, body = await get(api, f"/v1/audiences/high_value/members?{query}")
        assert status == 400 and body["code"] == "invalid_parameter" and body["message"]

    async def test_an_unknown_audience_is_a_404_naming_those_there_are(self, api):
        for key in ("nobody", "gone"):  # gone: rows, but no definition any more
            status, body = await get(api, f"/v1/audiences/{key}/members")
            assert status == 404 and body["code"] == "audience_not_found"
            assert repr(key) in body["message"] and "high_value, lamp_viewers" in body["message"]

    @pytest.mark.parametrize("path", ["/v1/audiences", "/v1/audiences/high_value/members", "/v1/audiences/nobody/members"])
    @pytest.mark.parametrize("headers, code", [
        ({}, "missing_access_token"),
        ({"Authorization": "Bearer wk_server"}, "invalid_access_token"),
        ({"Authorization": "Basic " + base64.b64encode(b"wk_server:").decode()}, "invalid_access_token"),
    ])  # fmt: skip
    async def test_only_the_access_token_reads_them(self, api, path, headers, code):
        status, body = await get(api, path, headers)
        assert (status, body["code"]) == (401, code)
        assert (await get(api, path, {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()}))[0] in (200, 404)


class TestProfileTraits:
    async def test_audiences_and_computed_traits_among_the_traits(self, api):
        """As Segment's Engage: an audience is a trait of its key, true; computed traits under their names
        (those of definitions in force only)."""
        status, body = await get(api, f"{PROFILE}/user_id:u-00/traits")
        assert status == 200
        traits = body["traits"]
        assert traits["plan"] == "pro" and traits["event_count"] == 1  # the person's own and the builder's, as before
        assert traits["orders_90d"] == 3 and traits["high_value"] is True
        assert "gone" not in traits and "gone_trait" not in traits and "lamp_viewers" not in traits

    @pytest.mark.parametrize("who, wanted, expected", [
        ("u-00", "audience", {"high_value": True}),
        ("u-01", "audience", {"high_value": True}),  # not "gone": no longer defined
        ("u-00", "computed_trait", {"orders_90d": 3}),
        ("u-01", "computed_trait", {}),
    ])  # fmt: skip
    async def test_class_gives_one_class_only(self, api, who, wanted, expected):
        status, body = await get(api, f"{PROFILE}/user_id:{who}/traits?class={wanted}")
        assert (status, body["traits"]) == (200, expected)

    async def test_class_with_include_and_an_unknown_class(self, api):
        status, body = await get(api, f"{PROFILE}/user_id:u-00/traits?class=audience&include=high_value,lamp_viewers")
        assert (status, body["traits"]) == (200, {"high_value": True})
        status, body = await get(api, f"{PROFILE}/user_id:u-00/traits?class=sql_trait")
        assert status == 400 and body["code"] == "invalid_parameter"
        assert body["message"] == "class is audience or computed_trait"


class TestReads:
    def test_sizes_over_time_are_the_stays_open_at_each_moment(self, tmp_path):
        """Against the definition itself (size at T: entered_at <= T, exited_at NULL or after T), on random
        stays around and inside the window, for each period."""
        store = open_store(tmp_path / "profiles.db")
        rng = random.Random(29)
        now = BASE + 40 * 86400
        stays = []
        for n in range(400):
            entered = now - rng.uniform(-2 * 86400, 45 * 86400)
            exited = None if rng.random() < 0.4 else entered + rng.uniform(0, 20 * 86400)
            stays.append((rng.choice(["a", "b"]), f"prf_{n:04d}", entered, exited))
        write_rows(store, history=stays)
        for period, step in reads.PERIODS.items():
            series = reads.sizes_over_time(store, ["a", "b", "none"], now, period)
            moments = [now - step * (reads.POINTS - 1 - i) for i in range(reads.POINTS)]
            assert series["at"] == [iso_ms(t) for t in moments]
            for key in ("a", "b", "none"):
                expected = [sum(1 for k, _, e, x in stays if k == key and e <= t and (x is None or x > t)) for t in moments]
                assert series["sizes"][key] == expected, (period, key)
            assert any(series["sizes"]["a"]) and series["sizes"]["none"] == [0] * reads.POINTS
        store.close()

    async def test_the_definitions_in_force_are_listed_not_the_folder_s(self, api, profiles_db):
        """A definition being counted over the log is not listed until it takes over; one no longer in
        force is gone at once (its members a 404); the text is parsed again only when it changes."""
        store = open_store(profiles_db)
        vip = {"audiences/vip.yaml": "name: VIP\ncondition: {trait: plan, value: vip}\n"}
        in_force(store, DEFINITIONS, backfilling={**DEFINITIONS, **vip})
        status, body = await get(api, "/v1/audiences")
        assert [a["key"] for a in body["data"]] == ["high_value", "lamp_viewers"]
        assert (await get(api, "/v1/audiences/vip/members"))[0] == 404
        in_force(store, {"audiences/high_value.yaml": DEFINITIONS["audiences/high_value.yaml"], **vip})
        status, body = await get(api, "/v1/audiences")
        assert [(a["key"], a["size"]) for a in body["data"]] == [("high_value", PEOPLE), ("vip", 0)]
        assert (await get(api, "/v1/audiences/lamp_viewers/members"))[0] == 404
        assert (await get(api, f"{PROFILE}/user_id:u-00/traits?class=computed_trait"))[1]["traits"] == {}  # orders_90d: not in force
        store.close()

    def test_in_force_parses_only_a_changed_text(self, tmp_path):
        store = open_store(tmp_path / "profiles.db")
        found = InForce()
        in_force(store, DEFINITIONS)
        first = found.of(store)
        assert list(first.audiences) == ["high_value", "lamp_viewers"] and found.of(store) is first
        in_force(store, {})
        assert not found.of(store) and not found.backfilling(store)
        store.close()


class TestCli:
    async def test_intilery_audiences_prints_key_name_size_and_last_update(self, api, config, profiles_db, capsys):
        argv = ["audiences", "--data-dir", str(config.data_dir), "--profiles-db", profiles_db]
        assert cli.main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["key", "name", "size", "last", "update"]
        assert lines[1].split() == ["high_value", "High-value", "buyers", "25", iso_ms(BASE + 500)]
        assert lines[2].split() == ["lamp_viewers", "Viewed", "a", "lamp", "0", "never"]
        assert len(lines) == 3 and lines[1].index("25") + 2 == lines[0].index("size") + 4  # sizes right-aligned under "size"
        assert cli.main([*argv, "--json"]) == 0
        assert capsys.readouterr().out.strip().startswith('{"data":[{"key":"high_value","name":"High-value buyers","size":25')

    def test_without_a_database_or_audiences_it_says_so(self, config, tmp_path, capsys):
        argv = ["audiences", "--data-dir", str(config.data_dir)]
        assert cli.main(argv) == 1
        assert "no profile database at" in capsys.readouterr().err
        open_store(config.data_dir / "profiles.db").close()
        assert cli.main(argv) == 0
        out, err = capsys.readouterr()
        assert out == "" and "no audience is in force" in err and "Traceback" not in err


def test_events_in_members_out_through_the_api(tmp_path):
    """A real collector with its builder: people who ordered twice are high_value members on
    GET /v1/audiences within seconds of the 200, in the Profile API's traits and intilery audiences;
    an audience added to the folder is listed once the builder has counted it over the log."""
    import requests

    from tests.profiles.killing import KEY, send

    write_definitions(tmp_path / "engage", {k: v for k, v in DEFINITIONS.items() if k != "audiences/lamp_viewers.yaml"})
    with CollectorProcess(tmp_path, [{"name": "web", "write_key": KEY}], access_token=TOKEN) as collector:
        def read(path: str) -> dict:
            with requests.get(collector.url + path, headers=BEARER, timeout=10) as answer:
                assert answer.status_code in (200, 404), answer.text
                return answer.json()

        orders = [{"type": "track", "event": "Order Completed", "userId": f"u-{n}", "anonymousId": f"a-{n}"}
                  for n in (1, 2, 2, 3, 3, 3)]  # fmt: skip
        assert send(collector.url, orders)
        wait_until(lambda: [(a["key"], a["size"]) for a in read("/v1/audiences")["data"]] == [("high_value", 2)],
                   timeout=20, what="u-2 and u-3 in high_value")  # fmt: skip
        members = read("/v1/audiences/high_value/members")["data"]
        assert sorted((m["user_id"], m["anonymous_id"]) for m in members) == [("u-2", "a-2"), ("u-3", "a-3")]
        assert all(m["entered_at"].endswith("Z") for m in members)
        assert read(f"{PROFILE}/user_id:u-3/traits?class=audience")["traits"] == {"high_value": True}
        assert read(f"{PROFILE}/user_id:u-1/traits?class=audience")["traits"] == {}
        assert read(f"{PROFILE}/user_id:u-3/traits")["traits"]["orders_90d"] == 3

        write_definitions(tmp_path / "engage", {"audiences/one_order.yaml": "name: Ordered once\ncondition:\n"
                                                "  event: Order Completed\n  count: {op: eq, value: 1}\n"})  # fmt: skip
        collector.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: [(a["key"], a["size"]) for a in read("/v1/audiences")["data"]] == [("high_value", 2), ("one_order", 1)],
                   timeout=30, what="the new audience, counted over the log")  # fmt: skip
        assert [m["user_id"] for m in read("/v1/audiences/one_order/members")["data"]] == ["u-1"]
    assert cli.main(["audiences", "--config", str(collector.config), "--data-dir", str(collector.data_dir)]) == 0
