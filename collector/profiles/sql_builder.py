"""The profile builder's queries: the profiles a batch touches, links, what it wrote, its checkpoint."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import orjson

from collector.profiles.graph import Graph, Ident, Node, Profile
from collector.profiles.rules import node_id
from collector.profiles.sql import SqlBase, dumps


class BuilderQueries(SqlBase):
    # --- the builder's reads ------------------------------------------------------------------
    def load_profiles_of(self, idents: Iterable[Ident]) -> dict[str, tuple[Profile, dict[Ident, Node]]]:
        """The whole profiles (by id) of those of ``idents`` that are known."""
        by_kind: dict[str, list[str]] = defaultdict(list)
        for kind, value in idents:
            by_kind[kind].append(value)
        pids: set[str] = set()
        for kind, values in sorted(by_kind.items()):
            for rows in self._chunked("SELECT profile_id FROM identifiers WHERE type = ? AND value IN ({})", values, kind):
                pids.update(r[0] for r in rows)
        return self.load_profiles(sorted(pids))

    def load_profile(self, pid: str) -> tuple[Profile, dict[Ident, Node]] | None:
        return self.load_profiles([pid]).get(pid)

    def load_profiles(self, pids: list[str]) -> dict[str, tuple[Profile, dict[Ident, Node]]]:
        nodes: dict[str, dict[Ident, Node]] = defaultdict(dict)
        sql = ("SELECT profile_id, type, value, first_seen, last_seen, source, state, node_id FROM identifiers "
               "WHERE profile_id IN ({})")  # fmt: skip
        for rows in self._chunked(sql, pids):
            for pid, kind, value, first, last, source, state, nid in rows:
                nodes[pid][(kind, value)] = Node(pid, first, last, source, orjson.loads(state), False, nid)
        loaded = {}
        for rows in self._chunked("SELECT profile_id, max_key, refused, merged FROM profiles WHERE profile_id IN ({})", pids):
            for pid, max_key, refused, merged in rows:
                members = nodes.get(pid, {})
                loaded[pid] = Profile(pid, set(members), max_key, orjson.loads(refused), orjson.loads(merged)), members
        return loaded

    def seen(self, keys: list[tuple[str, str] | None]) -> set[tuple[str, str]]:
        """Which of these ``(source, messageId)`` are stored already."""
        by_id: dict[str, set[str]] = defaultdict(set)
        for key in keys:
            if key is not None:
                by_id[key[1]].add(key[0])
        found: set[tuple[str, str]] = set()
        for rows in self._chunked("SELECT source, message_id FROM events WHERE message_id IN ({})", sorted(by_id)):
            found.update((source, message_id) for source, message_id in rows if source in by_id[message_id])
        return found

    def link_keys(self, sets: list[str]) -> dict[str, str]:
        """The earliest key each set of identifiers (``members``, as JSON) was linked at, when ever."""
        found: dict[str, str] = {}
        for rows in self._chunked("SELECT members, mkey FROM links WHERE members IN ({})", sets):
            found.update(rows)
        return found

    def put_links(self, links: dict[str, tuple[list[Ident], str, bool]]) -> None:
        """Store sets of identifiers (``members`` → idents, earliest key, new) seen by a batch."""
        self._many("INSERT INTO links (members, mkey) VALUES (?, ?)", [(m, k) for m, (_, k, new) in links.items() if new])
        self._many("INSERT INTO link_index (type, value, members) VALUES (?, ?, ?)",
                   [(kind, value, m) for m, (idents, _, new) in links.items() if new for kind, value in idents])
        self._many("UPDATE links SET mkey = ? WHERE members = ?", [(k, m) for m, (_, k, new) in links.items() if not new])

    def component(self, start: list[Ident]) -> tuple[set[Ident], list[tuple[str, list[Ident], str]]]:
        """Every identifier reachable from ``start`` through stored links, and those links."""
        seen, frontier, links = set(start), list(start), {}
        while frontier:
            ident = frontier.pop()
            for (members,) in self._all("SELECT members FROM link_index WHERE type = ? AND value = ?", ident):
                if members in links:
                    continue
                mkey = self._all("SELECT mkey FROM links WHERE members = ?", (members,))[0][0]
                idents = [tuple(m) for m in orjson.loads(members)]
                links[members] = (mkey, idents, mkey.split("|", 1)[1])
                for member in idents:
                    if member not in seen:
                        seen.add(member)
                        frontier.append(member)
        return seen, list(links.values())

    # --- the builder's writes -----------------------------------------------------------------
    def write(self, graph: Graph) -> None:
        """Everything the batch changed."""
        removed = sorted((graph.removed & graph.stored) - set(graph.profiles))  # (not those made and merged here)
        self._many("DELETE FROM profiles WHERE profile_id = ?", [(pid,) for pid in removed])
        graph.stored.difference_update(removed)
        self._many(
            "INSERT INTO profiles (profile_id, max_key, refused, merged) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (profile_id) DO UPDATE SET max_key = excluded.max_key, refused = excluded.refused, "
            "merged = excluded.merged",
            [(p.pid, p.max_key, dumps(p.refused), dumps(p.merged))
             for p in (graph.profiles[pid] for pid in sorted(graph.dirty_profiles) if pid in graph.profiles)],
        )  # fmt: skip
        graph.stored.update(pid for pid in graph.dirty_profiles if pid in graph.profiles)
        added, changed = [], []
        for ident in sorted(graph.dirty_nodes):
            node = graph.nodes[ident]
            state = dumps(node.state) if node.state else "{}"
            if node.new:
                added.append((*ident, node.nid or node_id(ident), node.profile, node.first_seen, node.last_seen,
                              node.source, state))  # fmt: skip
                node.new = False  # written: a later write in the batch updates it
            else:
                changed.append((node.profile, node.first_seen, node.last_seen, node.source, state, *ident))
        self._many("INSERT INTO identifiers (type, value, node_id, profile_id, first_seen, last_seen, source, state) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", added)  # fmt: skip
        self._many("UPDATE identifiers SET profile_id = ?, first_seen = ?, last_seen = ?, source = ?, state = ? "
                   "WHERE type = ? AND value = ?", changed)  # fmt: skip

    def add_events(self, rows: list[tuple[str, str, str, str, str, int]]) -> None:
        """``(source, messageId, node id, key, segment, position)`` of each event a batch counted."""
        self._many("INSERT INTO events (source, message_id, node_id, key, segment, position) VALUES (?, ?, ?, ?, ?, ?)",
                   rows)  # fmt: skip

    def checkpoint(self, name: str) -> tuple[dict, int]:
        row = self.checkpoint_row(name)
        self.commit()  # a read opens a transaction on PostgreSQL: end it
        return row or ({}, 0)

    def checkpoint_row(self, name: str) -> tuple[dict, int] | None:
        """The checkpoint as the current transaction sees it (None before the first)."""
        rows = self._all("SELECT cursor, events FROM checkpoint WHERE name = ?", (name,))
        return (orjson.loads(rows[0][0]), rows[0][1]) if rows else None

    def save_checkpoint(self, name: str, cursor: dict, events: int) -> None:
        self._run(
            "INSERT INTO checkpoint (name, cursor, events) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, events = excluded.events",
            (name, dumps(cursor), events),
        )
