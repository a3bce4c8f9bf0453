"""What the profile database forgets of an erased person, and how everyone else stays as a rebuild would have them.

    counts = forget.erase(store, person, rules)     # one transaction; the counts of what went

Every profile that holds an identifier of the person's loses exactly those identifiers
(``SqlStore.erase_profile``): their nodes, their events index and the sets of identifiers the
person's own events made. The profile's other identifiers stay with their events (someone who
joined it after the person was worked out: Carl identifying on Ann's kiosk), and so do the sets
made by other people's events, even when they name an identifier of the person's: those are what
a rebuild from the rewritten log would see, so ``rejoin`` resolves those components again from
them (``Graph.replay``), the person's identifiers in them becoming new nodes first and last seen
where those other events saw them (``Person.kept``, gathered while the log was rewritten). Nobody
else's profile loses an event, and a rebuild after the erasure gives the same profiles.
"""

from __future__ import annotations

from collector.engage.audiences.tables import reevaluate
from collector.profiles.graph import Graph
from collector.profiles.person import Person
from collector.profiles.rules import Rules, key_time, node_id


def profiles_of(store, person: Person) -> list[str]:
    """The ids of the profiles that hold an identifier of the person's."""
    return sorted({pid for kind, value in sorted(person.idents) if (pid := store.find(kind, value)) is not None})


def remains(store, person: Person) -> bool:
    """Whether the database still files something to the person: a profile anchored at an identifier
    of theirs, or an event indexed under one (a builder batch that committed during the erasure).
    Identifiers of theirs that only other people's sets hold (the kiosk, rejoined) are not theirs."""
    anchors = {node_id(ident) for ident in person.idents}
    return any(pid in anchors for pid in profiles_of(store, person)) or store.indexed(sorted(person.idents))


def erase(store, person: Person, rules: Rules) -> dict[str, int]:
    """The person's identifiers out of every profile that holds one, in one transaction; counts of
    profiles (those anchored at one of theirs), identifiers and events."""
    counts = {"profiles": 0, "identifiers": 0, "events": 0}
    anchors = {node_id(ident) for ident in person.idents}
    store.begin()
    try:
        kept: dict[str, list] = {}
        others: set = set()
        for pid in profiles_of(store, person):
            gone, stays, rest = store.erase_profile(pid, person.has)
            counts["profiles"] += pid in anchors
            for name, count in gone.items():
                counts[name] += count
            kept.update(stays)
            others.update(rest)
        rejoin(store, rules, kept, person, others)
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return counts


def rejoin(store, rules: Rules, kept: dict[str, list], person: Person, others=()) -> None:
    """Resolve again the components of the person's identifiers that other people's sets still name,
    and of the other identifiers of the profiles they left (someone who had joined one of them)."""
    orphans = sorted({ident for idents in kept.values() for ident in idents if person.has(ident)})
    start = sorted(set(orphans) | set(others))
    if not start:
        return
    graph = Graph(rules, store)
    graph.replay(*store.component(start))
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
    reevaluate(store, graph.profiles)  # the others, in their audiences on their own events
