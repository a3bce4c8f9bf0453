"""The Guarantees gate (``tests/guarantees.py``) on a tiny project of its own, run by a real pytest:
a run in which a test a README Guarantees row cites skipped, was marked xfail, or (in a run of
the whole suite) was deselected with ``-k``, ``-m`` or ``--deselect`` fails and names it; a
partial run is judged as before (only what it ran)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]  # where guarantees.py is

README = """# A project

## Guarantees

| promise | proven by |
|---|---|
| one | `test_rows.py::test_cited` |
| two | `test_rows.py::test_other`, `...::test_marked` |

## After
"""

CONFTEST = """from pathlib import Path

from guarantees import Gate


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a slow test")
    config.pluginmanager.register(Gate(Path(__file__).resolve().parents[1] / "README.md"), "guarantees")
"""

TESTS_FILE = """import os

import pytest

MODE = os.environ.get("GATE_MODE", "")


@pytest.mark.xfail(MODE in ("xfail", "xpass"), reason="marked by the run", strict=False)
def test_cited():
    assert MODE != "xfail"


@pytest.mark.skipif(MODE == "skip", reason="skipped by the run")
def test_other():
    pass


@pytest.mark.slow
def test_marked():
    pass


def test_uncited():
    pass
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gate")
    (root / "README.md").write_text(README)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (root / "tests").mkdir()
    (root / "tests" / "conftest.py").write_text(CONFTEST)
    (root / "tests" / "test_rows.py").write_text(TESTS_FILE)
    return root


def run(project: Path, *args: str, mode: str = "") -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "GATE_MODE": mode}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def not_proven(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("GUARANTEE NOT PROVEN")]


def test_a_whole_run_with_every_cited_test_passing_passes(project):
    code, output = run(project)
    assert code == 0 and not not_proven(output), output


def test_a_whole_run_deselecting_an_uncited_test_passes(project):
    code, output = run(project, "-k", "not test_uncited")
    assert code == 0 and not not_proven(output), output


@pytest.mark.parametrize("args, named", [
    (["-k", "not test_cited"], "tests/test_rows.py::test_cited"),
    (["-m", "not slow"], "tests/test_rows.py::test_marked"),
    (["--deselect", "tests/test_rows.py::test_other"], "tests/test_rows.py::test_other"),
], ids=["-k", "-m", "--deselect"])  # fmt: skip
def test_a_whole_run_deselecting_a_cited_test_fails_and_names_it(project, args, named):
    code, output = run(project, *args)
    problems = not_proven(output)
    assert code == 1, output
    assert len(problems) == 1 and named in problems[0] and "deselected" in problems[0], output


@pytest.mark.parametrize("mode, says", [("xfail", "xfailed"), ("xpass", "xpassed"), ("skip", "skipped")])
def test_a_cited_test_that_did_not_prove_its_row_fails_the_run(project, mode, says):
    named = "tests/test_rows.py::test_other" if mode == "skip" else "tests/test_rows.py::test_cited"
    for args in ([], ["tests/test_rows.py"]):  # the whole suite, and a partial run that ran it
        code, output = run(project, *args, mode=mode)
        problems = not_proven(output)
        assert code == 1, output
        assert len(problems) == 1 and named in problems[0] and says in problems[0], output


def test_a_partial_run_is_judged_on_what_it_ran(project):
    code, output = run(project, "tests/test_rows.py", "-k", "not test_cited")
    assert code == 0 and not not_proven(output), output
    code, output = run(project, "tests/test_rows.py::test_uncited")
    assert code == 0 and not not_proven(output), output
