"""The batch evaluation: the same definitions, answered straight from the log (issue 29, part 6).

The live evaluation (``live.py``, in the profile builder) keeps answers current event by event;
this one reads the log at once, for ``intilery audiences preview`` (``cli.py``) and for whoever
needs every counted event of some tallies::

    for node_id, tally_id, hit in hits(config, tallies):    # every event a tally counts
        ...
    answers = evaluate_all(config, definitions, now)         # profile id -> Answer

Both answer through ``evaluate.evaluate``, and count exactly the same events, so they agree row
for row (``tests/engage/test_live_equals_batch.py``):

- an event is counted under its **home node**, ``rules.node_id`` of its first identifier by
  priority (``profiles/person.py``: the one definition of whose an event is), at its key
  (``rules.event_key``) and the key's time (``evaluate.epoch``, as ``engage_hits.time``);
- a duplicate (the same ``source`` and ``messageId``) counts once, the first in the log's order
  (partition, segment, line: the order the builder reads it in); an event with no ``messageId``
  or no identifier counts for no one, as the builder skips it; and a tally counts one event per
  home node and key, as ``engage_hits`` is keyed (the same messageId at the same time from two
  sources, under one person, is one);
- a person is a profile: the nodes with the same ``profile_id`` in the profile database, whose
  traits are ``rules.view`` of its state, as the Profile API shows them.

DuckDB reads the segments (plain and ``.gz``, in parallel) and keeps only the lines whose
``event`` is one a tally counts; those few are parsed again in Python and tested with
``Tally.matches``, so the semantics are the condition module's, not a second copy in SQL. A line
that is not a JSON object (erased, being written) is skipped, as the log's reader skips it. An
answer at one moment needs no event older than the longest window its tally is counted in
(``oldest_needed``): when every use of a tally is windowed, older partitions are not opened and
older lines not parsed. (Two copies of one event whose times straddle that moment, a replay after
the duplicate filter's window, could then count the later copy: the builder keeps the first.)

A person with no counted events is evaluated once per distinct value of the traits the
conditions read (usually once in all): a ``not`` or a trait condition can make them members.
``evaluate_all`` leaves out the people whose answer is empty (no audience, no computed trait).

Only the file log is read; with the NATS store the archive's output (``intilery archive``, the
same layout) is: ``--store file --data-dir`` there.
"""

from __future__ import annotations

import calendar
import gc
import math
import time
from collections import defaultdict
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from collector.engage.conditions import Tally, events_of, traits_of
from collector.engage.audiences.evaluate import Answer, Hit, epoch, evaluate
from collector.engage.definitions import Definitions
from collector.log.layout import EVENTS, iso_ms, parse_name, partitions, plain_name
from collector.profiles.database import db_target, open_store
from collector.profiles.graph import state_of
from collector.profiles.rules import Rules, event_key, key_time, node_id, view

FETCH = 20_000  # rows taken from DuckDB at a time
RETRIES = 3  # listings of the segments tried when one vanishes while read (compressed, retention)


class BatchError(RuntimeError):
    """The batch evaluation cannot run here: a sentence saying why."""


def key_epoch(key: str) -> float:
    """The epoch seconds of an event key's time (``2026-11-28T10:00:00.000Z|m-1``): ``evaluate.epoch``
    (0 when it has none), as the live evaluation records it."""
    return _epoch(key_time(key))


def _epoch(text: str) -> float:
    """``evaluate.epoch(text)``, the collector's own form (``2026-11-28T10:00:00.000Z``) computed from
    its minute's, to the same float (``fromisoformat(...).timestamp()`` is microseconds / 10**6)."""
    if len(text) == 24 and text[19] == "." and text[23] == "Z":
        base = _minute(text[:16])
        seconds, millis = text[17:19], text[20:23]
        if base is not None and seconds.isdigit() and millis.isdigit() and int(seconds) < 60:
            return ((base + int(seconds)) * 1_000_000 + int(millis) * 1000) / 1_000_000
    return epoch(text)


