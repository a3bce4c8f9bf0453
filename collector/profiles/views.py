"""What a profile looks like from outside: its traits, identifiers and metadata.

Read by the Profile API, ``intilery profile show`` and the tests, from any store.
"""

from __future__ import annotations

from collector.profiles.graph import state_of
from collector.profiles.rules import computed, key_time, view


def traits(store, pid: str) -> dict | None:
    loaded = store.load_profile(pid)
    if loaded is None:
        return None
    return view(state_of(*loaded))


def computed_traits(store, pid: str) -> dict | None:
    """The traits the builder computes (first_seen, event_count, ...), apart from the person's own."""
    loaded = store.load_profile(pid)
    if loaded is None:
        return None
    return computed(state_of(*loaded))


def external_ids(store, pid: str) -> list[dict] | None:
    loaded = store.load_profile(pid)
    if loaded is None:
        return None
    _, nodes = loaded
    return [{"type": kind, "id": value, "first_seen": n.first_seen, "last_seen": n.last_seen, "source": n.source,
             "collection": "users"}
            for (kind, value), n in sorted(nodes.items(), key=lambda item: (item[1].first_seen, item[0]))]  # fmt: skip


def metadata(store, pid: str) -> dict | None:
    loaded = store.load_profile(pid)
    if loaded is None:
        return None
    profile, nodes = loaded
    firsts = [n.state["first"] for n in nodes.values() if n.state]
    lasts = [n.state["last"] for n in nodes.values() if n.state]
    return {
        "profile_id": pid,
        "created_at": key_time(min(firsts)) if firsts else min(n.first_seen for n in nodes.values()),
        "updated_at": key_time(max(lasts)) if lasts else max(n.last_seen for n in nodes.values()),
        "merged_from": profile.merged,
        "refused_links": profile.refused,
    }


def snapshot(store) -> dict:
    """Every profile as comparable data (the merge history, which depends on arrival, left out)."""
    out = {}
    for pid in store.profile_ids():
        meta = metadata(store, pid)
        meta.pop("merged_from")
        out[pid] = {"traits": traits(store, pid), "external_ids": external_ids(store, pid), "metadata": meta}
    return out
