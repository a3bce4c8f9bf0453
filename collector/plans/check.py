"""``intilery plan check``: stored events against a plan, and a report of what violates it.

The report counts violations per event (the metrics' label: a planned event's name,
``(unplanned)``, or the call) and code, with one example of each (its messageId, path and
message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from collector.plans.plan import Plan


@dataclass
class Report:
    checked: int = 0
    violating: int = 0  # events with at least one violation
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (event, code) -> violations
    examples: dict[tuple[str, str], dict] = field(default_factory=dict)

    def render(self) -> str:
        lines = [f"{self.checked:,} events checked, {self.violating:,} violate the plan"]
        if self.counts:
            lines += ["", "| event | code | violations | example |", "|---|---|--:|---|"]
            for key in sorted(self.counts, key=lambda k: (-self.counts[k], k)):
                example = self.examples[key]
                lines.append(f"| {key[0]} | {key[1]} | {self.counts[key]:,} | "
                             f"{example['messageId']} {example['path']}: {example['message']} |")  # fmt: skip
        return "\n".join(lines)


def check(plan: Plan, events: Iterable[dict], progress: Callable[[int], None] | None = None,
          every: int = 100_000) -> Report:  # fmt: skip
    """Every event of ``events`` checked against ``plan``."""
    report = Report()
    for event in events:
        report.checked += 1
        if progress is not None and report.checked % every == 0:
            progress(report.checked)
        found = plan.violations(event)
        if not found:
            continue
        report.violating += 1
        label = plan.event_label(event)
        for violation in found:
            key = (label, violation["code"])
            report.counts[key] = report.counts.get(key, 0) + 1
            report.examples.setdefault(key, {"messageId": event.get("messageId", "?"), **violation})
    return report
