"""A person's template variables, read from the profile database: ``traits`` (their own traits, the
builder's computed ones and the engage folder's computed traits, one mapping), ``profile_id``."""

from __future__ import annotations

from collector.engage.audiences.reads import computed_traits
from collector.profiles import views


def of_person(store, pid: str) -> dict | None:
    traits = views.traits(store, pid)
    if traits is None:
        return None
    merged = dict(traits)
    merged.update(computed_traits(store, pid))
    return {"traits": merged, "profile_id": pid}
