"""The bench rows of issue 18 run and measure what they say (their figures are in bench/README.md)."""

from __future__ import annotations

import bench.micro
import bench.plans
from collector.plans.plan import Plan


def test_the_micro_benchmark_has_a_tracking_plan_row(capsys, monkeypatch):
    """bench.micro times the per-event path with a plan (its events checked) beside the same case without,
    and prints the ratio."""
    checked = []
    violations = Plan.violations
    monkeypatch.setattr(Plan, "violations", lambda self, message: checked.append(1) or violations(self, message))
    rows = bench.micro.main(["--events", "200", "--warmup", "200", "--repeat", "1"])
    assert len(checked) >= 200
    cases = {row["case"] for row in rows}
    assert {bench.micro.PLAN_CASE, bench.micro.PLAN_BASE} <= cases
    assert "tracking plan: " in capsys.readouterr().out


def test_the_validator_comparison_checks_valid_and_invalid_events():
    """bench.plans measures both validators, and each finds no error in the valid events and one in every broken one."""
    rows = bench.plans.main(["--events", "300", "--repeat", "1"])  # timed() asserts the error counts
    assert [row["validator"] for row in rows] == ["jsonschema-rs", "fastjsonschema"]
