"""Audiences: ``intilery audiences preview`` of a two-condition audience over a large log.

    python -m bench.audiences --profiles 1000000 --events 10000000 --dir /tmp/ba10m   # the issue's size
    python -m bench.audiences --profiles 100000 --events 1000000                      # smaller

Rows (one run, the same log and database):

- *scan*, the baseline: DuckDB reading every line of the log once and counting them
  (``read_json_objects`` over the same segments, all cores): the floor of anything that reads
  the whole log;
- *reader*: the log's own ``Reader`` (Python) over the first tenth of the segments, events/s: what
  reading the log line by line, as the builder does, would cost;
- *preview*: ``intilery audiences preview`` (the command, a new process) of the draft below:
  wall seconds, CPU seconds, peak RSS, people matched; events/s of wall time, so a smaller run
  extrapolates. Two rounds.

The draft, two conditions (a count in a window, and another event in another)::

    all:
      - {event: Order Completed, count: {op: gte, value: 2}, within: 30d}
      - {event: Product Viewed, within: 7d}

The log: ``--events`` events over the 60 days before now, one closed (gzipped) segment an hour
(1,440), each event a random person's (``--profiles``), signed in (``userId``) seven times in ten,
else anonymous; a mix of e-commerce events (page 40%, Product Viewed 25%, Product Added 12%,
Checkout Started 10%, Signed In 8%, Order Completed 5%) with properties and a page context, about
420 bytes a line. The profile database: each person's two identifiers (``user_id`` and
``anonymous_id``) in one profile, written directly in the builder's tables (``identifiers``,
``profiles``) as the builder would have filed them (node ids by ``rules.node_id``); the profiles'
states are left empty, which this draft does not read (building them with the builder would take
longer than the whole bench: see *Profiles* in bench/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

from collector.log.layout import hour_partition, iso_ms, segment_name
from collector.log.reader import Reader
from collector.profiles.rules import node_id
from collector.profiles.store import SqliteStore

HOURS = 60 * 24
MIX = (("page", None, 40), ("track", "Product Viewed", 25), ("track", "Product Added", 12),
       ("track", "Checkout Started", 10), ("track", "Signed In", 8), ("track", "Order Completed", 5))  # fmt: skip
DRAFT = """key: engaged_buyers
name: Engaged buyers
condition:
  all:
    - event: Order Completed
      count: {op: gte, value: 2}
      within: 30d
    - event: Product Viewed
      within: 7d
"""


def _hour(args: tuple) -> int:
    """One hour's segment: ``n`` events of random people (seeded by the hour)."""
    root, hour, n, people, start = args
    rng = random.Random(hour)
    kinds = [(k, name) for k, name, weight in MIX for _ in range(weight)]
    context = {"page": {"path": "/p", "url": "https://shop.example/p", "referrer": "https://search.example/"},
               "library": {"name": "intilery.js", "version": "1.0.0"}, "ip": "203.0.113.0",
               "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"}  # fmt: skip
    base = start + hour * 3600
    lines = []
    for i in range(n):
        p = rng.randrange(people)
        kind, name = rng.choice(kinds)
        when = iso_ms(base + rng.random() * 3600)
        event = {"type": kind, "anonymousId": f"a-{p:08d}", "messageId": f"m-{hour}-{i}", "timestamp": when,
                 "receivedAt": when, "source": "web", "context": context}  # fmt: skip
        if rng.random() < 0.7:
            event["userId"] = f"u-{p:08d}"
        if name:
            event["event"] = name
            event["properties"] = {"sku": f"sku-{rng.randrange(500)}", "price": rng.randrange(5, 200)}
            if name == "Order Completed":
                event["properties"]["revenue"] = rng.randrange(10, 500)
        else:
            event["name"] = "Product"
        lines.append(orjson.dumps(event))
    directory = Path(root) / "events" / hour_partition(base)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (segment_name("bench", hour) + ".gz")).write_bytes(gzip.compress(b"\n".join(lines) + b"\n", 1))
    return n


