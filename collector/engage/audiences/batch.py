"""The batch evaluation: the same definitions, answered straight from the log (issue 29, part 6).

The live evaluation (``live.py``, in the profile builder) keeps answers current event by event;
this one reads the whole log at once, for ``intilery audiences preview`` and for backfill (a
definition added or changed)::

    for node_id, tally_id, hit in hits(config, tallies):    # every event a tally counts
        ...
    answers = evaluate_all(config, definitions, now)         # profile id -> Answer

Both answer through ``evaluate.evaluate``, and count exactly the same events, so they agree
(``tests/engage/test_live_equals_batch.py``):

- an event is counted under its **home node**, ``rules.node_id`` of its first identifier by
  priority (``profiles/person.py``: the one definition of whose an event is), at its key
  (``rules.event_key``) and the key's time in epoch seconds (``key_epoch``);
- a duplicate (the same ``source`` and ``messageId``) counts once, the first in the log's order
  (partition, segment, line: the order the builder reads it in); an event with no ``messageId``
  or no identifier counts for no one, as the builder skips it;
- a person is a profile: the nodes with the same ``profile_id`` in the profile database, whose
  traits are ``rules.view`` of its state, as the Profile API shows them.

DuckDB reads the segments (plain and ``.gz``, in parallel) and keeps only the lines whose
``event`` is one a tally counts; those few are parsed again in Python and tested with
``Tally.matches``, so the semantics are the condition module's, not a second copy in SQL. A line
that is not a JSON object (erased, being written) is skipped, as the log's reader skips it.

A person with no counted events is evaluated once per distinct value of the traits the
conditions read (usually once in all): a ``not`` or a trait condition can make them members.
``evaluate_all`` leaves out the people whose answer is empty (no audience, no computed trait).

Only the file log is read; with the NATS store the archive's output (``intilery archive``, the
same layout) is: point ``data_dir`` at it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from collector.engage.conditions import Tally, traits_of
from collector.engage.audiences.evaluate import Answer, Hit, evaluate
from collector.engage.definitions import Definitions
from collector.log.layout import EVENTS, parse_name, partitions, plain_name
from collector.profiles.database import db_target, open_store
from collector.profiles.graph import state_of
from collector.profiles.rules import Rules, event_key, key_time, node_id, view

FETCH = 20_000  # rows taken from DuckDB at a time
RETRIES = 3  # listings of the segments tried when one vanishes while read (compressed, retention)


class BatchError(RuntimeError):
    """The batch evaluation cannot run here: a sentence saying why."""


def key_epoch(key: str) -> float | None:
    """The epoch seconds of an event key's time (``2026-11-28T10:00:00.000Z|m-1``), None when it has none."""
    return _epoch(key_time(key))


@lru_cache(maxsize=1 << 16)
def _epoch(text: str) -> float | None:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


def segments(config) -> list[Path]:
    """The log's segments in the order its reader reads them (partition, then name); a segment
    found both open and compressed (being compressed) is read from its ``.gz``."""
    if config.store != "file":
        raise BatchError(f"the batch evaluation reads the file log, and this configuration's store is {config.store!r}: "
                         "run it on the output of `intilery archive` (the same files), with --data-dir pointing there")  # fmt: skip
    root = Path(config.data_dir) / EVENTS
    if not root.is_dir():
        return []
    found = []
    for partition in partitions(root, EVENTS):
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


def _duckdb():
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a dependency of the package
        raise BatchError("the batch evaluation needs DuckDB: pip install duckdb") from None
    return duckdb


def lines(config, names: Iterable[str]) -> Iterator[bytes]:
    """The stored lines whose ``event`` is one of ``names``, in the log's order (DuckDB)."""
    names = sorted(set(names))
    if not names:
        return
    duckdb = _duckdb()
    for attempt in range(RETRIES):
        files = [str(p) for p in segments(config)]
        if not files:
            return
        con = duckdb.connect()
        try:
            cursor = con.execute(
                "SELECT json FROM read_json_objects(?, format = 'newline_delimited', ignore_errors = true) "
                "WHERE list_contains(?, json_extract_string(json, '$.event'))",
                [files, names],
            )
            rows = cursor.fetchmany(FETCH)
        except duckdb.IOException:
            con.close()
            if attempt == RETRIES - 1:
                raise BatchError("the log's segments kept changing while being read (compression or retention): try again")
            continue  # a segment went (compressed, or removed by retention) between the listing and the read
        try:
            while rows:
                for (line,) in rows:
                    yield line.encode() if line.__class__ is str else line
                rows = cursor.fetchmany(FETCH)
        finally:
            con.close()
        return


def hits(config, tallies: dict[str, Tally] | Iterable[Tally], rules: Rules | None = None) -> Iterator[tuple[str, str, Hit]]:
    """``(node_id, tally_id, Hit)`` for each event of the log each tally counts (see the module's
    docstring), in the log's order."""
    rules = rules or Rules.from_config(config)
    by_name: dict[str, list[Tally]] = defaultdict(list)
    for tally in (tallies.values() if isinstance(tallies, dict) else tallies):
        if tally not in by_name[tally.event]:
            by_name[tally.event].append(tally)
    seen: set[tuple[str, str]] = set()
    identifiers, loads = rules.identifiers, orjson.loads
    for line in lines(config, by_name):
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
        dedup = (source if source.__class__ is str else "", message_id)
        if dedup in seen:
            continue
        seen.add(dedup)
        counting = [t for t in by_name.get(event.get("event"), ()) if t.matches(event)]
        if not counting:
            continue
        idents = identifiers(event)
        if not idents:
            continue
        key = event_key(event)
        when = key_epoch(key)
        if when is None:
            continue
        home = node_id(idents[0])
        for tally in counting:
            yield home, tally.id, Hit(when, key, tally.value(event))


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
    share one ``Answer`` object: do not change it."""
    now = time.time() if now is None else now
    own = store is None
    store = store or _open(config)
    try:
        profile_of = dict(store.node_profiles())
        people = set(profile_of.values())
        names = traits_read(definitions)
        traits = _traits(store, sorted(people), names) if names else {}
    finally:
        if own:
            store.close()
    found: dict[str, dict[str, list[Hit]]] = defaultdict(lambda: defaultdict(list))
    for nid, tally_id, hit in hits(config, definitions.tallies(), Rules.from_config(config)):
        pid = profile_of.get(nid)
        if pid is not None:  # else: not folded by the builder yet (or erased meanwhile)
            found[pid][tally_id].append(hit)
    answers: dict[str, Answer] = {}
    for pid, mine in found.items():
        answer = evaluate(definitions, traits.get(pid, {}), mine, now)
        if not empty(answer):
            answers[pid] = answer
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
