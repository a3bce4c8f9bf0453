"""Journeys fixtures: the destinations' (a config in tmp_path, a log written as segments, real
webhook receivers), and journeys written as files."""

from __future__ import annotations

from pathlib import Path

from tests.destinations.conftest import Log, ev, postgres, receivers, setup, write_destination  # noqa: F401 (fixtures)


def write_journey(engage: Path, key: str, text: str) -> Path:
    folder = engage / "journeys"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.yaml"
    path.write_text(text)
    return path
