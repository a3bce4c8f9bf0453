"""Tracking plans at ingest: flag and reject, single and batch paths, unplanned events, metrics,
a bad plan at start, and reload on SIGHUP in a real process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from collector.app import STATE, create_app
from collector.config import load_config
from collector.plans.plan import Plan, PlanError
from helpers import CollectorProcess, wait_until
from tests.conftest import rejected, stored

KEY = {"X-Write-Key": "wk_web"}
PLAN = {
    "track": {
        "Order Completed": {
            "type": "object",
            "properties": {"revenue": {"type": "number"}, "email": {"type": "string", "format": "email"}},
            "required": ["revenue"],
        },
    },
    "identify": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
}
GOOD = {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 12.5}}
BAD = {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": "lots"}}
UNPLANNED = {"type": "track", "userId": "u1", "event": "Coupon Applied", "properties": {}}


def write_plan(path: Path, unplanned: str = "flag", **changes) -> Path:
    path.write_text(json.dumps({**PLAN, "unplanned": unplanned, **changes}))
    return path


@pytest.fixture
def planned(config, tmp_path, make_client):
    """A client for the ``web`` source with a plan (``unplanned``) in a given enforcement mode."""

    async def start(enforcement: str, unplanned: str = "flag"):
        plan = write_plan(tmp_path / "web.json", unplanned)
        web = replace(config.sources[0], tracking_plan=str(plan), plan_enforcement=enforcement)
        return await make_client(config, sources=(web, *config.sources[1:]))

    return start


class TestFlag:
    async def test_a_violation_is_stored_with_context_violations(self, planned, config):
        """In flag mode the event is stored, with what it broke in context.violations."""
        client = await planned("flag")
        answer = await client.post("/v1/track", json={**BAD, "messageId": "bad-1"}, headers=KEY)
        assert answer.status == 200 and (await answer.json())["accepted"] == 1
        [line] = stored(config.data_dir)
        assert line["context"]["violations"] == [
            {"path": "/properties/revenue", "code": "type", "message": '"lots" is not of type "number"'}
        ]

    async def test_a_good_event_has_no_violations_field(self, planned, config):
        """An event that follows the plan is stored as it would be without one."""
        client = await planned("flag")
        answer = await client.post("/v1/batch", json={"batch": [GOOD]}, headers=KEY)
        assert (await answer.json())["accepted"] == 1
        [line] = stored(config.data_dir)
        assert "violations" not in line["context"]

    async def test_identify_traits_are_checked(self, planned, config):
        """identify is checked against the plan's identify schema (its traits), formats included."""
        client = await planned("flag")
        await client.post("/v1/identify", json={"userId": "u1", "traits": {"email": "not an email"}}, headers=KEY)
        [line] = stored(config.data_dir)
        assert [(v["path"], v["code"]) for v in line["context"]["violations"]] == [("/traits/email", "format")]

    async def test_metrics_count_violations_per_source_event_and_code(self, planned):
        """intilery_plan_violations_total has source, event and code labels; unplanned names share one label."""
        client = await planned("flag")
        await client.post("/v1/batch", json={"batch": [BAD, BAD, UNPLANNED, {**UNPLANNED, "event": "x" * 50}]},
                          headers=KEY)  # fmt: skip
        text = await (await client.get("/metrics")).text()
        assert 'intilery_plan_violations_total{code="type",event="Order Completed",source="web"} 2.0' in text
        assert 'intilery_plan_violations_total{code="unplanned_event",event="(unplanned)",source="web"} 2.0' in text


class TestReject:
    async def test_single_path_answers_400_plan_violation_and_keeps_violations(self, planned, config):
        """A single message that breaks the plan: 400 plan_violation with a sentence; rejected/ keeps its violations."""
        client = await planned("reject")
        answer = await client.post("/v1/track", json=BAD, headers=KEY)
        assert answer.status == 400
        body = await answer.json()
        assert body["code"] == "plan_violation"
        assert body["message"] == "the message does not follow the source's tracking plan: /properties/revenue (type)"
        assert stored(config.data_dir) == []
        [dead] = rejected(config.data_dir)
        assert dead["code"] == "plan_violation"
        assert [v["path"] for v in dead["violations"]] == ["/properties/revenue"]
        assert json.loads(dead["payload"])["properties"] == {"revenue": "lots"}

    async def test_in_a_batch_the_message_is_rejected_alone_with_its_index(self, planned, config):
        """Inside a batch only the breaking message is rejected (with its index); the rest are stored."""
        client = await planned("reject")
        answer = await client.post("/v1/batch", json={"batch": [GOOD, BAD, GOOD]}, headers=KEY)
        assert answer.status == 200
        body = await answer.json()
        assert body["accepted"] == 2
        assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "plan_violation")]
        assert len(stored(config.data_dir)) == 2
        [dead] = rejected(config.data_dir)
        assert dead["index"] == 1 and dead["violations"][0]["code"] == "type"
        assert dead["payload"]["properties"] == {"revenue": "lots"}

    async def test_rejections_are_counted_like_other_codes(self, planned):
        """A plan rejection counts in intilery_events_rejected_total with code plan_violation."""
        client = await planned("reject")
        await client.post("/v1/batch", json={"batch": [BAD]}, headers=KEY)
        text = await (await client.get("/metrics")).text()
        assert 'intilery_events_rejected_total{code="plan_violation",source="web"} 1.0' in text


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


