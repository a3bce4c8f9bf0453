"""Realistic benchmark inputs: users, user agents, addresses, events and a geo database.

Everything is drawn from one seeded random generator, so a run is reproducible:

- 17,816 real user-agent strings (``data/user-agents.txt``) ranked in a fixed shuffled
  order and drawn with a Zipf-like frequency (rank ``k`` has weight ``1 / k**ZIPF_S``): a
  few agents dominate, a long tail follows, as in real traffic;
- users, each with one agent and one address (IPv4 or IPv6), themselves drawn with a
  Zipf-like frequency (a few very active users, many occasional ones);
- addresses inside the networks of a generated geo database (``build_bench_geo_db``), plus
  a share that the database does not know;
- a mix of event names with varied properties, page context, campaign tags and the
  timestamps a browser library sends.

``messageId`` holds a placeholder (``ID_PLACEHOLDER``) that the load generator replaces per
request, so that no two requests carry the same ids (the collector would store a repeated id
only once and answer it as a duplicate, which would flatter the numbers).
"""

from __future__ import annotations

import bisect
import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson

DATA = Path(__file__).parent / "data"
USER_AGENTS = DATA / "user-agents.txt"
ZIPF_S = 1.1
ID_PLACEHOLDER = "@@@@@@@@@@@@"  # 12 characters, replaced per request by the load generator

EVENTS = [
    ("Product Viewed", 30), ("Product List Viewed", 14), ("Product Clicked", 10), ("Product Added", 8),
    ("Cart Viewed", 5), ("Checkout Started", 3), ("Order Completed", 2), ("Products Searched", 8),
    ("Signed Up", 1), ("Signed In", 2), ("Newsletter Subscribed", 1), ("Video Playback Started", 4),
    ("Promotion Viewed", 6), ("Coupon Applied", 1), ("Wishlist Product Added", 2),
]  # fmt: skip
PATHS = ["/", "/shoes", "/shoes/running", "/bags", "/sale", "/search", "/cart", "/checkout", "/account",
         "/blog/how-to-choose-running-shoes", "/p/trail-runner-2", "/p/city-tote", "/p/rain-jacket"]  # fmt: skip
CURRENCIES = ["GBP", "EUR", "USD"]
LOCALES = ["en-GB", "en-US", "fr-FR", "de-DE", "es-ES", "it-IT", "nl-NL", "pl-PL"]
TIMEZONES = ["Europe/London", "Europe/Paris", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
COUNTRIES = [("GB", "United Kingdom", "England", "London", "Europe/London"),
             ("FR", "France", "Île-de-France", "Paris", "Europe/Paris"),
             ("DE", "Germany", "Berlin", "Berlin", "Europe/Berlin"),
             ("US", "United States", "New York", "New York", "America/New_York"),
             ("ES", "Spain", "Madrid", "Madrid", "Europe/Madrid"),
             ("JP", "Japan", "Tokyo", "Tokyo", "Asia/Tokyo"),
             ("BR", "Brazil", "São Paulo", "São Paulo", "America/Sao_Paulo"),
             ("IN", "India", "Maharashtra", "Mumbai", "Asia/Kolkata")]  # fmt: skip


def load_user_agents(path: Path = USER_AGENTS) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Zipf:
    """Draws indexes 0..n-1 with weight ``1 / (k + 1) ** s`` (a few common, a long tail)."""

    def __init__(self, n: int, s: float = ZIPF_S) -> None:
        self.cumulative = list(itertools.accumulate(1 / (k + 1) ** s for k in range(n)))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cumulative, rng.random() * self.cumulative[-1])


# --- the geo database -----------------------------------------------------------------
V4_NETWORKS = 400  # /16 networks in the database
V6_NETWORKS = 100  # /32 networks


