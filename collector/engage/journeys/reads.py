"""What ``GET /v1/journeys``, ``intilery journeys`` and the console show, read from the store.

``summary``: each journey (configured, or with runs), per version (the current one, and each
earlier one that still has runs: a change of a definition strands none): entered, active, waiting
per step (the step's name), exited, converted, completed; its steps in the order written. ``person_runs``: one person's runs of a
journey, each with the step it stands at and the moment of its next timer.
"""

from __future__ import annotations

import orjson

from collector.engage.journeys.definitions import Journey, version_of

OUTCOMES = ("completed", "exited", "converted", "erased", "suppressed")


def summary(store, journeys: dict[str, Journey]) -> list[dict]:
    rows = store.tally() if store is not None else []
    kept = store.versions() if store is not None else {}
    if store is not None:
        store.commit()
    by: dict[str, dict[str, dict]] = {}
    for key, journey in journeys.items():
        by.setdefault(key, {})[journey.digest] = _blank(journey.digest, True)
    for journey_key, version, state, outcome, pc, _timer, n in rows:
        current = journey_key in journeys and journeys[journey_key].digest == version
        v = by.setdefault(journey_key, {}).setdefault(version, _blank(version, current))
        v["entered"] += n
        if state == "active":
            v["active"] += n
            step = _label(journeys, kept, journey_key, version, pc)
            v["waiting"][step] = v["waiting"].get(step, 0) + n
        elif outcome in OUTCOMES:
            v[outcome] += n
    found = []
    for key in sorted(by):
        versions = sorted(by[key].values(), key=lambda v: not v["current"])
        name = journeys[key].name if key in journeys else key
        total = {k: sum(v[k] for v in versions) for k in ("entered", "active", "exited", "converted", "completed")}
        steps = [n.label for n in in_order(journeys[key])] if key in journeys else []
        found.append({"key": key, "name": name, "configured": key in journeys, **total, "steps": steps, "versions": versions})
    return found


def in_order(journey: Journey) -> list:
    """The journey's steps in the order they are written (compiled, they are not)."""
    return sorted(journey.nodes, key=lambda n: (n.line is None, n.line or 0))


def _blank(version: str, current: bool) -> dict:
    return {"version": version, "current": current, "entered": 0, "active": 0, "waiting": {},
            **dict.fromkeys(OUTCOMES, 0)}  # fmt: skip


_compiled: dict = {}


def _label(journeys: dict, kept: dict, key: str, version: str, pc) -> str:
    if pc is None:
        return "-"
    journey = journeys.get(key)
    if journey is None or journey.digest != version:
        if (key, version) not in _compiled:
            source = kept.get((key, version))
            _compiled[(key, version)] = version_of(key, orjson.loads(source[0])) if source else None
        journey = _compiled[(key, version)]
    return journey.nodes[pc].label if journey is not None and pc < len(journey.nodes) else f"step {pc}"


def person_runs(store, key: str | None, idents: list[tuple[str, str]], journeys: dict | None = None) -> list[dict]:
    """The runs of ``key`` (None: of every journey) of the person having any of those identifiers
    ``(type, value)``; ``journeys`` the definitions in force, for the runs of their current versions."""
    runs = store.person_runs(key, [orjson.dumps(list(i)).decode() for i in idents])
    kept = store.versions()
    store.commit()
    found = []
    for r in runs:
        found.append({"id": r["id"], "journey": r["journey"], "version": r["version"], "state": r["state"],
                      "step": _label(journeys or {}, kept, r["journey"], r["version"], r["pc"]) if r["state"] == "active" else None,
                      "next_at": r["next_at"], "instance": r["instance"] or None, "entered_at": r["entered_at"],
                      "updated": r["updated"], "outcome": r["outcome"]})  # fmt: skip
    return found
