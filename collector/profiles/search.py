"""Finding a person: profiles whose identifier or trait begins with what was typed, a page at a time.

    search(store, "grace")            any identifier (email, user id, anonymous id, ...) or profile id
    search(store, "email:gra")        identifiers of one type (user_id, anonymous_id, email, profile_id,
                                      or an identifier trait such as phone)
    search(store, "plan:pro")         any other name: the person's trait of that name
    search(store, "")                 everyone

Values are compared from their beginning, in any case. Pages are in profile id order; the cursor
is the last profile id of a page. Read by the Profile API (``GET .../profiles?q=``), the console
and ``intilery profile search``, on either store (SQLite or PostgreSQL), through the store's own
queries (``_all``). Each search reads the whole identifiers table (no index serves a prefix in any
case; a trait is not indexed at all, so a trait search also reads the candidate profiles' states):
fine for the thousands of profiles a newcomer or a support desk looks through, not measured on millions.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple

from collector.errors import BadRequest
from collector.profiles.graph import state_of
from collector.profiles.rules import computed, view

MAX_LIMIT, DEFAULT_LIMIT = 100, 10
SCAN = 200  # candidate profiles read at a time by a trait search
ID_KINDS = ("user_id", "email", "anonymous_id")
_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$-]*$")
PRIORITY = {"user_id": 0, "email": 1, "anonymous_id": 3}


class Query(NamedTuple):
    kind: str  # "" : any identifier; "profile_id"; an identifier type; "trait"
    name: str  # the trait's name (kind "trait")
    prefix: str  # lower case


def parse(text: str, identifier_traits: tuple[str, ...] = ("email",)) -> Query:
    """``text`` as a query: ``value``, ``type:value`` or ``trait:value`` (see the module's docstring)."""
    name, sep, value = text.partition(":")
    if not sep or not _NAME.match(name):
        return Query("", "", text.strip().lower())
    if name in ID_KINDS or name == "profile_id" or name in identifier_traits:
        return Query(name, "", value.strip().lower())
    return Query("trait", name, value.strip().lower())


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(store, query: Query, limit: int = DEFAULT_LIMIT, after: str = "") -> tuple[list[dict], str]:
    """A page of the profiles ``query`` matches, and the next page's cursor ("" at the end)."""
    pids = _trait_matches(store, query, limit + 1, after) if query.kind == "trait" else _matches(store, query, limit + 1, after)
    more, pids = len(pids) > limit, pids[:limit]
    loaded = store.load_profiles(pids)
    found = [summary(pid, *loaded[pid]) for pid in pids if pid in loaded]
    store.commit()  # a read opens a transaction on PostgreSQL: end it
    return found, encode(pids[-1]) if more and pids else ""


def _matches(store, query: Query, limit: int, after: str) -> list[str]:
    pattern = _like(query.prefix)
    if query.kind == "" and not query.prefix:
        sql, params = "SELECT profile_id FROM profiles WHERE profile_id > ?", [after]
    elif query.kind == "profile_id":
        sql, params = "SELECT profile_id FROM profiles WHERE lower(profile_id) LIKE ? ESCAPE '\\' AND profile_id > ?", [pattern, after]
    elif query.kind == "":
        sql = ("SELECT DISTINCT profile_id FROM identifiers WHERE (lower(value) LIKE ? ESCAPE '\\' "
               "OR lower(profile_id) LIKE ? ESCAPE '\\') AND profile_id > ?")  # fmt: skip
        params = [pattern, pattern, after]
    else:
        sql = "SELECT DISTINCT profile_id FROM identifiers WHERE type = ? AND lower(value) LIKE ? ESCAPE '\\' AND profile_id > ?"
        params = [query.kind, pattern, after]
    return [row[0] for row in store._all(sql + " ORDER BY profile_id LIMIT ?", [*params, limit])]


def _trait_matches(store, query: Query, limit: int, after: str) -> list[str]:
    """Profiles whose trait ``query.name`` (its value now: the latest) begins with the prefix."""
    marker = _like(f'"{query.name}":[')  # in the JSON of a node's state: "traits": {"plan": [key, value]}
    found: list[str] = []
    while len(found) < limit:
        rows = store._all("SELECT DISTINCT profile_id FROM identifiers WHERE state LIKE ? ESCAPE '\\' AND profile_id > ? "
                          "ORDER BY profile_id LIMIT ?", ["%" + marker, after, SCAN])  # fmt: skip
        if not rows:
            break
        pids = [row[0] for row in rows]
        loaded = store.load_profiles(pids)
        for pid in pids:
            if pid in loaded:
                traits = (state_of(*loaded[pid]).get("traits") or {})
                value = (traits.get(query.name) or [None, None])[1]
                if value is not None and str(value).lower().startswith(query.prefix):
                    found.append(pid)
        after = pids[-1]
    return found[:limit]


def summary(pid: str, profile, nodes) -> dict:
    """One match: its id, its identifiers (user id first), its own traits, when last seen."""
    state = state_of(profile, nodes)
    made = computed(state)
    idents = sorted(nodes, key=lambda ident: (PRIORITY.get(ident[0], 2), ident))
    return {
        "profile_id": pid,
        "identifiers": [f"{kind}:{value}" for kind, value in idents],
        "traits": {k: v for k, v in view(state).items() if k not in made},
        "first_seen": made.get("first_seen"),
        "last_seen": made.get("last_seen"),
    }


def encode(pid: str) -> str:
    return base64.urlsafe_b64encode(pid.encode()).decode().rstrip("=")


def cursor(raw: str | None) -> str:
    """The profile id a ``next`` cursor stands for ("" : the first page)."""
    if not raw:
        return ""
    try:
        pid = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, ValueError):
        pid = ""
    if not pid.startswith("prf_"):
        raise BadRequest("invalid_parameter", "next is a cursor from a previous page")
    return pid


def limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest("invalid_parameter", f"limit is a whole number from 1 to {MAX_LIMIT}")
    return int(raw)
