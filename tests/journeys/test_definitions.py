"""Journeys are files, checked with file, line and reason (issue 32, item 1)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector.engage.journeys import definitions

DEMO = Path(__file__).resolve().parents[2] / "demo_site" / "engage"

GOOD = """\
entry: {event: Product Added}
instance_key: properties.cart_id
steps:
  - wait_for: {event: Order Completed, same_instance: true, timeout: 3s}
  - send: {destination: crm}
"""


def write(root: Path, text: str, name: str = "j") -> Path:
    (root / "journeys").mkdir(parents=True, exist_ok=True)
    (root / "destinations").mkdir(parents=True, exist_ok=True)
    (root / "destinations" / "crm.yaml").write_text("url: http://x\n")
    path = root / "journeys" / f"{name}.yaml"
    path.write_text(text)
    return path


def test_the_shipped_examples_are_valid():
    found = definitions.load(DEMO)
    assert set(found) >= {"abandoned_cart", "expiring_reservation"}
    cart = found["abandoned_cart"]
    assert found["expiring_reservation"].instance_key == ("properties", "reservation_id")
    assert cart.nodes[cart.start].kind == "wait_for" and cart.nodes[cart.start].reset is not None


def test_a_good_journey_has_no_problem(tmp_path):
    write(tmp_path, GOOD)
    assert definitions.check(tmp_path) == []


@pytest.mark.parametrize("text, line, reason", [
    (GOOD.replace("  - send: {destination: crm}", "  - sned: {destination: crm}"), 5, "unknown step 'sned'"),
    (GOOD.replace("  - send: {destination: crm}", "  - exit: done\n  - send: {destination: crm}"), 6, "never reached"),
    (GOOD.replace(", timeout: 3s", ""), 4, "needs a 'timeout'"),
    (GOOD + "  - name: again\n    if: {field: event, value: x}\n    then: [{goto: again}]\n", 8, "loop without a wait"),
    (GOOD.replace("crm", "nowhere"), 5, "destination 'nowhere', and engage/destinations/ has no such file"),
    (GOOD + "  - goto: nowhere\n", 6, "no step has that name"),
    (GOOD.replace("3s", "3 hours"), 4, "is not a duration"),
    (GOOD.replace("entry: {event: Product Added}", "entry: {event: Product Added, where: {trait: plan}}"), 1, "'trait' is about a person"),
    (GOOD.replace("steps:", "reentry: twice\nsteps:"), 3, "'reentry' is once, always or {after: 7d}"),
])  # fmt: skip
def test_mistakes_are_refused_with_file_line_and_reason(tmp_path, text, line, reason):
    path = write(tmp_path, text)
    problems = definitions.check(tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}: "), problems
    assert reason in problems[0], problems


def test_a_loop_with_a_wait_is_allowed(tmp_path):
    write(tmp_path, GOOD + "  - name: again\n    wait: 1d\n  - send: {destination: crm}\n  - goto: again\n")
    assert definitions.check(tmp_path) == []


def test_the_cli_checks_them(tmp_path):
    shutil.copytree(DEMO, tmp_path / "engage")
    ok = subprocess.run([sys.executable, "-m", "collector", "journeys", "check", "--engage-dir", str(tmp_path / "engage")],
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = write(tmp_path / "engage", GOOD.replace(", timeout: 3s", ""), "bad")
    out = subprocess.run([sys.executable, "-m", "collector", "journeys", "check", "--engage-dir", str(tmp_path / "engage")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and f"{bad}:4: a 'wait_for' needs a 'timeout'" in out.stderr
