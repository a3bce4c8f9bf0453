"""The identity graph: which identifiers are one person, and the links refused.

A ``Graph`` is the working set of one batch: whole profiles (every identifier of a profile is
loaded with it, through ``Loader``), changed in memory and written back by the store.

A link (a message carrying two or more identifiers) is applied greedily, in the order of the
events' keys (``timestamp|messageId``)::

    anchor = the profile of the message's first identifier by priority
             (user_id, email, other identifier traits, anonymous_id)
    for each other identifier, by priority:
        already in the anchor            → nothing
        unknown, or in another profile   → joined to the anchor when the result still has at
                                           most one user_id and stays within the caps;
                                           otherwise refused: both profiles are kept and the
                                           refusal is recorded in each one's metadata

Greedy in key order makes the result depend on the set of events only, provided links are
applied in key order: ``max_key`` remembers, per profile, the latest link that touched it,
and a link older than that (a late or replayed event) is resolved by ``replay``, which
resets every identifier the link can reach through stored links to a profile of its own and
re-applies all those links in key order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from collector.profiles.rules import Rules, key_time, merge, node_id, priority

Ident = tuple[str, str]
MAX_REFUSALS = 100  # recorded per profile; more are counted, not kept


@dataclass
class Node:
    """One identifier: its profile, when it was seen, and what the events it is home to add."""

    profile: str
    first_seen: str = ""
    last_seen: str = ""
    source: str = ""
    state: dict = field(default_factory=dict)
    new: bool = False  # not in the database yet
    nid: str = ""  # node_id of the identifier (kept: the hash is not computed again)


@dataclass
class Profile:
    pid: str
    members: set[Ident]
    max_key: str = ""
    refused: list[dict] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(kind for kind, _ in self.members)


class Loader(Protocol):
    def load_profiles_of(self, idents: Iterable[Ident]) -> dict[str, tuple[Profile, dict[Ident, Node]]]: ...


class Graph:
    def __init__(self, rules: Rules, loader: Loader) -> None:
        self.rules, self.loader = rules, loader
        self.nodes: dict[Ident, Node] = {}
        self.profiles: dict[str, Profile] = {}
        self.dirty_nodes: set[Ident] = set()
        self.dirty_profiles: set[str] = set()
        self.removed: set[str] = set()
        self.stored: set[str] = set()  # profiles in the database (loaded): what a removal deletes
        self.unknown: set[Ident] = set()  # looked up, not in the database: new when first seen

    # --- loading ----------------------------------------------------------------------------
    def load(self, idents: Iterable[Ident]) -> None:
        """Load the whole profiles of these identifiers (those not loaded yet) in one go."""
        wanted = [i for i in idents if i not in self.nodes]
        for profile, nodes in self.loader.load_profiles_of(wanted).values():
            if profile.pid in self.profiles:
                continue
            self.profiles[profile.pid] = profile
            self.stored.add(profile.pid)
            self.removed.discard(profile.pid)
            for member, member_node in nodes.items():
                self.nodes.setdefault(member, member_node)
        self.unknown.update(i for i in wanted if i not in self.nodes)

    def ensure(self, ident: Ident) -> Node:
        """The identifier's node, its whole profile loaded; a new profile of its own if unknown."""
        node = self.nodes.get(ident)
        if node is not None:
            return node
        if ident not in self.unknown:
            self.load([ident])
            if ident in self.nodes:
                return self.nodes[ident]
        pid = node_id(ident)
        node = self.nodes[ident] = Node(profile=pid, new=True, nid=pid)
        self.profiles[pid] = Profile(pid, {ident})
        self.removed.discard(pid)
        self.dirty_nodes.add(ident)
        self.dirty_profiles.add(pid)
        return node

    def profile_of(self, ident: Ident) -> Profile:
        return self.profiles[self.nodes[ident].profile]

    # --- links --------------------------------------------------------------------------------
    def is_late(self, idents: Iterable[Ident], key: str) -> bool:
        """Whether a link touching these identifiers already came after ``key``."""
        return any(self.profile_of(i).max_key > key for i in idents)

    def apply_link(self, idents: list[Ident], key: str, message_id: str) -> None:
        """Join the identifiers of one message, refusing what would break a rule."""
        anchor = self.profile_of(idents[0])
        self._touch(anchor, key)
        for ident in idents[1:]:
            other = self.profile_of(ident)
            if other is anchor:
                continue
            self._touch(other, key)
            reason = self._refusal(anchor, other)
            if reason is None:
                anchor = self._merge(anchor, other)
            else:
                refusal = {"reason": reason, "identifier": f"{ident[0]}:{ident[1]}", "with": _name(idents[0]),
                           "messageId": message_id, "timestamp": key_time(key)}  # fmt: skip
                for side in (anchor, other):
                    side.refused = _refusals([*side.refused, refusal])
                    self.dirty_profiles.add(side.pid)

    def _refusal(self, a: Profile, b: Profile) -> str | None:
        counts: dict[str, int] = {}
        for kind, _ in (*a.members, *b.members):
            counts[kind] = counts.get(kind, 0) + 1
        if counts.get("user_id", 0) > 1:
            return "second_user_id"
        for kind, count in sorted(counts.items()):
            if count > self.rules.cap(kind):
                return f"too_many_{kind}"
        return None

    def _touch(self, profile: Profile, key: str) -> None:
        if key > profile.max_key:
            profile.max_key = key
            self.dirty_profiles.add(profile.pid)

    def _merge(self, a: Profile, b: Profile) -> Profile:
        members = a.members | b.members
        pid = node_id(min(members, key=priority))
        refused = _refusals(a.refused + b.refused) if a.refused or b.refused else []
        merged = Profile(pid, members, max(a.max_key, b.max_key), refused,
                         sorted(set(a.merged + b.merged + [p.pid for p in (a, b) if p.pid != pid])))  # fmt: skip
        for pid_old in {a.pid, b.pid} - {pid}:
            self.profiles.pop(pid_old, None)
            self.dirty_profiles.discard(pid_old)
            self.removed.add(pid_old)
        self.profiles[pid] = merged
        self.removed.discard(pid)
        self.dirty_profiles.add(pid)
        for member in members:
            node = self.nodes[member]
            if node.profile != pid:
                node.profile = pid
                self.dirty_nodes.add(member)
        return merged

    def replay(self, component: set[Ident], links: list[tuple[str, list[Ident], str]]) -> None:
        """Resolve a component again from its links in key order (after a late link)."""
        history: set[str] = set()
        for ident in component:
            self.ensure(ident)
        for pid in {self.nodes[i].profile for i in component}:
            old = self.profiles.pop(pid)
            history |= set(old.merged) | {pid}
            self.dirty_profiles.discard(pid)
            self.removed.add(pid)
        for ident in component:
            pid = node_id(ident)
            self.profiles[pid] = Profile(pid, {ident})
            self.nodes[ident].profile = pid
            self.dirty_nodes.add(ident)
            self.dirty_profiles.add(pid)
            self.removed.discard(pid)
        for key, idents, message_id in sorted(links):
            self.apply_link(idents, key, message_id)
        for pid in {self.nodes[i].profile for i in component}:
            # merged_from: the ids of profiles that existed before (not the replay's own steps)
            profile = self.profiles[pid]
            ids = set(profile.merged) | {node_id(i) for i in profile.members}
            profile.merged = sorted(x for x in ids if x in history and x != pid)


def state_of(profile: Profile, nodes: dict[Ident, Node]) -> dict:
    """A profile's state: the merge of its identifiers' (in a fixed order)."""
    state: dict = {}
    for member in sorted(profile.members):
        state = merge(state, nodes[member].state)
    return state


def _name(ident: Ident) -> str:
    return f"{ident[0]}:{ident[1]}"


def _refusal_order(refusal: dict) -> tuple:
    return (refusal["timestamp"], refusal["messageId"], refusal["identifier"], refusal["with"])


def _refusals(refusals: list[dict]) -> list[dict]:
    """Each refusal once, oldest first, at most ``MAX_REFUSALS``."""
    unique = {_refusal_order(r): r for r in refusals}
    return [unique[k] for k in sorted(unique)][:MAX_REFUSALS]
