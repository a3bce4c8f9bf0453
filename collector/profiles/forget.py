"""What the profile database forgets of an erased person, and how everyone else stays as a rebuild would have them.

    counts = forget.erase(store, person, rules)     # one transaction; the counts of what went

A profile is the person's when its anchor (the first of its identifiers by priority, whose node
id is the profile's id) is one of their identifiers: a profile that other people's events hold
together is never erased, also when it took one of the person's identifiers in (the kiosk Bob
signed in on, once Ann is gone: the anchor of a profile always sorts before the identifiers
its links joined to it).

Erasing one (``SqlStore.erase_profile``) deletes its identifiers, its events index and the sets of
identifiers the person's own events made. Sets made by other people's events stay, even when they
name an identifier of the person's: those are what a rebuild from the rewritten log would see, so
``rejoin`` resolves their component again from them (``Graph.replay``), the person's identifiers
in it becoming new nodes first and last seen where those other events saw them
(``Person.kept``, gathered while the log was rewritten). Nobody else's profile loses an event,
and a rebuild after the erasure gives the same profiles.
"""

from __future__ import annotations

from collector.profiles.graph import Graph
from collector.profiles.person import Person
from collector.profiles.rules import Rules, key_time, node_id


def profiles_of(store, person: Person) -> list[str]:
    """The ids of the person's profiles (those anchored at an identifier of theirs)."""
    anchors = {node_id(ident) for ident in person.idents}
    found = {store.find(kind, value) for kind, value in sorted(person.idents)}
    return sorted(pid for pid in found if pid is not None and pid in anchors)


def erase(store, person: Person, rules: Rules) -> dict[str, int]:
    """Every profile of the person, in one transaction; counts of profiles, identifiers, events."""
    counts = {"profiles": 0, "identifiers": 0, "events": 0}
    store.begin()
    try:
        kept: dict[str, list] = {}
        for pid in profiles_of(store, person):
            gone, stays = store.erase_profile(pid, person.has)
            for name, count in gone.items():
                counts[name] += count
            kept.update(stays)
        rejoin(store, rules, kept, person)
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return counts


def rejoin(store, rules: Rules, kept: dict[str, list], person: Person) -> None:
    """Resolve again the components of the person's identifiers that other people's sets still name."""
    orphans = sorted({ident for idents in kept.values() for ident in idents if person.has(ident)})
    if not orphans:
        return
    graph = Graph(rules, store)
    graph.replay(*store.component(orphans))
    for ident in orphans:
        seen = person.kept.get(ident)
        if seen is None:  # named by a set whose events were not read by this erasure: when the set was first seen
            times = [key_time(key) for members, idents in kept.items() if ident in idents
                     if (key := store.link_key(members))]  # fmt: skip
            seen = [min(times), max(times), ""] if times else ["", "", ""]
        node = graph.nodes[ident]
        node.first_seen, node.last_seen, node.source = seen
        graph.dirty_nodes.add(ident)
    store.write(graph)