class TestOddInput:
    @pytest.mark.parametrize(
        "properties",
        [
            pytest.param({"revenue": deep(250)}, id="deep-value"),
            pytest.param({"revenue": 1, "x" * 5000: "y"}, id="long-key"),
            pytest.param({"revenue": 1, "a/b~c": "\u0000\ud7ff"}, id="pointer-characters"),
            pytest.param({"revenue": 1e308, "email": "@" * 1000}, id="huge-number-long-email"),
            pytest.param({f"k{i}": [i] for i in range(500)}, id="many-violations"),
        ],
    )
    @pytest.mark.parametrize("enforcement", ["flag", "reject"])
    async def test_never_a_500(self, planned, config, enforcement, properties):
        """Whatever the properties, a planned source answers 200 or 400 plan_violation, and what it stores is JSON."""
        client = await planned(enforcement)
        answer = await client.post("/v1/track", json={**GOOD, "properties": properties}, headers=KEY)
        assert answer.status in (200, 400), await answer.text()
        if answer.status == 400:
            assert (await answer.json())["code"] == "plan_violation"
            [dead] = rejected(config.data_dir)
            assert 0 < len(dead["violations"]) <= 20
        else:
            for line in stored(config.data_dir):
                assert len(line["context"].get("violations", [])) <= 20


    def test_violations_are_capped_per_message(self):
        """A message breaking its schema a thousand ways carries at most 20 violations, each message cut to 200 characters."""
        plan = Plan.from_mapping({"track": {"E": {"type": "object", "additionalProperties": {"type": "integer"}}}})
        found = plan.violations({"type": "track", "event": "E", "properties": {f"k{i}": "v" * 500 for i in range(1000)}})
        assert len(found) == 20 and all(len(v["message"]) <= 200 for v in found)


class TestUnplanned:
    @pytest.mark.parametrize(
        "enforcement, unplanned, status, stored_violations",
        [
            pytest.param("flag", "allow", 200, None, id="allow"),
            pytest.param("flag", "flag", 200, [("/event", "unplanned_event")], id="flag"),
            pytest.param("flag", "reject", 400, None, id="reject-in-flag-mode"),
            pytest.param("reject", "allow", 200, None, id="allow-in-reject-mode"),
            pytest.param("reject", "flag", 200, [("/event", "unplanned_event")], id="flag-in-reject-mode"),
        ],
    )
    async def test_an_event_the_plan_does_not_list(self, planned, config, enforcement, unplanned, status,
                                                  stored_violations):  # fmt: skip
        """``unplanned`` decides what happens to a track whose event the plan does not list, in either mode."""
        client = await planned(enforcement, unplanned)
        answer = await client.post("/v1/track", json=UNPLANNED, headers=KEY)
        assert answer.status == status
        if status == 400:
            assert (await answer.json())["code"] == "plan_violation"
            assert stored(config.data_dir) == []
            return
        [line] = stored(config.data_dir)
        found = line["context"].get("violations")
        assert ([(v["path"], v["code"]) for v in found] if found else None) == stored_violations


class TestNoPlan:
    def test_a_source_without_a_plan_has_no_plan_stage(self, config):
        """With no tracking_plan anywhere the pipeline has no plans to consult (zero cost without a plan)."""
        app = create_app(config)
        assert not app[STATE].pipeline.plans

    async def test_other_sources_are_not_checked(self, planned, config):
        """A plan is its source's own: another source's events are stored without violations."""
        client = await planned("reject")
        answer = await client.post("/v1/track", json=BAD, headers={"X-Write-Key": "wk_server"})
        assert answer.status == 200
        [line] = stored(config.data_dir)
        assert "violations" not in line["context"]


