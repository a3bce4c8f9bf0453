"""The privacy erasure's queries (``collector/privacy/erase.py``): one profile deleted, and no copy left."""

from __future__ import annotations

import orjson

from collector.profiles.graph import Ident
from collector.profiles.sql import SqlBase, dumps


class EraseQueries(SqlBase):
    # --- privacy requests (collector/privacy/erase.py) -------------------------------------------
    def erase_profile(self, pid: str, mine) -> tuple[dict[str, int], dict[str, list[Ident]]]:
        """Delete one profile and what the person's own events made, in the transaction the caller
        began: its identifiers, its events index, the sets of identifiers whose first member (the
        home of the events that made them) is ``mine`` (a test of one identifier), the refusals other
        profiles keep that name them. Sets that other people's events made stay, even when they name
        an identifier of the person's (Bob signed in on Ann's kiosk): ``forget.rejoin`` joins them
        again. Counts of what went, and the sets that stay (``members`` -> identifiers)."""
        idents = self._all("SELECT type, value, node_id FROM identifiers WHERE profile_id = ?", (pid,))
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
        for _, _, node in idents:
            events += self._all("SELECT COUNT(*) FROM events WHERE node_id = ?", (node,))[0][0]
            self._run("DELETE FROM events WHERE node_id = ?", (node,))
        self._many("DELETE FROM link_index WHERE members = ?", [(m,) for m in sorted(gone)])
        self._many("DELETE FROM links WHERE members = ?", [(m,) for m in sorted(gone)])
        self._run("DELETE FROM identifiers WHERE profile_id = ?", (pid,))
        self._run("DELETE FROM profiles WHERE profile_id = ?", (pid,))
        for other, refused in self._all("SELECT profile_id, refused FROM profiles WHERE refused <> '[]'"):
            kept_refusals = [r for r in orjson.loads(refused) if r.get("identifier") not in names and r.get("with") not in names]
            if len(kept_refusals) != len(orjson.loads(refused)):
                self._run("UPDATE profiles SET refused = ? WHERE profile_id = ?", (dumps(kept_refusals), other))
        return {"profiles": 1 if idents else 0, "identifiers": len(idents), "events": events}, kept

    def link_key(self, members: str) -> str | None:
        rows = self._all("SELECT mkey FROM links WHERE members = ?", (members,))
        return rows[0][0] if rows else None

    def scrub(self) -> None:
        """Leave no copy of deleted rows in the database's files (SQLite: below; PostgreSQL: its
        VACUUM is the operator's, see README "Privacy requests")."""
