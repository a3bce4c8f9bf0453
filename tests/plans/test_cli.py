"""``intilery plan infer`` and ``intilery plan check`` on a store the collector wrote."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from collector.cli import main
from collector.plans.infer import infer
from collector.plans.plan import Plan

KEY = {"X-Write-Key": "wk_web"}
PLANS = ["free", "pro", "team"]


def generated(n: int = 300, seed: int = 7, category_missing_every: int = 0) -> list[dict]:
    """A seeded mix: two track events, pages, identifies; coupon present in 98% of orders, category
    in every Product Viewed (or all but one in ``category_missing_every``)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = f"u{rng.randrange(40)}"
        if i % 3 == 0:
            props = {"sku": f"SKU-{rng.randrange(10_000)}", "price": rng.choice([10, 12.5, 99]),
                     "currency": rng.choice(["GBP", "EUR"]), "url": f"https://shop.example/p/{i}"}  # fmt: skip
            if not category_missing_every or i % (3 * category_missing_every):
                props["category"] = rng.choice(["shoes", "hats"])
            out.append({"type": "track", "event": "Product Viewed", "userId": user, "properties": props})
        elif i % 3 == 1:
            props = {"orderId": f"o{i}", "total": rng.randrange(1, 500), "placedAt": "2026-11-28T13:00:00Z"}
            if i % 50 != 1:  # 49 in 50: not required
                props["coupon"] = f"C{rng.randrange(1000)}"
            out.append({"type": "track", "event": "Order Completed", "userId": user, "properties": props})
        elif i % 2 == 0:
            out.append({"type": "page", "userId": user, "name": "Home", "properties": {"path": f"/{i}"}})
        else:
            out.append({"type": "identify", "userId": user,
                        "traits": {"email": f"{user}@example.com", "plan": rng.choice(PLANS)}})  # fmt: skip
    return out