def geo_networks(seed: int = 7) -> dict[str, dict[str, Any]]:
    """GeoIP2-City-shaped records for a few hundred IPv4 /16 and IPv6 /32 networks."""
    rng = random.Random(seed)
    networks: dict[str, dict[str, Any]] = {}
    firsts = [n for n in range(1, 224) if n not in (10, 127)]
    v4 = rng.sample([(a, b) for a in firsts for b in range(0, 256, 3)], V4_NETWORKS)
    v6 = rng.sample(range(0x2001, 0x2c00), V6_NETWORKS)
    cidrs = [f"{a}.{b}.0.0/16" for a, b in v4] + [f"{p:x}:{rng.randrange(1 << 16):x}::/32" for p in v6]
    for i, cidr in enumerate(cidrs):
        code, country, region, city, tz = COUNTRIES[i % len(COUNTRIES)]
        networks[cidr] = {
            "country": {"iso_code": code, "names": {"en": country}},
            "subdivisions": [{"names": {"en": region}}],
            "city": {"names": {"en": f"{city} {i % 37}"}},
            "location": {"latitude": round(rng.uniform(-60, 70), 4), "longitude": round(rng.uniform(-170, 170), 4),
                         "time_zone": tz},
        }  # fmt: skip
    return networks


def build_bench_geo_db(path: Path) -> Path:
    from bench.geo import build_geo_db

    return build_geo_db(path, geo_networks())


def random_ip(rng: random.Random, networks: list[str]) -> str:
    """An address in one of ``networks`` (85%) or anywhere (15%, mostly unknown to the database)."""
    v6 = rng.random() < 0.3
    if rng.random() < 0.85:
        candidates = [n for n in networks if (":" in n) == v6] or networks
        net = rng.choice(candidates)
        if ":" in net:
            head = net.split("::")[0]
            return head + ":" + ":".join(f"{rng.randrange(1 << 16):x}" for _ in range(6))
        a, b = net.split(".")[:2]
        return f"{a}.{b}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if v6:
        return "2c01:" + ":".join(f"{rng.randrange(1 << 16):x}" for _ in range(7))
    return f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


# --- users and events -----------------------------------------------------------------
@dataclass(frozen=True)
class User:
    anonymous_id: str
    user_id: str | None
    user_agent: str
    ip: str
    locale: str
    timezone: str


