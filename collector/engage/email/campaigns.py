"""Broadcasts: one message per member of an audience with an email address and consent, queued on
the outbox's ``email`` lane (which sends at most ``rate_per_second``)::

    intilery campaign send --audience KEY --template NAME [--id ID] [--dry-run]
    POST /v1/campaigns {"audience": KEY, "template": NAME, "id"?: ID}     (the access token)
    GET  /v1/campaigns/{id}    queued, sent, skipped by reason, failed, dead

The campaign's id (given, or the audience, template and UTC day's digest) names every delivery
(``cmp_<id>_<person digest>``), and the members are walked in profile id order with the walk's
position committed with each page of deliveries (``email_campaigns.cursor``): killed and started
again with the same id, it goes on from there, and a delivery already queued is kept once (the
outbox inserts an id once), so nobody gets a second copy.

Skipped when queued, counted by reason: ``no_email`` (no ``email`` trait), ``no_consent`` (the
trait ``email_consent`` is false, or the person unsubscribed; marketing only). The lane skips
again at send time (unsubscribed meanwhile, undeliverable, the frequency cap).
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone

import orjson

from collector.engage.audiences.reads import members
from collector.engage.email import sender, store, templates, tokens, variables

PAGE = 500
SCHEMA = ("""CREATE TABLE IF NOT EXISTS email_campaigns (id TEXT PRIMARY KEY, audience TEXT NOT NULL, template TEXT NOT NULL,
           created DOUBLE PRECISION NOT NULL, cursor TEXT NOT NULL, done INTEGER NOT NULL, counts TEXT NOT NULL)""",)  # fmt: skip


def campaign_id(audience: str, template: str, now: float) -> str:
    day = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")
    return hashlib.blake2b(f"{audience}\0{template}\0{day}".encode(), digest_size=8).hexdigest()


def delivery_id(cid: str, pid: str) -> str:
    return f"cmp_{cid}_" + hashlib.blake2b(pid.encode(), digest_size=12).hexdigest()


def who(member: dict) -> str:
    """The delivery's person as the outbox files it (an identifier, ``["user_id", "u1"]``): an erasure
    or a suppression of the person finds and removes it (``destinations/privacy.py``)."""
    for kind in ("user_id", "anonymous_id"):
        if member.get(kind):
            return orjson.dumps([kind, member[kind]]).decode()
    return ""


def create(db) -> None:
    store.create(db)
    db.begin()
    for statement in SCHEMA:
        db._run(statement)
    db.commit()


def state(db, cid: str) -> dict | None:
    rows = db._all("SELECT audience, template, created, cursor, done, counts FROM email_campaigns WHERE id = ?", (cid,))
    db.commit()
    if not rows:
        return None
    audience, template, created, cursor, done, counts = rows[0]
    return {"id": cid, "audience": audience, "template": template, "created": created, "cursor": cursor,
            "done": bool(done), "counts": orjson.loads(counts)}  # fmt: skip


def status(db, cid: str) -> dict | None:
    """The campaign's counts: queued (not yet tried), sent, failed (to be retried), dead (refused or
    skipped at send), skipped by reason (at queueing and at send)."""
    found = state(db, cid)
    if found is None:
        return None
    by_state = dict(db._all("SELECT state, COUNT(*) FROM outbox WHERE id LIKE ? GROUP BY state", (f"cmp_{cid}_%",)))
    at_send = dict(db._all("SELECT last_error, COUNT(*) FROM outbox WHERE id LIKE ? AND state = 'dead' AND last_error LIKE "
                           "'skipped: %' GROUP BY last_error", (f"cmp_{cid}_%",)))  # fmt: skip
    db.commit()
    skipped = dict(found["counts"])
    for error, n in at_send.items():
        reason = error.removeprefix("skipped: ")
        skipped[reason] = skipped.get(reason, 0) + n
    return {"id": cid, "audience": found["audience"], "template": found["template"], "done": found["done"],
            "queued": by_state.get("pending", 0) + by_state.get("in_flight", 0), "sent": by_state.get("delivered", 0),
            "failed": by_state.get("failed", 0), "dead": by_state.get("dead", 0) - sum(at_send.values()),
            "skipped": skipped}  # fmt: skip


def send(outbox, profiles, config, audience: str, template: templates.Template, cid: str | None = None,
         dry_run: bool = False, progress=None, now: float | None = None) -> dict:  # fmt: skip
    """Queue the campaign (or, ``dry_run``, only count it); the counts. ``outbox``: the outbox on the
    profile database, ``profiles``: the profile store (the members and their traits)."""
    now = time.time() if now is None else now
    cid = cid or campaign_id(audience, template.name, now)
    key = tokens.secret(config.email, config.data_dir)
    create(outbox)
    found = state(outbox, cid)
    if found is None and not dry_run:
        outbox.begin()
        outbox._run("INSERT INTO email_campaigns (id, audience, template, created, cursor, done, counts) VALUES "
                    "(?, ?, ?, ?, '', 0, '{}') ON CONFLICT (id) DO NOTHING", (cid, audience, template.name, now))  # fmt: skip
        outbox.commit()
        found = state(outbox, cid)
    after, counts = (found["cursor"], dict(found["counts"])) if found else ("", {})
    counts.setdefault("queued", 0)
    walked = 0
    while True:
        page, more = members(profiles, audience, PAGE, after)
        rows = []
        for member in page:
            pid = member["profile_id"]
            person = variables.of_person(profiles, pid)
            if person is None:
                continue
            traits = person["traits"]
            reason = None
            if not isinstance(traits.get("email"), str) or "@" not in traits["email"]:
                reason = "no_email"
            elif template.kind == "marketing" and (traits.get("email_consent") is False
                                                   or store.unsubscribed(outbox, pid, tokens.MARKETING)):  # fmt: skip
                reason = "no_consent"
            if reason:
                counts[reason] = counts.get(reason, 0) + 1
                continue
            did = delivery_id(cid, pid)
            payload = sender.compose(config.email, key, template, person, did, now)
            rows.append((did, sender.LANE, orjson.dumps(payload).decode(), who(member)))
            counts["queued"] += 1
        walked += len(page)
        if page:
            after = page[-1]["profile_id"]
        if not dry_run:
            outbox.begin()
            outbox.add(rows, f"campaign:{cid}", {}, 0, now)
            outbox._run("UPDATE email_campaigns SET cursor = ?, done = ?, counts = ? WHERE id = ?",
                        (after, 0 if more else 1, orjson.dumps({k: v for k, v in counts.items() if k != "queued"}).decode(), cid))  # fmt: skip
            outbox.commit()
        if progress is not None:
            progress(walked, counts)
        if not more:
            break
    return {"id": cid, "dry_run": dry_run, **counts}
