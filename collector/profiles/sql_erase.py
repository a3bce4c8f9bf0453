"""The privacy erasure's queries (``collector/profiles/forget.py``): a person's identifiers out of a profile, and no copy left."""

from __future__ import annotations

import orjson

from collector.engage.audiences import tables as audiences
from collector.profiles.graph import Ident
from collector.profiles.rules import node_id
from collector.profiles.sql import SqlBase, dumps


class EraseQueries(SqlBase):
    # --- privacy requests (collector/privacy/erase.py) -------------------------------------------
    def erase_profile(self, pid: str, mine) -> tuple[dict[str, int], dict[str, list[Ident]], list[Ident]]:
        """Delete from one profile what is the person's, in the transaction the caller began: the
        identifiers for which ``mine(ident)`` holds, their events index, the sets of identifiers whose
        first member (the home of the events that made them) is theirs, the refusals that name them.
        Sets that other people's events made stay, even when they name an identifier of the person's
        (Bob signed in on Ann's kiosk), and so do the profile's other identifiers (someone who joined
        it after the person was worked out): ``forget.rejoin`` resolves them again. Counts of what
        went, the sets that stay (``members`` -> identifiers) and the profile's other identifiers."""
        rows = self._all("SELECT type, value, node_id FROM identifiers WHERE profile_id = ?", (pid,))
        idents = [(kind, value, node) for kind, value, node in rows if mine((kind, value))]
        others = [(kind, value) for kind, value, _ in rows if not mine((kind, value))]
        names = {f"{kind}:{value}" for kind, value, _ in idents}
        gone, kept = set(), {}
        for kind, value, _ in idents:
            for (members,) in self._all("SELECT members FROM link_index WHERE type = ? AND value = ?", (kind, value)):
                members_idents = [tuple(m) for m in orjson.loads(members)]
                if mine(members_idents[0]):
                    gone.add(members)
                else:
                    kept[members] = members_idents
        events = 0
        for kind, value, node in idents:
            events += self._all("SELECT COUNT(*) FROM events WHERE node_id = ?", (node,))[0][0]
            self._run("DELETE FROM events WHERE node_id = ?", (node,))
            self._run("DELETE FROM engage_hits WHERE node_id = ?", (node,))
            self._run("DELETE FROM identifiers WHERE type = ? AND value = ?", (kind, value))
        for table in audiences.PER_PROFILE:  # out of every audience, no stay kept and no Audience Exited
            self._run(f"DELETE FROM {table} WHERE profile_id = ?", (pid,))
        self._many("DELETE FROM link_index WHERE members = ?", [(m,) for m in sorted(gone)])
        self._many("DELETE FROM links WHERE members = ?", [(m,) for m in sorted(gone)])
        for kind, value, node, state in self._all(
            "SELECT type, value, node_id, state FROM identifiers WHERE profile_id = ?", (pid,)
        ):  # an identifier only the person's own events named (a device she was seen on meanwhile) goes too
            if state in ("{}", "") and not self._all("SELECT 1 FROM link_index WHERE type = ? AND value = ?", (kind, value)) \
                    and not self._all("SELECT 1 FROM events WHERE node_id = ?", (node,)):  # fmt: skip
                self._run("DELETE FROM identifiers WHERE type = ? AND value = ?", (kind, value))
                others.remove((kind, value))
                idents.append((kind, value, node))
        if not others:  # else the profile's row stays until the replay of its other identifiers rewrites it
            self._run("DELETE FROM profiles WHERE profile_id = ?", (pid,))
        for other, refused in self._all("SELECT profile_id, refused FROM profiles WHERE refused <> '[]'"):
            kept_refusals = [r for r in orjson.loads(refused) if r.get("identifier") not in names and r.get("with") not in names]
            if len(kept_refusals) != len(orjson.loads(refused)):
                self._run("UPDATE profiles SET refused = ? WHERE profile_id = ?", (dumps(kept_refusals), other))
        return {"identifiers": len(idents), "events": events}, kept, others

    def indexed(self, idents: list[Ident]) -> bool:
        """Whether an event is indexed under one of these identifiers' nodes."""
        for kind, value in idents:
            if self._all("SELECT 1 FROM events WHERE node_id = ? LIMIT 1", (node_id((kind, value)),)):
                return True
        return False

    def link_key(self, members: str) -> str | None:
        rows = self._all("SELECT mkey FROM links WHERE members = ?", (members,))
        return rows[0][0] if rows else None

    def scrub(self) -> None:
        """Leave no copy of deleted rows in the database's files (SQLite: below; PostgreSQL: its
        VACUUM is the operator's, see README "Privacy requests")."""