class Workload:
    """A reproducible stream of messages from a population of users."""

    def __init__(self, seed: int = 1, users: int = 20_000, user_agents: list[str] | None = None) -> None:
        self.rng = random.Random(seed)
        agents = list(user_agents or load_user_agents())
        self.rng.shuffle(agents)  # the rank order: which agents are the common ones
        self.agents = agents
        agent_draw = Zipf(len(agents))
        networks = list(geo_networks())
        self.users = [
            User(
                anonymous_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                user_id=f"user-{n}" if self.rng.random() < 0.35 else None,
                user_agent=agents[agent_draw.draw(self.rng)],
                ip=random_ip(self.rng, networks),
                locale=self.rng.choice(LOCALES),
                timezone=self.rng.choice(TIMEZONES),
            )
            for n in range(users)
        ]
        self.user_draw = Zipf(users, 1.0)
        self.event_names = [name for name, weight in EVENTS for _ in range(weight)]
        self.clock = datetime(2026, 11, 28, 13, 0, 0, tzinfo=timezone.utc)
        self.counter = itertools.count()

    def user(self) -> User:
        return self.users[self.user_draw.draw(self.rng)]

    def _stamp(self) -> str:
        self.clock += timedelta(milliseconds=self.rng.randrange(1, 400))
        return self.clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def message(self, user: User, kind: str = "track", with_ip: bool = False) -> dict[str, Any]:
        """One message as a browser library sends it (``messageId`` left as a placeholder)."""
        rng = self.rng
        path = rng.choice(PATHS)
        sent = self._stamp()
        message: dict[str, Any] = {
            "type": kind,
            "messageId": f"{ID_PLACEHOLDER}-{next(self.counter):07d}",
            "anonymousId": user.anonymous_id,
            "originalTimestamp": sent,
            "sentAt": sent,
            "context": {
                "library": {"name": "intilery.js", "version": "1.0.0"},
                "page": {"path": path, "url": "https://shop.example" + path, "title": path.strip("/").title() or "Home",
                         "referrer": rng.choice(["", "https://www.google.com/", "https://shop.example/"])},
                "userAgent": user.user_agent,
                "locale": user.locale,
                "timezone": user.timezone,
                "screen": rng.choice([{"width": 1920, "height": 1080}, {"width": 390, "height": 844},
                                      {"width": 1440, "height": 900}, {"width": 820, "height": 1180}]),
            },
        }  # fmt: skip
        if user.user_id:
            message["userId"] = user.user_id
        if with_ip:
            message["context"]["ip"] = user.ip
        if rng.random() < 0.2:
            message["context"]["campaign"] = {"source": "newsletter", "medium": "email", "name": f"w{rng.randrange(52)}"}
        if kind == "track":
            name = rng.choice(self.event_names)
            message["event"] = name
            properties: dict[str, Any] = {"path": path}
            if "Product" in name or "Order" in name:
                properties.update(
                    product_id=f"sku-{rng.randrange(5000):05d}",
                    name=rng.choice(["Trail Runner 2", "City Tote", "Rain Jacket", "Wool Socks"]),
                    price=round(rng.uniform(3, 250), 2),
                    currency=rng.choice(CURRENCIES),
                    quantity=rng.randrange(1, 4),
                    category=rng.choice(["shoes", "bags", "outerwear", "accessories"]),
                )
            if name == "Products Searched":
                properties["query"] = rng.choice(["running shoes", "tote", "waterproof", "gift for dad"])
            message["properties"] = properties
        elif kind == "page":
            message["name"] = message["context"]["page"]["title"]
            message["properties"] = {"path": path, "url": message["context"]["page"]["url"]}
        elif kind == "identify":
            message["userId"] = user.user_id or f"user-{user.anonymous_id[:8]}"
            message["traits"] = {"email": f"{message['userId']}@example.com", "plan": rng.choice(["free", "pro"])}
        return message

    def kind(self) -> str:
        r = self.rng.random()
        return "track" if r < 0.6 else "page" if r < 0.95 else "identify"

    def messages(self, count: int, with_ip: bool = False) -> Iterator[dict[str, Any]]:
        for _ in range(count):
            yield self.message(self.user(), self.kind(), with_ip=with_ip)


# --- request files for the load generator ---------------------------------------------
def write_requests(path: Path, mode: str, count: int, seed: int = 1, batch_size: int = 100) -> Path:
    """Write ``count`` requests, one a line: ``path <TAB> X-Forwarded-For <TAB> User-Agent <TAB> body``.

    ``single``: one ``track`` per request to /v1/track, the browser's address in
    X-Forwarded-For (the collector trusts 127.0.0.1 as its proxy). ``batch``: ``batch_size``
    mixed messages to /v1/batch from a server-side source that relays ``context.ip``.
    """
    work = Workload(seed)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(count):
            if mode == "single":
                user = work.user()
                body = orjson.dumps(work.message(user, "track"))
                out.write(f"/v1/track\t{user.ip}\t{user.user_agent}\t{body.decode()}\n")
            else:
                body = orjson.dumps({"batch": list(work.messages(batch_size, with_ip=True)), "sentAt": work._stamp()})
                out.write(f"/v1/batch\t-\tintilery-relay/1.0\t{body.decode()}\n")
    return path


def distinct_agents(path: Path) -> int:
    """How many distinct user agents a request file holds (for the README)."""
    agents = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            body = orjson.loads(line.rstrip("\n").split("\t", 3)[3])
            for message in body.get("batch", [body]):
                agents.add(message["context"]["userAgent"])
    return len(agents)
