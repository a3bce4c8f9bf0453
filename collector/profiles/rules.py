"""Identity rules: which values identify a person, and what one event adds to a profile.

``Rules`` holds the configurable part (the traits that are identifiers, the values that never
identify anyone, the caps per type)::

    rules = Rules.from_config(config)
    rules.identifiers(event)      # [("user_id", "u-42"), ("email", "ann@x.com"), ("anonymous_id", "a1")]
    absorb(state, event, key)     # fold what the event adds into a profile's state (a mergeable state)
    merge(a, b)                   # two states as one; commutative and associative
    view(state)                   # the traits a profile shows, computed traits under their own names

Every part of a state is merged by a rule that ignores order: sums (counts, revenue), the
latest ``key`` (traits, last touch, last location and device), the earliest (first seen,
first touch). ``key`` is ``timestamp|messageId``, so late or replayed events never overwrite
newer values, and duplicates are dropped before they get here (by ``messageId``).
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from collector.config import BLOCKED_IDS

USER_ID, ANONYMOUS_ID, EMAIL = "user_id", "anonymous_id", "email"
ID_TYPES = (USER_ID, ANONYMOUS_ID, EMAIL, "profile_id")  # what the Profile API looks up by
PROFILE_FORM = "{type}:{value}, type one of " + ", ".join(ID_TYPES)  # how a person is named

# BLOCKED_IDS (config): values that never identify anyone, the shared-device and broken-client
# junk that PostHog, RudderStack and Segment users most complain about; and, always, values of
# only zeros and dashes ("0", "000", the all-zero UUID).
MAX_ID_CHARS = 1024
DEFAULT_CAPS = {USER_ID: 1, ANONYMOUS_ID: 100, EMAIL: 5}
OTHER_CAP = 5  # each identifier trait other than email
ORDER_COMPLETED = "Order Completed"
LINK_SKEW = 600  # seconds: how much earlier than its receivedAt a link may be ordered (link_key)
DEVICE_PARTS = ("device", "os", "browser")  # what of the context makes a profile's last device
DEFAULT_CURRENCY = "USD"


@dataclass(frozen=True)
class Rules:
    """The configurable rules; ``caps`` is the most identifiers of a type one profile may hold."""

    identifier_traits: tuple[str, ...] = (EMAIL,)
    blocked: frozenset[str] = frozenset(BLOCKED_IDS)
    max_anonymous_ids: int = DEFAULT_CAPS[ANONYMOUS_ID]
    max_emails: int = DEFAULT_CAPS[EMAIL]

    @classmethod
    def from_config(cls, config: Any) -> Rules:
        return cls(
            identifier_traits=tuple(config.identifier_traits),
            blocked=frozenset(v.strip().lower() for v in config.blocked_ids),
            max_anonymous_ids=config.max_anonymous_ids,
            max_emails=config.max_emails,
        )

    def cap(self, kind: str) -> int:
        """At most one user_id, always: a second one would join two people."""
        if kind == USER_ID:
            return 1
        if kind == ANONYMOUS_ID:
            return self.max_anonymous_ids
        return self.max_emails if kind == EMAIL else OTHER_CAP

    def clean(self, value: Any) -> str | None:
        """The identifier a raw value is, or None when it never identifies anyone."""
        if value.__class__ is not str:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                return None  # null, objects and lists: a client serialising the wrong thing
            value = str(value)
        value = value.strip()
        if not value.strip("0-") or len(value) > MAX_ID_CHARS or value.lower() in self.blocked:
            return None
        return value

    def identifiers(self, event: dict) -> list[tuple[str, str]]:
        """The event's identifiers, highest priority first: user_id, email, other traits, anonymous_id."""
        user, anon = self.clean(event.get("userId")), self.clean(event.get("anonymousId"))
        context = event.get("context")
        plain = event.get("type") not in ("identify", "alias") and not (context.__class__ is dict and "traits" in context)
        if plain:  # the usual message: a user id and an anonymous id, already in priority order
            if user:
                return [(USER_ID, user), (ANONYMOUS_ID, anon)] if anon else [(USER_ID, user)]
            return [(ANONYMOUS_ID, anon)] if anon else []
        found: set[tuple[str, str]] = set()
        if user:
            found.add((USER_ID, user))
        if anon:
            found.add((ANONYMOUS_ID, anon))
        if event.get("type") == "alias":  # previousId is read as an anonymous id (see README: rules)
            previous = self.clean(event.get("previousId"))
            if previous and previous != user:
                found.add((ANONYMOUS_ID, previous))
        for traits in _trait_sets(event):
            for name in self.identifier_traits:
                value = self.clean(traits.get(name))
                if value:
                    found.add((name, value.lower() if name == EMAIL else value))
        return sorted(found, key=priority)


