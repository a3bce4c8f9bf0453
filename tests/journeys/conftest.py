"""Journeys fixtures: the destinations' (a config in tmp_path, a log written as segments, real
webhook receivers), and journeys written as files."""

from __future__ import annotations

from pathlib import Path

import time

from collector.engage.journeys.channels import iso
from tests.destinations.conftest import Log, postgres, receivers, setup, write_destination  # noqa: F401 (fixtures)
from tests.destinations.conftest import ev as stored_event


def ev(kind: str = "track", **fields) -> dict:
    """An event as stored, received a few seconds ago (a journey takes in events received from a minute
    before it was first read; the runner applies an event a second after its receipt: runner.HOLD)."""
    fields.setdefault("receivedAt", iso(time.time() - 5))
    return stored_event(kind, **fields)


def write_journey(engage: Path, key: str, text: str) -> Path:
    folder = engage / "journeys"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.yaml"
    path.write_text(text)
    return path
