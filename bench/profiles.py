"""Profiles: rebuild speed, ``/traits`` latency with many profiles, ingest with the builder on and off.

    python -m bench.profiles                       # every row (1M profiles: about 10 minutes)
    python -m bench.profiles --profiles 100000     # smaller
    python -m bench.profiles --only rebuild

Rows:

- *rebuild*: ``Builder.catch_up`` into a new SQLite file from closed (gzipped) local segments
  of a generated log (visitors browsing anonymously, signing in, ordering; 2 to 3 identifiers
  each), pinned to one core (core 0 unless started pinned, e.g. ``taskset -c 1``): events/s of wall time and
  of CPU time of this process;
- *traits*: ``GET .../user_id:<id>/traits`` for random people of a database of ``--profiles``
  profiles, one keep-alive connection to ``intilery serve --no-profiles``: p50 / p99 / max ms
  seen by the client (the database is built with the rebuild above, kept under ``--dir``);
- *visible*: ``intilery serve`` with the in-process builder, one idle collector: the time from
  a ``200`` until ``/traits`` shows the event (polled every 10 ms), over ``--visible`` events;
- *keep-up*: batched ingest (``wrk``, 8 connections, fsync=always, pinned as ``bench.run`` pins:
  the collector on core 0, the load on core 1) with the builder on and with ``--no-profiles``,
  in the same run: events/s of each, the builder's lag (events acknowledged and not yet in
  the profile database) sampled every second, and how long it takes to catch up after.
  ``--builder-cpu 1`` moves the in-process builder to core 1: off the collector's core,
  sharing the load generator's.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import orjson

from collector.log.layout import segment_name
from collector.profiles.builder import Builder
from collector.profiles.store import SqliteStore

PARTITION = "dt=2026-11-28/hr=13"
PER_SEGMENT = 200_000


def person_events(p: int, rng: random.Random) -> list[dict]:
    """One visitor: anonymous pages, a sign-in, a few events, sometimes an order."""
    anon, user, t = f"a-{p:08d}", f"u-{p:08d}", rng.randint(0, 3_000_000)
    context = {"page": {"url": "https://shop.example/", "referrer": "https://search.example/"},
               "campaign": {"source": "news"}, "userAgent": "Mozilla/5.0", "browser": {"name": "Chrome"},
               "os": {"name": "Linux"}, "device": {"type": "desktop"}, "location": {"city": "London"}}  # fmt: skip

    def at() -> str:
        nonlocal t
        t += rng.randint(1, 600)
        return f"2026-11-{1 + t // 86400 % 28:02d}T{t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d}.000Z"

    events = [{"type": "page", "anonymousId": anon, "name": "Home", "context": context, "timestamp": at()}]
    events.append({"type": "track", "anonymousId": anon, "event": "Product Viewed", "properties": {"sku": "m1"},
                   "context": context, "timestamp": at()})  # fmt: skip
    events.append({"type": "identify", "anonymousId": anon, "userId": user, "context": context, "timestamp": at(),
                   "traits": {"email": f"p{p}@example.com", "name": f"Person {p}"}})  # fmt: skip
    for _ in range(rng.randint(0, 4)):
        events.append({"type": "track", "anonymousId": anon, "userId": user, "event": "Product Added",
                       "context": context, "timestamp": at()})  # fmt: skip
    if rng.random() < 0.3:
        events.append({"type": "track", "userId": user, "event": "Order Completed", "context": context,
                       "properties": {"revenue": 42.5, "currency": "GBP"}, "timestamp": at()})  # fmt: skip
    return events


def light_events(p: int, rng: random.Random) -> list[dict]:
    """One identify a person (``--light``: many profiles quickly, for the lookup row)."""
    return [{"type": "identify", "anonymousId": f"a-{p:08d}", "userId": f"u-{p:08d}", "timestamp": "2026-11-28T13:00:00.000Z",
             "traits": {"email": f"p{p}@example.com", "plan": rng.choice(["free", "pro"])}}]  # fmt: skip


def write_log(data_dir: Path, people: int, seed: int = 1, light: bool = False) -> int:
    """Closed segments of ``people`` visitors' events (as the file store leaves them); the event count."""
    directory = data_dir / "events" / PARTITION
    directory.mkdir(parents=True, exist_ok=True)
    rng, lines, seq, count = random.Random(seed), [], 0, 0
    for p in range(people):
        for event in (light_events if light else person_events)(p, rng):
            count += 1
            event.update(messageId=f"itl-{count}", receivedAt=event["timestamp"], source="web")
            lines.append(orjson.dumps(event))
        if len(lines) >= PER_SEGMENT or p == people - 1:
            seq += 1
            path = directory / (segment_name("bench_0", seq) + ".gz")
            path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1))
            lines = []
    return count


