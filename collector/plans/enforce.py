"""The plans in force: one per source that names a ``tracking_plan``, reloaded on SIGHUP.

``Plans(sources)`` loads and compiles every plan at start and raises ``PlanError`` for a bad
one (a clear error before the collector serves). ``reload()`` reads the same files again
(the configuration itself is read at start only): a source
whose new file is bad keeps its old plan, and the error is logged. The ingest stage asks
``plans.get(source.name)`` once per request; a source without a plan costs nothing more.
``check(plan, source, message)`` is the stage itself: ``None`` when the message follows the
plan, else the violations and whether the source rejects them.
"""

from __future__ import annotations

import logging
from typing import Iterable

from collector.config import Source
from collector.metrics import Metrics
from collector.plans.plan import Plan

log = logging.getLogger("intilery.plans")

VIOLATIONS_METRIC = "intilery_plan_violations_total"
UNPLANNED_CODE = "unplanned_event"


class Plans:
    def __init__(self, sources: Iterable[Source], metrics: Metrics | None = None) -> None:
        self.sources = {s.name: s for s in sources if s.tracking_plan}
        self.metrics = metrics if metrics is not None else Metrics()
        self.by_source: dict[str, Plan] = {name: Plan.load(s.tracking_plan) for name, s in self.sources.items()}
        for name, plan in self.by_source.items():
            log.info("tracking plan loaded", extra=_summary(name, plan))

    def __bool__(self) -> bool:
        return bool(self.by_source)

    def get(self, source_name: str) -> Plan | None:
        return self.by_source.get(source_name)

    def reload(self) -> bool:
        """Read every plan again; a bad one is logged and the old one kept. True when all loaded."""
        fresh, ok = dict(self.by_source), True
        for name, source in self.sources.items():
            try:
                fresh[name] = Plan.load(source.tracking_plan)
            except Exception as exc:  # noqa: BLE001 - whatever is wrong with the new file, the old plan stays
                ok = False
                log.error("tracking plan not reloaded, the previous one stays in force: %s", exc, extra={"source": name})
                continue
            log.info("tracking plan reloaded", extra=_summary(name, fresh[name]))
        self.by_source = fresh  # one assignment: a request sees the old plans or the new ones
        return ok

    def check(self, plan: Plan, source: Source, message: dict) -> tuple[list[dict], bool] | None:
        """The violations of ``message`` and whether it is rejected for them; None when it follows the plan."""
        found = plan.violations(message)
        if not found:
            return None
        event = plan.event_label(message)
        for violation in found:
            self.metrics.inc(VIOLATIONS_METRIC, source=source.name, event=event, code=violation["code"])
        if found[0]["code"] == UNPLANNED_CODE:
            return found, plan.unplanned == "reject"
        return found, source.plan_enforcement == "reject"


def rejection_sentence(found: list[dict]) -> str:
    """The answer's message for a rejected message: the first violation's path and code (no value echoed)."""
    first = found[0]
    more = f", and {len(found) - 1} more" if len(found) > 1 else ""
    return f"the message does not follow the source's tracking plan: {first['path'][:100]} ({first['code']}){more}"


def _summary(name: str, plan: Plan) -> dict:
    return {"source": name, "plan": plan.path, "events": len(plan.track), "unplanned": plan.unplanned}
