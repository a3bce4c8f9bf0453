"""Privacy and the outbox (``privacy/erase.py``, its ``Context.outbox`` step). A request that
suppresses a person drops their undelivered deliveries (counted: ``dropped``); one that erases them
also removes the rest (``removed``), and queues, for each destination with ``forward_deletes: true``,
one ``privacy.delete`` webhook::

    {"type": "privacy.delete", "timestamp": "...", "data": {"regulateId": "reg_...", "identifiers":
     [{"type": "user_id", "value": "u1"}, ...]}}

Its id is stable per request and destination, so a job that runs again queues none twice.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

import orjson

from collector.engage import definitions as engage
from collector.engage.definitions import DefinitionError
from collector.engage.destinations import definitions
from collector.engage.outbox.store import open_outbox
from collector.profiles.database import db_target

UNDELIVERED = ("pending", "failed", "in_flight")  # in flight: its outcome, when it comes, finds no row


def eraser(config) -> Callable[..., dict]:
    """The privacy job's step: ``erase(person, regulate_id, delete=True)`` → counts (``delete=False``:
    a suppression, the undelivered dropped only)."""

    def erase(person, regulate_id: str, delete: bool = True) -> dict:
        try:
            found = definitions.load(engage.folder(config))
        except DefinitionError:
            found = {}  # the files are broken now: the person's deliveries are removed all the same
        target = db_target(config)
        if not target.startswith("postgres") and not Path(target).is_file():
            return {"dropped": 0, "removed": 0, "forwarded": 0}  # no profile database, no outbox
        outbox = open_outbox(target)
        try:
            if not delete:
                return forget(outbox, person.idents, regulate_id, [], only=UNDELIVERED)
            return forget(outbox, person.idents, regulate_id, [d for d in found.values() if d.forward_deletes])
        finally:
            outbox.close()

    return erase


def forget(outbox, idents, regulate_id: str, forwarding: list, now: float | None = None,
           only: tuple[str, ...] | None = None) -> dict:  # fmt: skip
    """Remove the deliveries of ``idents`` (those in the states ``only``), queue ``forwarding``'s deletes."""
    now = time.time() if now is None else now
    whos = [orjson.dumps(list(i)).decode() for i in sorted(idents)]
    stats = {"dropped": 0, "removed": 0, "forwarded": 0}
    outbox.begin()
    try:
        for i in range(0, len(whos), 500):
            chunk = whos[i : i + 500]
            marks = ",".join("?" * len(chunk))
            states = f" AND state IN ({','.join('?' * len(only))})" if only else ""
            params = [*chunk, *(only or ())]
            rows = outbox._all(f"SELECT state, COUNT(*) FROM outbox WHERE who IN ({marks}){states} GROUP BY state", params)
            for state, n in rows:
                stats["dropped" if state in UNDELIVERED else "removed"] += n
            outbox._run(f"DELETE FROM outbox WHERE who IN ({marks}){states}", params)
        payload = {"type": "privacy.delete", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)),
                   "data": {"regulateId": regulate_id,
                            "identifiers": [{"type": t, "value": v} for t, v in sorted(idents)]}}  # fmt: skip
        rows = [("msg_" + hashlib.blake2b(f"{d.name}\0privacy\0{regulate_id}".encode(), digest_size=16).hexdigest(),
                 d.name, orjson.dumps(payload).decode(), "") for d in forwarding]  # fmt: skip
        if rows:
            outbox._many("INSERT INTO outbox (id, destination, state, created, next_at, payload, who, updated) "
                         "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                         [(i, d, now, now, p, w, now) for i, d, p, w in rows])  # fmt: skip
            stats["forwarded"] = len(rows)
        outbox.commit()
    except BaseException:
        outbox.rollback()
        raise
    return stats