@lru_cache(maxsize=4096)
def _minute(text: str) -> int | None:
    """Epoch seconds of ``2026-11-28T10:00`` (UTC); None when it is not one."""
    try:
        at = datetime.fromisoformat(text + "Z")
    except ValueError:
        return None
    return int(at.timestamp()) if at.second == 0 and at.microsecond == 0 else None


def segments(config, after: float | None = None) -> list[Path]:
    """The log's segments in the order its reader reads them (partition, then name); a segment
    found both open and compressed (being compressed) is read from its ``.gz``. ``after``: only the
    partitions that can hold an event whose time is after it (an hour's partition holds events
    received in it, whose ``timestamp`` is never after their ``receivedAt``: ``ingest/pipeline.py``)."""
    if config.store != "file":
        raise BatchError(f"the batch evaluation reads the file log, and this configuration's store is {config.store!r}: "
                         "read the output of `intilery archive` (the same files) with --store file --data-dir DIR")  # fmt: skip
    root = Path(config.data_dir) / EVENTS
    if not root.is_dir():
        return []
    found = []
    for partition in partitions(root, EVENTS):
        if after is not None and _hour_end(partition) <= after:
            continue
        names: dict[str, str] = {}
        try:
            listed = sorted(p.name for p in (root / partition).iterdir())
        except FileNotFoundError:
            continue
        for name in listed:
            parts = parse_name(name)
            if parts is None or parts["tmp"]:
                continue
            plain = plain_name(name)
            if parts["gz"] or plain not in names:
                names[plain] = name
        found += [root / partition / names[plain] for plain in sorted(names)]
    return found


def _hour_end(partition: str) -> float:
    """The end of an hour's partition (``dt=2026-11-28/hr=13``) in epoch seconds."""
    return calendar.timegm(time.strptime(partition, "dt=%Y-%m-%d/hr=%H")) + 3600.0


def _duckdb():
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a dependency of the package
        raise BatchError("the batch evaluation needs DuckDB: pip install duckdb") from None
    return duckdb


# The lines of the names asked for, and, of a name with a moment (``after``), only those whose time may
# be after it: a line whose time text (``rules.event_key``: timestamp, else receivedAt) is written as
# the collector writes times, and sorts at or before the moment's, is left out (times in that one
# form order as text); any other form is kept, for Python to decide.
QUERY = """
SELECT json FROM (
    SELECT json, json_extract_string(json, ['$.event', '$.timestamp', '$.receivedAt']) AS f
    FROM read_json_objects($files, format = 'newline_delimited', ignore_errors = true)
) WHERE list_contains($names, f[1]) AND NOT coalesce(
    regexp_full_match(coalesce(nullif(f[2], ''), f[3]), '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z')
    AND coalesce(nullif(f[2], ''), f[3]) <= $after[list_position($names, f[1])], false)
"""


def lines(config, names: Iterable[str], after: dict[str, float] | None = None) -> Iterator[bytes]:
    """The stored lines whose ``event`` is one of ``names``, in the log's order (DuckDB). ``after``:
    name -> a moment; lines of that name whose time is at or before it may be left out."""
    names = sorted(set(names))
    if not names:
        return
    after = after or {}
    cutoffs = [iso_ms(after[n]) if after.get(n) is not None else "" for n in names]
    oldest = None if any(after.get(n) is None for n in names) else min(after[n] for n in names)
    duckdb = _duckdb()
    for attempt in range(RETRIES):
        files = [str(p) for p in segments(config, oldest)]
        if not files:
            return
        con = duckdb.connect()
        try:
            cursor = con.execute(QUERY, {"files": files, "names": names, "after": cutoffs})
            rows = cursor.fetchmany(FETCH)
        except duckdb.Error as exc:
            con.close()
            if not all(Path(f).exists() for f in files) and attempt < RETRIES - 1:
                continue  # a segment went (compressed, or removed by retention) between the listing and the read
            said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BatchError(f"cannot read the log under {Path(config.data_dir) / EVENTS}: {said}") from None
        try:
            while rows:
                for (line,) in rows:
                    yield line.encode() if line.__class__ is str else line
                rows = cursor.fetchmany(FETCH)
        finally:
            con.close()
        return


