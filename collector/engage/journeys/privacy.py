"""Privacy and journeys (the privacy job's outbox step, ``privacy/erase.py``): a suppression ends
the person's active runs (outcome ``suppressed``) before their undelivered deliveries are dropped
(``destinations/privacy.py``: a journey's sends are outbox deliveries, filed under the person);
an erasure removes their runs altogether (the entering event is their data), then their deliveries.
Counted in the request's status beside the outbox's: ``runs_ended``, ``runs_removed``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import orjson

from collector.engage.destinations.privacy import eraser as outbox_eraser
from collector.engage.journeys.store import open_journeys
from collector.profiles.database import db_target


def eraser(config) -> Callable[..., dict]:
    outbox = outbox_eraser(config)

    def erase(person, regulate_id: str, delete: bool = True) -> dict:
        target = db_target(config)
        counts = {}
        if (target.startswith("postgres") or Path(target).is_file()) and _has_runs(target):
            store = open_journeys(target)
            try:
                counts = forget(store, person.idents, delete)
            finally:
                store.close()
        return {**outbox(person, regulate_id, delete), **counts}

    return erase


def _has_runs(target: str) -> bool:
    """Whether the profile database has the journeys' tables (a collector without journeys has none)."""
    from collector.engage.outbox.store import open_outbox

    outbox = open_outbox(target)
    try:
        outbox._all("SELECT 1 FROM journey_runs LIMIT 1")
        return True
    except Exception:  # noqa: BLE001 - no such table
        return False
    finally:
        outbox.rollback()
        outbox.close()


def forget(store, idents, delete: bool, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    whos = [orjson.dumps(list(i)).decode() for i in sorted(idents)]
    store.begin()
    try:
        if not delete:
            n = store.end_for(whos, "suppressed", now)
            store.commit()
            return {"runs_ended": n}
        marks = ",".join("?" * len(whos)) or "NULL"
        ids = [r for (r,) in store._all(f"SELECT DISTINCT run FROM journey_who WHERE ident IN ({marks})", whos)]
        store._many("DELETE FROM journey_runs WHERE id = ?", [(i,) for i in ids])
        store._many("DELETE FROM journey_who WHERE run = ?", [(i,) for i in ids])
        store._run(f"DELETE FROM engage_announce WHERE profile_id IN ({marks})", whos) if whos else None
        store.commit()
        return {"runs_removed": len(ids)}
    except BaseException:
        store.rollback()
        raise
