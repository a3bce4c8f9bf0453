"""The live evaluation: audiences and computed traits kept current inside the profile builder.

The builder hands each batch to ``Live.fold`` before it writes the batch, in the batch's one
transaction (cursor included), so what this writes is exactly once as the profiles are::

    the batch's events ── each tally they match ──▶ engage_hits (under the event's home node)
    every profile the batch touched ── evaluate.evaluate(definitions, traits, hits, now) ──▶
        engage_members / engage_history (entered, exited), engage_computed, engage_due,
        engage_announce ("Audience Entered/Exited", appended to the log by announce.py)

**On time alone**: ``engage_due`` holds, per person, the next moment an answer can change with no
new event (an event leaving a window); ``Live.tick`` re-evaluates the people whose moment has come,
a chunk at a time, through the index on ``due``, so nobody else is looked at.

**Merges and splits**: hits are kept under nodes (identifiers), as the events are, so they follow a
person wherever the identity graph puts them; a profile merged into another hands its stays to the
survivor (a person who was in an audience under either id is not "entered" again).

**Definitions change**: ``Live.refresh`` reads the folder every 2 s (and on SIGHUP); an audience
or trait whose tallies are new is backfilled from the log (``backfill.py``) and takes over only once
that is complete; until then the definitions in force stay in force.

**Several builders** (PostgreSQL shared by hosts, or the NATS stream's builders) share the work as
they share the batches: each evaluates the people its batches touch, and ``tick`` takes whoever is
due under the same lock, so nobody is evaluated twice for one change.
"""

from __future__ import annotations

import logging
import time
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import orjson

from collector.engage.audiences.backfill import Backfill, digest, parse_saved, save, saved
from collector.engage.audiences.evaluate import Hit, epoch, evaluate, iso
from collector.engage.definitions import DefinitionError, Definitions, parse_files, read
from collector.profiles.graph import Profile, state_of
from collector.profiles.rules import ANONYMOUS_ID, USER_ID, key_time, node_id, view
from collector.profiles.sql import dumps

log = logging.getLogger("intilery.audiences")

DUE_CHUNK = 1_000  # people re-evaluated per transaction when their moment has come
ENTERED, EXITED = "Audience Entered", "Audience Exited"


REFRESH = 2.0  # seconds between looks at the definitions' folder (SIGHUP: at once)
_look = [False]


def look_now() -> None:
    """SIGHUP (a signal handler: only a flag): read the definitions' folder at the next chance."""
    _look[0] = True