def hits(config, tallies: dict[str, Tally] | Iterable[Tally], rules: Rules | None = None, *,
         after: dict[str, float] | None = None) -> Iterator[tuple[str, str, Hit]]:  # fmt: skip
    """``(node_id, tally_id, Hit)`` for each event of the log each tally counts (see the module's
    docstring), in the log's order. ``after``: tally id -> a moment; that tally's events at or
    before it are left out (an answer at one moment needs none older than its longest window).

    A caller that keeps many hits is faster with the garbage collector off meanwhile (as
    ``evaluate_all`` and the builder are): they hold no cycles."""
    rules = rules or Rules.from_config(config)
    after = after or {}
    by_name: dict[str, list[tuple[Tally, str, bool, float]]] = defaultdict(list)
    for tally in (tallies.values() if isinstance(tallies, dict) else tallies):
        if all(tally != t for t, _, _, _ in by_name[tally.event]):
            # a tally with no ``where`` and no property counts every event of its name (``Tally.matches``)
            every = tally.where is None and tally.prop is None
            by_name[tally.event].append((tally, tally.id, every, after.get(tally.id, -math.inf)))
    moments = {name: min(t[3] for t in found) for name, found in by_name.items()}
    # messageId -> (source, key, home, tally ids counted) of each copy counted (a list when several
    # sources sent it): a repeat from the same source counts for nothing, and one from another source
    # at the same key, under the same home, for no tally already counted there (the tables' key)
    seen: dict[str, Any] = {}
    identifiers, loads = rules.identifiers, orjson.loads
    for line in lines(config, by_name, {n: m for n, m in moments.items() if m != -math.inf}):
        try:
            event = loads(line)
        except orjson.JSONDecodeError:
            continue
        if event.__class__ is not dict:
            continue
        message_id = event.get("messageId")
        if message_id.__class__ is not str:
            continue  # the builder counts it for no one
        source = event.get("source")
        source = source if source.__class__ is str else ""
        before = seen.get(message_id)
        if before is not None:
            copies = before if before.__class__ is list else [before]
            if any(copy[0] == source for copy in copies):
                continue  # a duplicate
        name = event.get("event")
        key = event_key(event)
        counting = ()
        idents = identifiers(event) if name.__class__ is str and name in by_name else None
        if idents:
            when = _epoch(key.partition("|")[0])  # key_epoch
            home = node_id(idents[0])
            counting = [(tally, tally_id) for tally, tally_id, every, moment in by_name[name]
                        if when > moment and (every or tally.matches(event))]  # fmt: skip
            if before is not None:
                done = {t for copy in copies if copy[1] == key and copy[2] == home for t in copy[3]}
                counting = [(tally, tally_id) for tally, tally_id in counting if tally_id not in done]
            for tally, tally_id in counting:
                yield home, tally_id, Hit(when, key, None if tally.prop is None else tally.value(event))
        else:
            home = None
        copy = (source, key, home, tuple(tally_id for _, tally_id in counting))
        seen[message_id] = copy if before is None else [*copies, copy]


def oldest_needed(definitions: Definitions, now: float) -> dict[str, float]:
    """Tally id -> the moment at or before which none of its events changes an answer at ``now``
    (``now`` minus its longest window), for the tallies used only in windows."""
    windows: dict[str, list[float | None]] = defaultdict(list)
    for trait in definitions.traits.values():
        windows[trait.tally.id].append(trait.within)
    for audience in definitions.audiences.values():
        for event in events_of(audience.condition):
            windows[event.tally.id].append(event.within)
    return {tid: now - max(found) for tid, found in windows.items() if None not in found}