def rebuild(data_dir: Path, db: Path) -> dict:
    if db.exists():
        db.unlink()
    store = SqliteStore(db, building=True)
    wall, cpu = time.perf_counter(), time.process_time()
    builder = Builder(store, data_dir)
    builder.catch_up()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    profiles = len(store.profile_ids())
    store.close()
    events = builder.count
    return {"events": events, "profiles": profiles, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "events_per_s": round(events / wall), "events_per_cpu_s": round(events / cpu)}  # fmt: skip


async def traits_latency(data_dir: Path, db: Path, people: int, lookups: int) -> dict:
    import aiohttp

    from bench.processes import CollectorProcess

    token = "at_bench"
    work = Path(tempfile.mkdtemp(prefix="bench-traits-"))
    collector = CollectorProcess(work, [{"name": "web", "write_key": "wk"}], args=["--no-profiles"], data_dir=data_dir,
                                 access_token=token, profiles_db=str(db)).start()  # fmt: skip
    rng = random.Random(2)
    times: list[float] = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            base = f"{collector.url}/v1/spaces/default/collections/users/profiles"
            for n in range(lookups + 200):
                url = f"{base}/user_id:u-{rng.randrange(people):08d}/traits"
                started = time.perf_counter()
                async with session.get(url) as answer:
                    assert answer.status == 200, await answer.text()
                    await answer.read()
                if n >= 200:  # the first ones warm the page cache
                    times.append((time.perf_counter() - started) * 1000)
    finally:
        collector.stop()
        shutil.rmtree(work, ignore_errors=True)
    times.sort()
    return {"profiles": people, "lookups": lookups, "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[int(len(times) * 0.99)], 2), "max_ms": round(times[-1], 2)}  # fmt: skip


def visible_latency(events: int) -> dict:
    import json
    import urllib.request

    from bench.processes import CollectorProcess

    work = Path(tempfile.mkdtemp(prefix="bench-visible-"))
    collector = CollectorProcess(work, [{"name": "web", "write_key": "wk"}], access_token="at_bench").start()
    url = f"{collector.url}/v1/spaces/default/collections/users/profiles/user_id:u-1/traits"
    times = []

    def count() -> int:
        request = urllib.request.Request(url, headers={"Authorization": "Bearer at_bench"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return json.loads(answer.read())["traits"]["event_count"]
        except OSError:
            return 0

    try:
        for n in range(1, events + 1):
            body = json.dumps({"type": "track", "event": "Clicked", "userId": "u-1"}).encode()
            request = urllib.request.Request(collector.url + "/v1/track", data=body,
                                             headers={"Content-Type": "application/json", "X-Write-Key": "wk"})  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            acknowledged = time.perf_counter()
            deadline = acknowledged + 30
            while count() < n:
                if time.perf_counter() > deadline:
                    raise SystemExit("an event did not show within 30 s")
                time.sleep(0.01)
            times.append((time.perf_counter() - acknowledged) * 1000)
    finally:
        collector.stop()
        shutil.rmtree(work, ignore_errors=True)
    times.sort()
    return {"events": events, "p50_ms": round(statistics.median(times)), "max_ms": round(times[-1])}


def keep_up(seconds: float, connections: int = 8, builder_cpu: int | None = None) -> dict:
    from bench.run import BATCH_SIZE, RELAY_KEY, Scenario, Server, _children, wrk
    from bench.workload import build_bench_geo_db, write_requests

    work = Path(tempfile.mkdtemp(prefix="bench-keepup-"))
    geo = build_bench_geo_db(work / "geo.mmdb")
    batch = write_requests(work / "batch.txt", "batch", 300, seed=2, batch_size=BATCH_SIZE)
    out: dict = {}
    try:
        for n, profiles in enumerate((False, True, False, True)):
            scenario = Scenario("keep-up", "collector", "batch", "always", connections=connections, profiles=profiles)
            server = Server(scenario, work / f"r{n}", geo)
            db = work / f"r{n}" / "data" / "profiles.db"
            lags: list[int] = []
            done = threading.Event()

            def committed() -> int:
                try:
                    store = SqliteStore(db) if db.exists() else None
                except Exception:  # created meanwhile
                    return 0
                if store is None:
                    return 0
                try:
                    rows = store._all("SELECT events FROM checkpoint")
                finally:
                    store.close()
                return rows[0][0] if rows else 0

            def sample() -> None:
                while not done.wait(1.0):
                    lags.append(int(server.accepted() - committed()))

            try:
                watcher = threading.Thread(target=sample)
                if profiles:
                    if builder_cpu is not None:
                        _move_builder(server.proc.pid, _children, builder_cpu)
                    watcher.start()
                run = wrk(server.url, batch, RELAY_KEY, seconds, connections, f"k{n:03x}")
                done.set()
                if profiles:
                    watcher.join()
                    accepted, started = server.accepted(), time.perf_counter()
                    deadline = started + 600
                    while committed() < accepted and time.perf_counter() < deadline:
                        time.sleep(0.2)
                    catch_up = time.perf_counter() - started
            finally:
                server.stop()
            rate = (run["requests"] - run["non2xx"]) * BATCH_SIZE / (run["duration_us"] / 1e6)
            row = out.setdefault("builder on" if profiles else "builder off", [])
            row.append({"events_per_s": round(rate)} | ({"lag_max": max(lags or [0]), "lag_end": (lags or [0])[-1],
                                                         "catch_up_s": round(catch_up, 1)} if profiles else {}))  # fmt: skip
            print(f"  keep-up {'on' if profiles else 'off'}: {row[-1]}", flush=True)
        on = statistics.median(r["events_per_s"] for r in out["builder on"])
        off = statistics.median(r["events_per_s"] for r in out["builder off"])
        out["ratio"] = round(on / off, 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _move_builder(pid: int, children, cpu: int) -> None:
    """Move the in-process builder, the collector's child started by multiprocessing's ``spawn``
    (``spawn_main``; its resource tracker, another child, is left alone), every thread of it, to ``cpu``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in children(pid):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as fh:
                    if b"spawn_main" not in fh.read():
                        continue
                for task in os.listdir(f"/proc/{child}/task"):
                    os.sched_setaffinity(int(task), {cpu})
                return
            except OSError:  # gone meanwhile (ProcessLookupError is one)
                continue
        time.sleep(0.1)
    raise RuntimeError("the collector started no builder process within 30 s")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000, help="people in the generated log (default 1M)")
    parser.add_argument("--lookups", type=int, default=5_000)
    parser.add_argument("--light", action="store_true", help="one identify a person (many profiles, quickly)")
    parser.add_argument("--dir", help="keep the log and database here (reused when present)")
    parser.add_argument("--only", choices=("rebuild", "traits", "visible", "keep-up"))
    parser.add_argument("--keep-up-seconds", type=float, default=30, help="seconds of load per keep-up run")
    parser.add_argument("--builder-cpu", type=int, help="keep-up: the builder moved to this core (1: off the collector's, with the load)")
    parser.add_argument("--visible", type=int, default=30, help="events timed from their 200 to the profile")
    args = parser.parse_args(argv)
    if args.only == "keep-up":
        result = keep_up(args.keep_up_seconds, builder_cpu=args.builder_cpu)
        print(orjson.dumps(result).decode(), flush=True)
        return {"keep_up": result}
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})  # one core, as the target says (``taskset -c N`` picks another)
    if args.only == "visible":
        result = visible_latency(args.visible)
        print(orjson.dumps(result).decode(), flush=True)
        return {"visible": result}
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-profiles-"))
    data_dir, db = root / "data", root / "profiles.db"
    results: dict = {}
    if not (data_dir / "events").exists():
        results["log_events"] = write_log(data_dir, args.profiles, light=args.light)
    if args.only in (None, "rebuild") or not db.exists():
        results["rebuild"] = rebuild(data_dir, db)
        print(orjson.dumps(results["rebuild"]).decode(), flush=True)
    if args.only in (None, "traits"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        results["traits"] = asyncio.run(traits_latency(data_dir, db, args.profiles, args.lookups))
        print(orjson.dumps(results["traits"]).decode(), flush=True)
    if args.only is None:
        results["visible"] = visible_latency(args.visible)
        print(orjson.dumps(results["visible"]).decode(), flush=True)
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