def generate(root: Path, people: int, events: int) -> None:
    start = (time.time() // 3600 - HOURS) * 3600
    per_hour = [events // HOURS + (1 if h < events % HOURS else 0) for h in range(HOURS)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        written = sum(pool.map(_hour, [(str(root), h, per_hour[h], people, start) for h in range(HOURS)], chunksize=8))
    store = SqliteStore(root / "profiles.db")
    store.begin()
    for first in range(0, people, 50_000):
        idents, profiles = [], []
        for p in range(first, min(people, first + 50_000)):
            user, anon = ("user_id", f"u-{p:08d}"), ("anonymous_id", f"a-{p:08d}")
            pid = node_id(user)
            when = iso_ms(start)
            idents += [(*user, pid, pid, when, when, "web", "{}"), (*anon, node_id(anon), pid, when, when, "web", "{}")]
            profiles.append((pid, "", "[]", "[]"))
        store._many("INSERT INTO identifiers (type, value, node_id, profile_id, first_seen, last_seen, source, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", idents)  # fmt: skip
        store._many("INSERT INTO profiles (profile_id, max_key, refused, merged) VALUES (?, ?, ?, ?)", profiles)
    store.commit()
    store.close()
    (root / "generated").write_text(f"{people} {written}\n")


def scan(root: Path) -> dict:
    import duckdb

    from collector.config import Config
    from collector.engage.audiences.batch import segments

    files = [str(p) for p in segments(Config(data_dir=root))]
    wall = time.perf_counter()
    (count,) = duckdb.connect().execute("SELECT count(*) FROM read_json_objects(?, format = 'newline_delimited', "
                                        "ignore_errors = true)", [files]).fetchone()  # fmt: skip
    return {"events": count, "seconds": time.perf_counter() - wall}


def reader(root: Path) -> dict:
    """The log's Reader over the first tenth of the segments."""
    first = sorted((root / "events").glob("dt=*/hr=*"))[: HOURS // 10]
    wall, n = time.perf_counter(), 0
    cpu = time.process_time()
    reading = Reader(root / "events")
    last = first[-1].relative_to(root / "events").as_posix()
    for record in reading.read():
        if record.segment.rsplit("/", 1)[0] > last:
            break
        n += 1
    reading.close()
    return {"events": n, "seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def preview(root: Path) -> dict:
    draft = root / "draft.yaml"
    draft.write_text(DRAFT)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "collector", "audiences", "preview", str(draft), "--json",
                           "--data-dir", str(root), "--profiles-db", str(root / "profiles.db")],
                          capture_output=True, text=True, cwd=root)  # fmt: skip
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    answer = orjson.loads(done.stdout)
    return {"seconds": wall, "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "rss_mb": after.ru_maxrss / 1024, "size": answer["size"], "people": answer["people"]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--dir", default="/tmp/bench-audiences", help="the log and database (reused when of the same size)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    root = Path(args.dir)
    marker = root / "generated"
    if not marker.exists() or marker.read_text().split()[:1] != [str(args.profiles)] or \
            int(marker.read_text().split()[1]) != args.events:  # fmt: skip
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        wall = time.perf_counter()
        generate(root, args.profiles, args.events)
        print(f"generated {args.events:,} events of {args.profiles:,} people in {time.perf_counter() - wall:.0f} s",
              flush=True)  # fmt: skip
    size = sum(p.stat().st_size for p in (root / "events").rglob("*.gz"))
    out = {"profiles": args.profiles, "events": args.events, "gz_mb": size / 1e6, "scan": scan(root),
           "reader": reader(root), "preview": [preview(root) for _ in range(args.rounds)]}  # fmt: skip
    best = min(out["preview"], key=lambda r: r["seconds"])
    s, r = out["scan"], out["reader"]
    print(f"log: {args.events:,} events of {args.profiles:,} people, {out['gz_mb']:,.0f} MB gzipped, "
          f"{HOURS} segments; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| row | seconds | events/s | note |\n|---|--:|--:|---|")
    print(f"| scan (DuckDB, every line once, baseline) | {s['seconds']:.1f} | {s['events'] / s['seconds']:,.0f} | {s['events']:,} lines |")
    print(f"| reader (the log's Reader, Python) | {r['seconds']:.1f} for a tenth | {r['events'] / r['seconds']:,.0f} | "
          f"{r['events']:,} events; the whole log would take {args.events / (r['events'] / r['seconds']):.0f} s |")  # fmt: skip
    for i, p in enumerate(out["preview"], 1):
        print(f"| preview, round {i} | {p['seconds']:.1f} | {args.events / p['seconds']:,.0f} | CPU {p['cpu']:.1f} s, "
              f"peak RSS {p['rss_mb']:,.0f} MB, {p['size']:,} of {p['people']:,} people match |")  # fmt: skip
    print(f"preview / scan: {best['seconds'] / s['seconds']:.1f}x")
    return out


if __name__ == "__main__":
    main()
