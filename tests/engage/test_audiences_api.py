"""The audiences read back (issue 29, item 5): GET /v1/audiences, the members a page at a time, the
Profile API's ``traits?class=audience|computed_trait`` and the computed traits among the traits,
``intilery audiences``, the definitions reloaded on SIGHUP. Memberships are rows written straight
into the profile database (SQLite and PostgreSQL), as the live evaluation writes them."""

from __future__ import annotations

import base64
import logging
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
from .rows import engage_tables, write_rows

TOKEN = "at_audiences_test_token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PROFILE = "/v1/spaces/default/collections/users/profiles"
BASE = 1_796_000_000.0  # 2026-11-30: when the first member entered
PEOPLE = 25
DEFINITIONS = {
    "audiences/high_value.yaml": "name: High-value buyers\ncondition:\n  event: Order Completed\n  count: {op: gte, value: 2}\n",
    "audiences/lamp_viewers.yaml": "name: Viewed a lamp\ncondition:\n  event: Product Viewed\n  where: {field: properties.category, value: lamps}\n",
    "traits/orders_90d.yaml": "kind: count\nevent: Order Completed\nwithin: 90d\n",
}


@pytest.fixture
async def api(make_client, config, profiles_db, tmp_path):
    """A collector with 25 people (u-00 ... u-24) built into profiles; all in high_value (u-00 twice: an
    earlier stay ended), nobody in lamp_viewers, u-01 in an audience no longer defined; u-00's computed traits."""
    engage = write_definitions(tmp_path / "engage", DEFINITIONS)
    client = await make_client(config, access_token=TOKEN, profiles_db=profiles_db, engage_dir=engage)
    batch = [{"type": "identify", "userId": f"u-{n:02d}", "anonymousId": f"a-{n:02d}", "traits": {"plan": "pro"}}
             for n in range(PEOPLE)]  # fmt: skip
    assert (await client.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": "wk_server"})).status == 200
    store = open_store(profiles_db)
    Builder(store, config.data_dir).catch_up()
    engage_tables(store)
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
        engage_tables(store)
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

    def test_a_bad_reload_keeps_the_definitions_in_force(self, config, tmp_path, caplog):
        from dataclasses import replace

        engage = write_definitions(tmp_path / "engage", DEFINITIONS)
        in_force = InForce(replace(config, engage_dir=engage))
        assert list(in_force.definitions.audiences) == ["high_value", "lamp_viewers"]
        write_definitions(engage, {"audiences/vip.yaml": "condition: {trait: plan, value: vip}\n"})
        assert in_force.reload() and "vip" in in_force.definitions.audiences
        write_definitions(engage, {"audiences/broken.yaml": "condition: {trait: plan, op: around}\n"})
        caplog.set_level(logging.ERROR)
        assert not in_force.reload()
        assert sorted(in_force.definitions.audiences) == ["high_value", "lamp_viewers", "vip"]
        assert "broken.yaml:1:" in caplog.text and "previous ones stay in force" in caplog.text


class TestCli:
    async def test_intilery_audiences_prints_key_name_size_and_last_update(self, api, config, profiles_db, tmp_path, capsys):
        argv = ["audiences", "--data-dir", str(config.data_dir), "--profiles-db", profiles_db, "--engage-dir", str(tmp_path / "engage")]
        assert cli.main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["key", "name", "size", "last", "update"]
        assert lines[1].split() == ["high_value", "High-value", "buyers", "25", iso_ms(BASE + 500)]
        assert lines[2].split() == ["lamp_viewers", "Viewed", "a", "lamp", "0", "never"]
        assert len({line.index("size") if i == 0 else None for i, line in enumerate(lines)} - {None}) == 1
        assert cli.main([*argv, "--json"]) == 0
        assert capsys.readouterr().out.strip().startswith('{"data":[{"key":"high_value","name":"High-value buyers","size":25')

    def test_a_mistake_in_a_definition_is_said_with_its_file_and_line(self, config, tmp_path, capsys):
        engage = write_definitions(tmp_path / "engage", {"audiences/broken.yaml": "name: Broken\ncondition:\n  event: X\n  within: 7 weeks\n"})
        assert cli.main(["audiences", "--data-dir", str(config.data_dir), "--engage-dir", str(engage)]) == 1
        err = capsys.readouterr().err
        assert re.search(re.escape(str(engage / "audiences" / "broken.yaml")) + r":\d+: '7 weeks' is not a duration", err)
        assert "Traceback" not in err

    def test_without_audiences_or_a_database_it_says_so(self, config, tmp_path, capsys):
        assert cli.main(["audiences", "--data-dir", str(config.data_dir), "--engage-dir", str(tmp_path / "none")]) == 0
        assert "no audience is defined" in capsys.readouterr().err
        engage = write_definitions(tmp_path / "engage", DEFINITIONS)
        assert cli.main(["audiences", "--data-dir", str(config.data_dir), "--engage-dir", str(engage)]) == 0
        out, err = capsys.readouterr()
        assert "no profile database" in err and out.splitlines()[1].split()[-2:] == ["0", "never"]


def test_sighup_reads_the_definitions_again_and_keeps_them_on_a_mistake(tmp_path):
    """A real collector: an audience added is listed after a SIGHUP; a broken file then is logged and
    the audiences in force stay."""
    import requests

    engage = write_definitions(tmp_path / "engage", {"audiences/high_value.yaml": DEFINITIONS["audiences/high_value.yaml"]})
    store = open_store(tmp_path / "data" / "profiles.db")
    engage_tables(store)
    store.close()
    with CollectorProcess(tmp_path, access_token=TOKEN, args=["--no-profiles"]) as collector:
        def keys() -> list[str]:
            with requests.get(collector.url + "/v1/audiences", headers=BEARER, timeout=10) as answer:
                return [a["key"] for a in answer.json()["data"]]

        assert keys() == ["high_value"]
        write_definitions(engage, {"audiences/vip.yaml": "name: VIP\ncondition: {trait: plan, value: vip}\n"})
        collector.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: keys() == ["high_value", "vip"], timeout=30, what="the new audience after SIGHUP")
        write_definitions(engage, {"audiences/broken.yaml": "condition: {audience: nobody}\n"})
        collector.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "broken.yaml" in collector.log.read_text(), timeout=30, what="the reload's error in the log")
        assert "previous ones stay in force" in collector.log.read_text()
        assert keys() == ["high_value", "vip"]
