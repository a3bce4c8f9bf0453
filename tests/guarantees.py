"""The README's Guarantees gate: a pytest plugin (``tests/conftest.py`` registers it).

A run fails, naming the test, when a test behind a README Guarantees row:

- skipped, or was marked ``xfail`` (it xfailed, or xpassed: either way it proved nothing), in any run;
- in a run of the whole suite (no paths given: ``./scripts/test.sh [options]``), does not exist,
  or was deselected (``-k``, ``-m``, ``--deselect``: ``pytest_deselected``, which comes after
  ``pytest_itemcollected``). A run of some paths is judged on what it ran only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def guarantee_tests(readme: Path) -> list[str]:
    """The node ids (or file paths) the Guarantees table cites, as pytest spells them (``tests/...``)."""
    table = readme.read_text().split("\n## Guarantees", 1)[1].split("\n## ", 1)[0]
    cited = []
    for row in table.splitlines():
        if not row.startswith("|"):
            continue
        previous = None
        for ref in re.findall(r"`([^`]*(?:\.py|::)[^`]*)`", row.rsplit("|", 2)[-2]):
            ref = ref.split(" ", 1)[0]
            if ref.startswith("...::") and previous:  # `...::test` is a sibling of the one before
                ref = previous.rsplit("::", 1)[0] + ref[3:]
            previous = ref
            cited.append("tests/" + ref)
    return cited


def _covers(ref: str, nodeid: str) -> bool:
    return nodeid == ref or nodeid.startswith((ref + "::", ref + "["))


# a test's outcome (the terminal reporter's stats) that does not prove its row
NOT_PROVEN = {"skipped": "skipped", "xfailed": "xfailed (marked xfail)", "xpassed": "xpassed (marked xfail)"}


class Gate:
    def __init__(self, readme: Path) -> None:
        self.readme = Path(readme)
        self.collected: list[str] = []
        self.deselected: list[str] = []

    def pytest_itemcollected(self, item) -> None:
        self.collected.append(item.nodeid)

    def pytest_deselected(self, items) -> None:
        self.deselected += [item.nodeid for item in items]

    def problems(self, config, stats: dict) -> list[str]:
        cited = guarantee_tests(self.readme)
        found = []
        for outcome, said in NOT_PROVEN.items():
            for nodeid in dict.fromkeys(getattr(r, "nodeid", "") for r in stats.get(outcome, [])):
                if any(_covers(ref, nodeid) for ref in cited):
                    found.append(f"{nodeid} {said}, and a README Guarantees row rests on it")
        if config.args == config.getini("testpaths"):  # the whole suite: every cited test must exist and run
            found += [f"the README Guarantees table cites {ref}, which is not a test"
                      for ref in cited if not any(_covers(ref, nodeid) for nodeid in self.collected)]
            found += [f"{nodeid} deselected (-k, -m or --deselect), and a README Guarantees row rests on it"
                      for nodeid in dict.fromkeys(self.deselected) if any(_covers(ref, nodeid) for ref in cited)]
        return found

    def pytest_sessionfinish(self, session) -> None:
        config = session.config
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        problems = self.problems(config, reporter.stats if reporter else {})
        for problem in problems:
            if reporter:
                reporter.write_line(f"GUARANTEE NOT PROVEN: {problem}", red=True, bold=True)
        if problems and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