def parse_profile(text: str) -> tuple[str, str] | None:
    """``{type}:{value}`` as the Profile API and the commands take it, the value as the rules
    store it (trimmed, as ``Rules.clean`` and a privacy request's subjects; an email lower-cased);
    None when it is not one (see ``PROFILE_FORM``)."""
    kind, sep, value = text.partition(":")
    value = value.strip()
    if not sep or kind not in ID_TYPES or not value:
        return None
    return kind, value.lower() if kind == EMAIL else value


def priority(ident: tuple[str, str]) -> tuple:
    kind = ident[0]
    rank = 0 if kind == USER_ID else 1 if kind == EMAIL else 3 if kind == ANONYMOUS_ID else 2
    return (rank, kind, ident[1])


@functools.lru_cache(maxsize=1 << 16)
def node_id(ident: tuple[str, str]) -> str:
    """The stable id of one identifier; a profile's id is that of its first identifier by priority."""
    return "prf_" + hashlib.blake2b(f"{ident[0]}:{ident[1]}".encode(), digest_size=10).hexdigest()


def event_key(event: dict) -> str:
    """The order events are resolved in: event time (clock-skew corrected), then messageId."""
    when = event.get("timestamp") or event.get("receivedAt") or ""
    return f"{when if isinstance(when, str) else ''}|{event.get('messageId', '')}"


def link_key(event: dict, key: str) -> str:
    """The key a link (a set of identifiers seen together) is ordered by: the event's ``key``, but
    never earlier than its ``receivedAt`` minus ``LINK_SKEW`` (to the minute). ``timestamp`` is the
    sender's to set: with the public write key anyone could date an identify in year 1 and so take
    a device from the person who signed in on it, and force a replay of its whole component."""
    received = event.get("receivedAt")
    if received.__class__ is not str or len(received) < 16:
        return key
    floor = _skewed(received[:16])
    return key if key_time(key) >= floor else f"{floor}|{key.split('|', 1)[1] if '|' in key else ''}"


