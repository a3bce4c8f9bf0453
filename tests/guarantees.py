"""The README's Guarantees gate: a pytest plugin (``tests/conftest.py`` registers it).

A run in which a test behind a README Guarantees row skipped fails; in a full run, a row that
names a test that does not exist fails too.
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


class Gate:
    def __init__(self, readme: Path) -> None:
        self.readme = Path(readme)
        self.collected: list[str] = []

    def pytest_itemcollected(self, item) -> None:
        self.collected.append(item.nodeid)

    def pytest_sessionfinish(self, session) -> None:
        config = session.config
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        cited = guarantee_tests(self.readme)
        skipped = [r.nodeid for r in reporter.stats.get("skipped", [])] if reporter else []
        problems = [f"{nodeid} skipped, and a README Guarantees row rests on it"
                    for nodeid in dict.fromkeys(skipped) if any(_covers(ref, nodeid) for ref in cited)]
        if config.args == config.getini("testpaths"):  # the whole suite: every cited test must exist
            problems += [f"the README Guarantees table cites {ref}, which is not a test"
                         for ref in cited if not any(_covers(ref, nodeid) for nodeid in self.collected)]
        for problem in problems:
            if reporter:
                reporter.write_line(f"GUARANTEE NOT PROVEN: {problem}", red=True, bold=True)
        if problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