def traits_read(definitions: Definitions) -> set[str]:
    """The person's traits the audiences' conditions read (a ``count`` computed trait always has a
    value, so the person's own trait of that name is never seen)."""
    names: set[str] = set()
    for audience in definitions.audiences.values():
        names |= traits_of(audience.condition)
    return {n for n in names if not (n in definitions.traits and definitions.traits[n].kind == "count")}


def empty(answer: Answer) -> bool:
    return not answer.members and not answer.computed


def evaluate_all(config, definitions: Definitions, now: float | None = None, *, store=None) -> dict[str, Answer]:
    """Every person's answer at ``now`` (default: the present), by profile id; a person whose
    answer is empty is left out. People with the same traits (of those read) and no counted event
    share one ``Answer`` object: do not change it. Events older than every window they are counted
    in are not read (``oldest_needed``)."""
    now = time.time() if now is None else now
    collecting = gc.isenabled()
    gc.disable()  # millions of hits and answers, no cycles: the collector's scans of them were a third of the time
    try:
        return _evaluate_all(config, definitions, now, store)
    finally:
        if collecting:
            gc.enable()


def _evaluate_all(config, definitions: Definitions, now: float, store) -> dict[str, Answer]:
    by_node: dict[str, dict[str, list[Hit]]] = defaultdict(lambda: defaultdict(list))
    rules = Rules.from_config(config)
    for nid, tally_id, hit in hits(config, definitions.tallies(), rules, after=oldest_needed(definitions, now)):
        by_node[nid][tally_id].append(hit)
    names = traits_read(definitions)
    blank = None if names else evaluate(definitions, {}, {}, now)  # everyone's answer without an event
    everyone = bool(names) or not empty(blank)  # people without an event count: all are needed
    own = store is None
    store = store or _open(config)
    found: dict[str, dict[str, list[Hit]]] = {}
    people: set[str] = set()
    try:
        for nid, pid in store.node_profiles():
            if everyone:
                people.add(pid)
            mine = by_node.get(nid)
            if mine is None:
                continue  # (a node with hits and no row: not folded by the builder yet, or erased meanwhile)
            theirs = found.get(pid)
            if theirs is None:
                found[pid] = mine
            else:  # another node of the same person
                for tally_id, more in mine.items():
                    theirs[tally_id] = theirs.get(tally_id, []) + more
        traits = _traits(store, sorted(people), names) if names else {}
    finally:
        if own:
            store.close()
    answers: dict[str, Answer] = {}
    for pid, mine in found.items():
        answer = evaluate(definitions, traits.get(pid, {}), mine, now)
        if not empty(answer):
            answers[pid] = answer
    if not everyone:
        return answers
    if blank is not None:
        answers.update((pid, blank) for pid in people.difference(found))
        return answers
    blanks: dict[bytes, Answer] = {}
    for pid in people.difference(found):
        shown = traits.get(pid, {})
        label = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS)
        answer = blanks.get(label)
        if answer is None:
            answer = blanks[label] = evaluate(definitions, shown, {}, now)
        if not empty(answer):
            answers[pid] = answer
    return answers


def _open(config):
    target = db_target(config)
    if not target.startswith("postgres") and not Path(target).is_file():
        raise BatchError(f"no profile database at {target} yet (is a collector with profiles running on this data "
                         "directory, or `intilery profiles`?)")  # fmt: skip
    return open_store(target, reads_only=True)


CHUNK = 5_000  # profiles loaded at a time for their traits


def _traits(store, pids: list[str], names: set[str]) -> dict[str, dict[str, Any]]:
    """Each profile's traits (``rules.view`` of its state), only those named (what the conditions read)."""
    out = {}
    for i in range(0, len(pids), CHUNK):
        for pid, (profile, nodes) in store.load_profiles(pids[i : i + CHUNK]).items():
            shown = view(state_of(profile, nodes))
            out[pid] = {n: shown[n] for n in names if n in shown}
    return out