@functools.lru_cache(maxsize=1024)
def _skewed(minute: str) -> str:
    """``YYYY-MM-DDTHH:MM`` minus ``LINK_SKEW``, as the collector writes times."""
    try:
        at = datetime.strptime(minute, "%Y-%m-%dT%H:%M").replace(tzinfo=timezone.utc)
    except ValueError:
        return ""
    return (at - timedelta(seconds=LINK_SKEW)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def key_time(key: str) -> str:
    return key.split("|", 1)[0]


def _trait_sets(event: dict) -> list[dict]:
    """The person's traits in a message: an identify's ``traits`` first, then ``context.traits``."""
    sets = []
    if event.get("type") == "identify" and isinstance(event.get("traits"), dict):
        sets.append(event["traits"])
    context = event.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        sets.append(context["traits"])
    return sets


# --- what one event adds --------------------------------------------------------------------
def absorb(state: dict, event: dict, key: str) -> dict:
    """Fold one event into ``state``, in place: what ``merge(state, absorb({}, event, key))``
    gives (the builder's hot path: no state is copied, the usual parts written out inline)."""
    get = event.get
    kind = get("type")
    kind = kind if kind.__class__ is str else str(kind or "")
    fresh = not state  # merge returns the contribution itself for an empty state, else adds it
    if fresh:
        state.update(first=key, last=key, types={kind: 1})
    else:
        if key < state["first"]:
            state["first"] = key
        if key > state["last"]:
            state["last"] = key
        types = state["types"]
        types[kind] = types.get(kind, 0) + 1
    name = get("event")
    if kind == "track" and name.__class__ is str:
        events = state.get("events")
        if events is None:
            events = state["events"] = {}
        events[name] = events.get(name, 0) + 1
    context = get("context")
    if kind == "identify" or (isinstance(context, dict) and "traits" in context):
        for trait_set in _trait_sets(event):  # an identify's own traits win over context.traits
            if trait_set:
                traits = state.setdefault("traits", {})
                for k, v in trait_set.items():
                    k = k if k.__class__ is str else str(k)
                    old = traits.get(k)
                    if old is None or key > old[0]:  # the latest (as _later)
                        traits[k] = [key, v]
    if context.__class__ is dict and context:
        touch = _touch(context)
        if touch:
            old = state.get("first_touch")
            if old is None or key < old[0]:  # the earliest
                state["first_touch"] = [key, touch]
            old = state.get("last_touch")
            if old is None or key > old[0]:  # the latest (as _later)
                state["last_touch"] = [key, touch]
        location = context.get("location")
        if isinstance(location, dict):
            old = state.get("location")
            if old is None or key > old[0]:
                state["location"] = [key, location]
        device = None
        for k in DEVICE_PARTS:
            part = context.get(k)
            if isinstance(part, dict):
                if device is None:
                    device = {}
                device[k] = part
        if device:
            old = state.get("device")
            if old is None or key > old[0]:
                state["device"] = [key, device]
    if kind == "track" and name == ORDER_COMPLETED:
        properties = get("properties") if isinstance(get("properties"), dict) else {}
        amount = _decimal(properties.get("revenue", properties.get("total")))
        if amount is not None:
            currency = str(properties.get("currency") or DEFAULT_CURRENCY).upper()
            revenue = state.setdefault("revenue", {})
            revenue[currency] = str(amount if fresh else Decimal(revenue.get(currency, "0")) + amount)
    if kind == "group" and isinstance(get("groupId"), (str, int)):
        group_traits = get("traits") if isinstance(get("traits"), dict) else {}
        group = state.setdefault("groups", {}).setdefault(str(event["groupId"]), {})
        for k, v in group_traits.items():
            _later(group, str(k), [key, v])
    return state


def _later(into: dict, name: str, value: list) -> None:
    """Keep the value with the latest key (the one already there on a tie, as ``_latest``)."""
    old = into.get(name)
    if old is None or value[0] > old[0]:
        into[name] = value


def _touch(context: dict) -> dict:
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    touch = {}
    if isinstance(context.get("campaign"), dict) and context["campaign"]:
        touch["campaign"] = context["campaign"]
    if page.get("referrer"):
        touch["referrer"] = page["referrer"]
    if page.get("url") or page.get("path"):
        touch["landing_page"] = page.get("url") or page.get("path")
    return touch


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


# --- merging ------------------------------------------------------------------------------------
def _latest(a: list | None, b: list | None) -> list | None:
    if a is None or b is None:
        return a or b
    return a if a[0] >= b[0] else b


def _earliest(a: list | None, b: list | None) -> list | None:
    if a is None or b is None:
        return a or b
    return a if a[0] <= b[0] else b


def _sum(a: dict | None, b: dict | None) -> dict:
    out = dict(a or {})
    for k, v in (b or {}).items():
        out[k] = out.get(k, 0) + v
    return out


def _latest_each(a: dict | None, b: dict | None) -> dict:
    out = dict(a or {})
    for k, v in (b or {}).items():
        out[k] = _latest(out.get(k), v)
    return out


def merge(a: dict, b: dict) -> dict:
    """Two states as one: what both profiles (or a profile and one more event) add up to."""
    if not a:
        return b
    if not b:
        return a
    out = {"first": min(a["first"], b["first"]), "last": max(a["last"], b["last"]),
           "types": _sum(a.get("types"), b.get("types"))}  # fmt: skip
    for name in ("events",):
        if a.get(name) or b.get(name):
            out[name] = _sum(a.get(name), b.get(name))
    if a.get("traits") or b.get("traits"):
        out["traits"] = _latest_each(a.get("traits"), b.get("traits"))
    for name, pick in (("first_touch", _earliest), ("last_touch", _latest), ("location", _latest), ("device", _latest)):
        value = pick(a.get(name), b.get(name))
        if value is not None:
            out[name] = value
    if a.get("revenue") or b.get("revenue"):
        revenue = dict(a.get("revenue") or {})
        for currency, amount in (b.get("revenue") or {}).items():
            revenue[currency] = str(Decimal(revenue.get(currency, "0")) + Decimal(amount))
        out["revenue"] = revenue
    if a.get("groups") or b.get("groups"):
        groups = dict(a.get("groups") or {})
        for gid, traits in (b.get("groups") or {}).items():
            groups[gid] = _latest_each(groups.get(gid), traits)
        out["groups"] = groups
    return out


def view(state: dict) -> dict:
    """The traits a profile shows: the person's (a ``null`` clears one), then the computed ones."""
    if not state:
        return {}
    traits = {k: v[1] for k, v in sorted((state.get("traits") or {}).items()) if v[1] is not None}
    return {**traits, **computed(state)}


def computed(state: dict) -> dict:
    """The computed traits of a profile's state (``view`` shows them after the person's own)."""
    if not state:
        return {}
    device = (state.get("device") or [None, {}])[1]
    return {
        "first_seen": key_time(state["first"]),
        "last_seen": key_time(state["last"]),
        "event_count": sum(state.get("types", {}).values()),
        "counts_by_type": dict(sorted(state.get("types", {}).items())),
        "counts_by_event": dict(sorted((state.get("events") or {}).items())),
        "first_touch": (state.get("first_touch") or [None, None])[1],
        "last_touch": (state.get("last_touch") or [None, None])[1],
        "last_location": (state.get("location") or [None, None])[1],
        "last_device": device.get("device"),
        "last_os": device.get("os"),
        "last_browser": device.get("browser"),
        "revenue": {c: float(Decimal(v)) for c, v in sorted((state.get("revenue") or {}).items())},
        "groups": {g: {k: v[1] for k, v in sorted(t.items()) if v[1] is not None}
                   for g, t in sorted((state.get("groups") or {}).items())},
    }  # fmt: skip