class TestLoading:
    def test_the_readme_example_plan_loads(self):
        """The plan shown in the README's Tracking plans section is a valid plan."""
        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        section = readme.split("\n## Tracking plans\n", 1)[1]
        example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
        plan = Plan.from_mapping(yaml.safe_load(example))
        assert sorted(plan.track) == ["Order Completed", "Product Viewed"] and plan.unplanned == "flag"
        assert plan.violations({"type": "track", "event": "Order Completed", "properties": {"orderId": "o1"}})


    @pytest.mark.parametrize(
        "text, says",
        [
            pytest.param("track: [1, 2]", "track must map event names to schemas", id="track-not-a-map"),
            pytest.param("track:\n  X: {type: nonsense}", "track.X is not a valid JSON Schema", id="bad-schema"),
            pytest.param("unplanned: maybe", "unplanned must be one of allow, flag, reject", id="bad-unplanned"),
            pytest.param("tracks: {}", "unknown keys ['tracks']", id="unknown-key"),
            pytest.param("track: {a: [", "is not valid YAML", id="not-yaml"),
        ],
    )
    def test_a_bad_plan_is_a_clear_error(self, tmp_path, text, says):
        """A plan that cannot be used raises PlanError naming the file and the problem."""
        path = tmp_path / "plan.yaml"
        path.write_text(text)
        with pytest.raises(PlanError) as caught:
            Plan.load(path)
        assert says in str(caught.value) and str(path) in str(caught.value)

    def test_a_missing_plan_file_is_a_clear_error(self, config, tmp_path):
        """A source naming a plan file that does not exist cannot start the app."""
        web = replace(config.sources[0], tracking_plan=str(tmp_path / "nope.yaml"))
        with pytest.raises(PlanError, match="cannot read tracking plan"):
            create_app(replace(config, sources=(web,)))

    def test_the_plan_path_is_relative_to_the_config_file(self, tmp_path):
        """tracking_plan = "plans/web.yaml" is found beside the configuration file, not the working directory."""
        (tmp_path / "conf").mkdir()
        toml = tmp_path / "conf" / "intilery.toml"
        toml.write_text('[[source]]\nname = "web"\nwrite_key = "wk"\ntracking_plan = "plans/web.yaml"\n'
                        'plan_enforcement = "reject"\n')  # fmt: skip
        [source] = load_config(toml, environ={}).sources
        assert source.tracking_plan == str(tmp_path / "conf" / "plans" / "web.yaml")
        assert source.plan_enforcement == "reject"

    def test_a_bad_plan_at_start_stops_serve_with_a_clear_error(self, tmp_path):
        """``intilery serve`` with a bad plan exits 2 and says which file and why."""
        plan = tmp_path / "web.yaml"
        plan.write_text("unplanned: maybe\n")
        collector = CollectorProcess(tmp_path, [{"name": "web", "write_key": "wk", "tracking_plan": str(plan)}])
        done = subprocess.run([sys.executable, "-m", "collector", "serve", "--config", str(collector.config),
                               "--port", str(collector.port), "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2
        assert f"configuration error: tracking plan '{plan}': unplanned must be one of allow, flag, reject" in done.stderr


def _post(url: str, message: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/track", data=json.dumps(message).encode(),
                                     headers={"Content-Type": "application/json", "X-Write-Key": "wk"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class TestReload:
    def test_sighup_reloads_a_good_plan_and_keeps_the_old_on_a_bad_one(self, tmp_path):
        """SIGHUP takes a new plan without a restart; a bad one is logged and the old one stays in force."""
        plan = tmp_path / "web.json"
        plan.write_text(json.dumps({"unplanned": "reject"}))
        sources = [{"name": "web", "write_key": "wk", "tracking_plan": str(plan), "plan_enforcement": "reject"}]
        with CollectorProcess(tmp_path, sources) as collector:
            assert _post(collector.url, GOOD)[0] == 400  # not listed yet: rejected
            write_plan(plan, "reject")
            collector.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: _post(collector.url, GOOD)[0] == 200, timeout=30, what="the new plan in force")
            assert _post(collector.url, BAD)[0] == 400

            plan.write_text("{not json")
            collector.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "tracking plan not reloaded" in collector.log.read_text(), timeout=30,
                       what="the reload error in the log")  # fmt: skip
            assert collector.proc.poll() is None
            assert _post(collector.url, GOOD)[0] == 200  # the previous plan still in force
            status, body = _post(collector.url, BAD)
            assert (status, body["code"]) == (400, "plan_violation")
        log_text = collector.log.read_text()
        assert "is not valid JSON" in log_text and "the previous one stays in force" in log_text

    def test_the_supervisor_passes_sighup_to_every_worker(self, tmp_path):
        """With --workers 2, a SIGHUP to the supervisor reloads the plan in both workers."""
        plan = write_plan(tmp_path / "web.json", "reject")
        sources = [{"name": "web", "write_key": "wk", "tracking_plan": str(plan), "plan_enforcement": "reject"}]
        with CollectorProcess(tmp_path, sources, args=["--workers", "2"]) as collector:
            wait_until(lambda: collector.log.read_text().count("tracking plan loaded") >= 2, timeout=30,
                       what="both workers serving")  # fmt: skip
            workers = re.compile(r"tracking plan reloaded .*worker=(\d)")

            def reloaded_in_both() -> bool:  # resent: a worker still starting ignores SIGHUP
                collector.proc.send_signal(signal.SIGHUP)
                return set(workers.findall(collector.log.read_text())) == {"0", "1"}

            wait_until(reloaded_in_both, timeout=30, interval=0.5, what="a reload in both workers")
            assert collector.proc.poll() is None