class Live:
    """``folder``: the definitions' (None: only ``definitions``, as given); ``reader(cursor)``: a
    reader of the log as the builder's (``Builder``, for its ``read``), for backfills."""

    def __init__(self, store, definitions: Definitions = Definitions(), *, folder: Path | None = None,
                 reader: Callable[[dict], Any] | None = None, checkpoint: str = "events",
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store, self.clock, self.folder, self.make_reader = store, clock, folder, reader
        self.checkpoint = checkpoint  # this builder's log: the one it backfills
        self.stats = {"entered": 0, "exited": 0, "evaluated": 0}
        self.pending: tuple[Definitions, dict] | None = None  # (definitions, their files) being backfilled
        self.backfill: Backfill | None = None
        self.in_force: dict = {}
        self.seen: dict | None = None
        self.looked = 0.0
        self.use(definitions)
        if folder is not None:
            self._look()

    def use(self, definitions: Definitions) -> None:
        self.definitions = definitions
        self._index()

    def _index(self) -> None:
        """The tallies events are counted for: those in force, and those being backfilled."""
        tallies = self.definitions.tallies()
        if self.pending is not None:
            tallies.update(self.pending[0].tallies())
        by_name: dict[str, list] = defaultdict(list)
        for tally in tallies.values():
            by_name[tally.event].append(tally)
        self.by_name = dict(by_name)

    # --- definitions that change -----------------------------------------------------------------
    def refresh(self) -> None:
        """Between batches: every ``REFRESH`` s (SIGHUP: at once) the definitions the database holds
        (another builder sharing it may have changed them) and the folder; and a chunk of backfill."""
        if self.folder is not None and (_look[0] or time.monotonic() - self.looked >= REFRESH):
            self.looked, _look[0] = time.monotonic(), False
            self._look()
        if self.backfill is not None:
            self._backfill_step()

    def _look(self) -> None:
        store = self.store
        store.begin()
        try:
            in_force, pending = saved(store, "in_force") or {}, saved(store, "pending")
            if in_force != self.in_force:
                self.in_force = in_force
                self.use(parse_saved(in_force))
            texts = read(self.folder)
            if texts != self.seen:
                self.seen = texts
                if texts not in (in_force, pending):
                    self._consider(texts)
                    pending = saved(store, "pending")
            if pending != (self.pending[1] if self.pending else None):
                self._pend(pending)
            store.commit()
        except BaseException:
            store.rollback()
            raise

    def _consider(self, texts: dict) -> None:
        """The folder's definitions, new: in force at once when they count nothing new, else pending."""
        try:
            new = parse_files(texts, self.folder)
        except DefinitionError as exc:
            log.error("the definitions were not changed: fix the files (intilery engage check)",
                      extra={"problems": exc.problems})  # fmt: skip
            return
        if set(new.tallies()) <= set(self.definitions.tallies()):
            self._switch(new, texts, began=True)
            return
        save(self.store, "pending", texts)
        save(self.store, f"backfill:{self.checkpoint}", None)
        log.info("new definitions: counting their events over the log before they take over",
                 extra={"tallies": len(set(new.tallies()) - set(self.definitions.tallies()))})  # fmt: skip

    def _pend(self, texts: dict | None) -> None:
        """Backfill ``texts``' new tallies over this builder's log (None: nothing pending)."""
        if self.backfill is not None:
            self.backfill.reader.close()
        self.pending = self.backfill = None
        if texts:
            definitions = parse_saved(texts)
            self.pending = (definitions, texts)
            fresh = set(definitions.tallies()) - set(self.definitions.tallies())
            self.backfill = Backfill(self.store, self.make_reader({}), {t: definitions.tallies()[t] for t in fresh},
                                     digest(texts))  # fmt: skip
        self._index()

    def _backfill_step(self) -> None:
        """A chunk of this builder's log; when every log is done, the pending definitions take over."""
        store, backfill = self.store, self.backfill
        name = f"backfill:{self.checkpoint}"
        store.begin()
        try:
            mine = saved(store, name)
            if saved(store, "pending") != self.pending[1]:  # another builder moved on: look again
                self.looked = 0.0
                store.commit()
                return
            if mine and mine.get("digest") == backfill.digest:
                backfill.reader.reader.cursor = mine["cursor"]  # a builder sharing this log may have moved it
                done = mine["done"]
            else:
                backfill.reader.reader.cursor, done = {}, False
            if not done:
                done, lines = backfill.step()
                backfill.read += lines
                save(store, name, {"digest": backfill.digest, "cursor": backfill.reader.reader.cursor, "done": done})
            backfill.done = done  # this log counted: the others' builders are still counting theirs
            if done and self._every_log_done(backfill.digest):
                self._switch(*self.pending, began=True)
            store.commit()
        except BaseException:
            store.rollback()
            raise
        if not done:
            log.info("backfilling audiences and computed traits", extra={"lines": backfill.read})

    def _every_log_done(self, wanted: str) -> bool:
        names = [n for (n,) in self.store._all("SELECT name FROM checkpoint") if not n.startswith("engage")]
        return all((saved(self.store, f"backfill:{n}") or {}).get("digest") == wanted for n in names) and all(
            (saved(self.store, f"backfill:{n}") or {}).get("done") for n in names)

    def _switch(self, definitions: Definitions, texts: dict, began: bool = False) -> None:
        """The new definitions in force: their rows kept, the rest dropped, everyone re-evaluated."""
        store = self.store
        if not began:
            store.begin()
        try:
            save(store, "in_force", texts)
            save(store, "pending", None)
            store._run("DELETE FROM engage_state WHERE name LIKE ?", ("backfill:%",))
            keep = sorted(definitions.tallies())
            if keep:
                store._run(f"DELETE FROM engage_hits WHERE tally NOT IN ({','.join('?' * len(keep))})", keep)
            else:
                store._run("DELETE FROM engage_hits")
            for (key,) in store._all("SELECT DISTINCT audience FROM engage_members"):
                if key not in definitions.audiences:
                    store._run("DELETE FROM engage_members WHERE audience = ?", (key,))
                    store._run("DELETE FROM engage_history WHERE audience = ?", (key,))
            store._run("INSERT INTO engage_due (profile_id, due) SELECT profile_id, 0 FROM profiles WHERE true "
                       "ON CONFLICT (profile_id) DO UPDATE SET due = 0")  # fmt: skip
            if not began:
                store.commit()
        except BaseException:
            if not began:
                store.rollback()
            raise
        if self.backfill is not None:
            self.backfill.reader.close()
        self.in_force, self.pending, self.backfill = texts, None, None
        self.use(definitions)
        log.info("definitions in force", extra={"audiences": len(definitions.audiences), "traits": len(definitions.traits)})

    # --- a batch of the builder ------------------------------------------------------------------
    def fold(self, graph, folded: list[tuple[dict, str, str]], *, defer: bool = False) -> None:
        """``folded``: the batch's counted events as ``(event, key, home node id)``; ``graph``: the
        batch's profiles, before the builder writes them. ``defer`` (a full batch: the log holds
        more): the profiles are marked due now instead, for ``tick`` once the builder has caught up,
        so a backlog (a first start on a long log, a rebuild) is evaluated on the whole history
        rather than on each part of it, and the builder catches up sooner."""
        by_name, rows = self.by_name, []
        if not by_name and not self.definitions:
            return
        for event, key, nid in folded:
            tallies = by_name.get(event.get("event"))
            if tallies:
                for tally in tallies:
                    if tally.matches(event):
                        value = tally.value(event)
                        rows.append((nid, tally.id, key, epoch(key_time(key)),
                                     None if value is None else dumps(value)))  # fmt: skip
        self.store._many("INSERT INTO engage_hits (node_id, tally, key, time, value) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (node_id, tally, key) DO NOTHING", rows)  # fmt: skip
        if not self.definitions:
            return
        survivors = self._survivors(graph)
        if defer:
            self._hand_over(survivors)
            self.store._many("INSERT INTO engage_due (profile_id, due) VALUES (?, 0) ON CONFLICT (profile_id) DO UPDATE "
                             "SET due = 0", [(pid,) for pid in sorted(graph.profiles)])  # fmt: skip
            return
        profiles = {pid: (p, {m: graph.nodes[m] for m in p.members}) for pid, p in graph.profiles.items()}
        self._settle(profiles, survivors, self.clock())

    def _survivors(self, graph) -> dict[str, str]:
        """Each profile the batch removed (merged, or split by a replay) that had stays or answers
        -> the profile its first identifier is in now."""
        removed = sorted(graph.removed)
        if not removed:
            return {}
        had = set()
        for table in ("engage_members", "engage_history", "engage_computed", "engage_due"):
            for rows in self.store._chunked(f"SELECT DISTINCT profile_id FROM {table} WHERE profile_id IN ({{}})", removed):
                had.update(r[0] for r in rows)
        survivors = {}
        for rows in self.store._chunked("SELECT profile_id, type, value FROM identifiers WHERE profile_id IN ({})", sorted(had)):
            for pid, kind, value in sorted(rows):
                node = graph.nodes.get((kind, value))
                if pid not in survivors and node is not None and node.profile in graph.profiles:
                    survivors[pid] = node.profile
        for pid in had:
            survivors.setdefault(pid, "")  # none left (its identifiers went elsewhere): its rows go
        return survivors

    def _hand_over(self, survivors: dict[str, str], keep_members: bool = True) -> None:
        """A removed profile's rows to its survivor (its stays; its memberships when ``keep_members``,
        else ``_settle`` moves those it keeps), or gone when none."""
        store = self.store
        for old, new in sorted(survivors.items()):
            if new and keep_members:
                store._run("INSERT INTO engage_members (audience, profile_id, entered_at) SELECT audience, ?, entered_at "
                           "FROM engage_members WHERE profile_id = ? ON CONFLICT (audience, profile_id) DO UPDATE "
                           "SET entered_at = CASE WHEN excluded.entered_at < engage_members.entered_at "
                           "THEN excluded.entered_at ELSE engage_members.entered_at END", (new, old))  # fmt: skip
            store._run("DELETE FROM engage_members WHERE profile_id = ?", (old,))
            store._run("DELETE FROM engage_computed WHERE profile_id = ?", (old,))
            store._run("DELETE FROM engage_due WHERE profile_id = ?", (old,))
            if new:
                store._run("UPDATE engage_history SET profile_id = ? WHERE profile_id = ?", (new, old))
            else:
                store._run("DELETE FROM engage_history WHERE profile_id = ?", (old,))

    # --- on time alone ---------------------------------------------------------------------------
    def tick(self, limit: int = DUE_CHUNK) -> int:
        """Re-evaluate the people whose next moment has come (at most ``limit``), in one transaction;
        how many. The caller calls again while it returns ``limit``."""
        if not self.definitions:
            return 0
        now = self.clock()
        self.store.begin()
        try:
            pids = [r[0] for r in self.store._all("SELECT profile_id FROM engage_due WHERE due <= ? ORDER BY due LIMIT ?",
                                                  (now, limit))]  # fmt: skip
            if pids:
                loaded = self.store.load_profiles(pids)
                gone = [p for p in pids if p not in loaded]
                self.store._many("DELETE FROM engage_due WHERE profile_id = ?", [(p,) for p in gone])
                self._settle(loaded, {}, now)
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        return len(pids)

    # --- the answers ------------------------------------------------------------------------------
    def _settle(self, profiles: dict[str, tuple[Profile, dict]], survivors: dict[str, str], now: float) -> None:
        """Evaluate ``profiles`` at ``now`` and write what changed, each removed profile's stays
        handed to its survivor."""
        store, definitions = self.store, self.definitions
        pids = sorted(profiles)
        nids = {}
        for pid, (profile, nodes) in profiles.items():
            for ident in profile.members:
                node = nodes[ident]
                nids[node.nid or node_id(ident)] = pid
        hits: dict[str, dict[str, list[Hit]]] = defaultdict(lambda: defaultdict(list))
        sql = "SELECT node_id, tally, key, time, value FROM engage_hits WHERE node_id IN ({})"
        for rows in store._chunked(sql, sorted(nids)):
            for nid, tally, key, moment, value in rows:
                hits[nids[nid]][tally].append(Hit(moment, key, None if value is None else orjson.loads(value)))
        owner = {pid: pid for pid in pids}
        owner.update((old, new) for old, new in survivors.items())
        prior: dict[str, dict[str, tuple[float, str]]] = defaultdict(dict)  # pid -> audience -> (entered_at, under)
        for rows in store._chunked("SELECT audience, profile_id, entered_at FROM engage_members WHERE profile_id IN ({})",
                                   sorted(owner)):  # fmt: skip
            for audience, under, entered in rows:
                pid = owner[under]
                if pid and (audience not in prior[pid] or entered < prior[pid][audience][0]):
                    prior[pid][audience] = (entered, under)
        before_computed: dict[str, str] = {}
        for rows in store._chunked("SELECT profile_id, traits FROM engage_computed WHERE profile_id IN ({})", pids):
            before_computed.update(rows)
        before_due: dict[str, float] = {}
        for rows in store._chunked("SELECT profile_id, due FROM engage_due WHERE profile_id IN ({})", pids):
            before_due.update(rows)
        self._hand_over(survivors, keep_members=False)
        members, history, exits, gone, computed, due, undue, announce = [], [], [], [], [], [], [], []
        moment = iso(now)
        for pid in pids:
            profile, nodes = profiles[pid]
            answer = evaluate(definitions, view(state_of(profile, nodes)), hits.get(pid, {}), now)
            self.stats["evaluated"] += 1
            before = prior.get(pid, {})
            address = None
            for key in sorted(answer.members - set(before)):
                members.append((key, pid, now))
                history.append((key, pid, now))
                address = address or _address(nodes)
                announce.append((pid, self._message(ENTERED, key, address, moment)))
                self.stats["entered"] += 1
            for key, (entered, under) in sorted(before.items()):
                if key in answer.members:
                    if under != pid:  # kept, under the survivor's id from now on
                        members.append((key, pid, entered))
                    continue
                if key not in definitions.audiences:
                    continue  # an audience no longer defined: ``switch`` removes its rows
                exits.append((now, key, pid, entered))
                gone.append((key, pid))
                address = address or _address(nodes)
                announce.append((pid, self._message(EXITED, key, address, moment)))
                self.stats["exited"] += 1
            text = dumps(answer.computed)
            if before_computed.get(pid) != text:
                computed.append((pid, text))
            if answer.next_change is None:
                if pid in before_due:
                    undue.append((pid,))
            elif before_due.get(pid) != answer.next_change:
                due.append((pid, answer.next_change))
        store._many("DELETE FROM engage_members WHERE audience = ? AND profile_id = ?", gone)
        store._many("INSERT INTO engage_members (audience, profile_id, entered_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (audience, profile_id) DO UPDATE SET entered_at = excluded.entered_at", members)  # fmt: skip
        store._many("INSERT INTO engage_history (audience, profile_id, entered_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (audience, profile_id, entered_at) DO NOTHING", history)  # fmt: skip
        store._many("UPDATE engage_history SET exited_at = ? WHERE audience = ? AND profile_id = ? AND entered_at = ?", exits)
        store._many("INSERT INTO engage_computed (profile_id, traits) VALUES (?, ?) "
                    "ON CONFLICT (profile_id) DO UPDATE SET traits = excluded.traits", computed)  # fmt: skip
        store._many("INSERT INTO engage_due (profile_id, due) VALUES (?, ?) "
                    "ON CONFLICT (profile_id) DO UPDATE SET due = excluded.due", due)  # fmt: skip
        store._many("DELETE FROM engage_due WHERE profile_id = ?", undue)
        seq = time.time_ns()
        store._many("INSERT INTO engage_announce (id, seq, profile_id, message) VALUES (?, ?, ?, ?)",
                    [(m["messageId"], seq + i, pid, dumps(m)) for i, (pid, m) in enumerate(a for a in announce if a[1])])  # fmt: skip

    def _message(self, name: str, key: str, address: dict, moment: str) -> dict | None:
        """The ``Audience Entered/Exited`` track event to ``address`` (None: nobody to address it to)."""
        if not address:
            return None
        return {"type": "track", "event": name, "messageId": "itl-aud-" + os.urandom(12).hex(), "timestamp": moment,
                "properties": {"audience_key": key, "audience_name": self.definitions.audiences[key].name}, **address}  # fmt: skip


def _address(nodes: dict) -> dict:
    """Whom a person's ``Audience`` events name: their latest user id and anonymous id."""
    latest: dict[str, tuple[str, str]] = {}
    for (kind, value), node in nodes.items():
        if kind in (USER_ID, ANONYMOUS_ID) and (kind not in latest or (node.last_seen, value) > latest[kind]):
            latest[kind] = (node.last_seen, value)
    return {name: latest[kind][1] for kind, name in ((USER_ID, "userId"), (ANONYMOUS_ID, "anonymousId")) if kind in latest}