@pytest.fixture
async def store(client, config):
    """The generated events, stored by the collector (in batches of 100) for the ``web`` source."""
    events = generated()
    for start in range(0, len(events), 100):
        answer = await client.post("/v1/batch", json={"batch": events[start:start + 100]}, headers=KEY)
        assert (await answer.json())["accepted"] == len(events[start:start + 100])
    await client.post("/v1/track", json={"userId": "x", "event": "Other Source"}, headers={"X-Write-Key": "wk_server"})
    return config.data_dir


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["plan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


class TestInfer:
    async def test_the_draft_describes_the_data(self, store, capsys):
        """Every event name, the types seen, required at 99%, enums for few strings, and formats."""
        code, out, _ = run(capsys, "infer", "--data-dir", str(store), "--source", "web")
        assert code == 0
        plan = yaml.safe_load(out)
        assert sorted(plan["track"]) == ["Order Completed", "Product Viewed"]  # the other source's is left out
        viewed = plan["track"]["Product Viewed"]
        assert viewed["properties"]["price"] == {"type": "number"}  # integers and floats seen: number
        assert viewed["properties"]["currency"] == {"type": "string", "enum": ["EUR", "GBP"]}
        assert viewed["properties"]["url"] == {"type": "string", "format": "uri"}
        assert viewed["properties"]["sku"] == {"type": "string"}  # many values: no enum
        assert viewed["required"] == ["category", "currency", "price", "sku", "url"]
        order = plan["track"]["Order Completed"]
        assert "coupon" not in order["required"]  # 98%
        assert order["properties"]["total"] == {"type": "integer"}
        assert order["properties"]["placedAt"] == {"type": "string", "enum": ["2026-11-28T13:00:00Z"]}
        assert plan["identify"]["properties"]["email"] == {"type": "string", "format": "email"}
        assert plan["identify"]["properties"]["plan"]["enum"] == PLANS
        assert plan["page"]["properties"]["path"] == {"type": "string"}
        assert plan["unplanned"] == "flag"

    async def test_the_data_passes_its_draft_and_a_wrong_event_fails_it(self, store, capsys, tmp_path):
        """The draft is a valid plan the events it came from pass; a hand-made wrong event does not."""
        draft = tmp_path / "draft.yaml"
        assert run(capsys, "infer", "--data-dir", str(store), "--source", "web", "--out", str(draft))[0] == 0
        plan = Plan.load(draft)
        code, out, _ = run(capsys, "check", "--plan", str(draft), "--data-dir", str(store), "--source", "web")
        assert (code, out.splitlines()[0]) == (0, "300 events checked, 0 violate the plan"), out
        wrong = {"type": "track", "event": "Product Viewed",
                 "properties": {"sku": 7, "price": 1, "currency": "USD", "url": "x", "category": "hats"}}  # fmt: skip
        assert sorted(v["code"] for v in plan.violations(wrong)) == ["enum", "format", "type"]

    async def test_json_out_is_json(self, store, capsys, tmp_path):
        """--out FILE.json writes JSON that loads as a plan."""
        path = tmp_path / "draft.json"
        run(capsys, "infer", "--data-dir", str(store), "--out", str(path))
        assert "Product Viewed" in json.loads(path.read_text())["track"]
        assert Plan.load(path).track

    async def test_progress_is_shown_on_stderr(self, store, capsys):
        """A large store shows how far the read has got, on standard error (the plan alone on stdout)."""
        _, out, err = run(capsys, "infer", "--data-dir", str(store), "--progress-every", "100")
        assert "intilery plan infer: 100 events read" in err and "intilery plan infer: 300 events read" in err
        assert "events read" not in out

    async def test_since_leaves_out_older_partitions(self, store, capsys):
        """--since with a date after every stored event reads nothing: an error that says so, not an empty plan."""
        code, out, err = run(capsys, "infer", "--data-dir", str(store), "--since", "2999-01-01")
        assert (code, out) == (1, "")
        assert "no events under" in err and "since then" in err

    def test_a_bad_since_is_a_usage_error(self, capsys):
        """--since that is neither an age nor a date: exit 2 with the accepted forms."""
        with pytest.raises(SystemExit) as caught:
            main(["plan", "infer", "--since", "last week"])
        assert caught.value.code == 2
        assert "--since takes 7d, 12h or a date" in capsys.readouterr().err


    def test_required_at_99_percent_and_the_outliers_reported(self):
        """A field in 99% of a call's events is required (98% is not), and the events without it are named."""
        draft = infer(generated(300, category_missing_every=100))
        viewed = draft.plan()["track"]["Product Viewed"]
        assert "category" in viewed["required"]
        assert draft.outliers() == ["Product Viewed: category missing in 1 of 100 events"]
        draft = infer(generated(300, category_missing_every=50))
        assert "category" not in draft.plan()["track"]["Product Viewed"]["required"]


class TestCheck:
    async def test_the_report_counts_per_event_and_code_with_an_example(self, store, capsys, tmp_path):
        """Violations per event name and code, each with an example; exit status 1."""
        plan = tmp_path / "strict.yaml"
        plan.write_text(yaml.safe_dump({
            "track": {"Product Viewed": {"type": "object", "properties": {"price": {"type": "integer"}}}},
            "identify": {"type": "object", "required": ["name"]},
            "unplanned": "flag",
        }))  # fmt: skip
        code, out, _ = run(capsys, "check", "--plan", str(plan), "--data-dir", str(store), "--source", "web")
        assert code == 1
        lines = out.splitlines()
        assert lines[0].startswith("300 events checked, ") and lines[0].endswith(" violate the plan")
        rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]) for line in lines[4:]}
        names = {(r[0], r[1]) for r in rows}
        assert names == {("(unplanned)", "unplanned_event"), ("Product Viewed", "type"), ("identify", "required")}
        assert ("(unplanned)", "unplanned_event", "100") in rows  # every Order Completed
        assert ("identify", "required", "50") in rows
        example = next(line for line in lines if "| identify | required |" in line)
        assert '/traits: "name" is a required property' in example

    async def test_a_plan_that_cannot_be_read_is_exit_2(self, store, capsys, tmp_path):
        """check with a plan file that is not a plan: exit 2 and why, no report."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("unplanned: sometimes\n")
        code, out, err = run(capsys, "check", "--plan", str(bad), "--data-dir", str(store))
        assert code == 2 and out == ""
        assert "unplanned must be one of allow, flag, reject" in err
