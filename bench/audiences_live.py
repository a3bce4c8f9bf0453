"""Audiences in the profile builder: what the live evaluation costs, and exits on time alone.

    python -m bench.audiences_live                      # 100,000 people (about 2 minutes)
    python -m bench.audiences_live --people 20000       # smaller

Rows (pinned to one core, as ``bench.profiles`` pins its rebuild):

- *fold*: ``Builder.catch_up`` of ``bench.profiles``' generated log into a new SQLite database,
  three ways in the same run: with no definitions (the baseline), with 20 audiences and 5 computed
  traits evaluated in every batch (``Live.fold`` with ``defer=False``: the light-load path, each
  batch's people evaluated in its transaction), and as a rebuild does it (full batches counted,
  everyone evaluated once when caught up). Events per CPU-second of each, and the ratio to the
  baseline.
- *next_day*: the same people's next visit (a second log, folded after the first, untimed): the
  steady state, people known and in their audiences; with no definitions and evaluated every batch.
- *expiry*: ``--people`` people each in an audience through one event whose 7-day window ends in
  the same minute; the clock moved past it, ``Live.tick`` until nobody is due: the seconds until
  every one of them has left (the issue's bound: a minute for 100,000).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from bench.profiles import write_log
from collector.engage.audiences.evaluate import epoch
from collector.engage.audiences.live import Live
from collector.engage.definitions import parse_files
from collector.profiles.builder import Builder
from collector.profiles.store import SqliteStore

# 20 audiences and 5 computed traits over what bench.profiles' visitors do (pages, products, sign-ins, orders)
TRAITS = {
    "orders": "kind: count\nevent: Order Completed\n",
    "revenue": "kind: sum\nevent: Order Completed\nproperty: properties.revenue\n",
    "added_30d": "kind: count\nevent: Product Added\nwithin: 30d\n",
    "last_sku": "kind: last\nevent: Product Viewed\nproperty: properties.sku\n",
    "currencies": "kind: unique_list\nevent: Order Completed\nproperty: properties.currency\n",
}
AUDIENCES = {
    "buyers": "condition: {event: Order Completed}",
    "recent_buyers": "condition: {event: Order Completed, within: 7d}",
    "big_spenders": "condition: {trait: revenue, op: gte, value: 40}",
    "browsers": "condition: {event: Product Viewed, within: 30d}",
    "carts": "condition: {event: Product Added, count: {op: gte, value: 2}}",
    "abandoners": "condition: {all: [{event: Product Added, within: 14d}, {not: {event: Order Completed, within: 14d}}]}",
    "signed_in": "condition: {trait: email, op: exists}",
    "anonymous": "condition: {not: {trait: email, op: exists}}",
    "named": "condition: {trait: name, op: starts_with, value: Person}",
    "heavy_adders": "condition: {trait: added_30d, op: gte, value: 3}",
    "gbp": "condition: {trait: currencies, op: contains, value: GBP}",
    "m1_viewers": "condition: {event: Product Viewed, where: {field: properties.sku, op: eq, value: m1}}",
    "repeat": "condition: {trait: orders, op: gte, value: 2}",
    "loyal": "condition: {all: [{audience: buyers}, {audience: signed_in}]}",
    "at_risk": "condition: {all: [{audience: buyers}, {not: {audience: recent_buyers}}]}",
    "window_shoppers": "condition: {all: [{audience: browsers}, {not: {audience: buyers}}]}",
    "campaign": "condition: {event: Product Viewed, where: {field: context.campaign.source, op: in, value: [news, ads]}}",
    "london": "condition: {event: Product Viewed, where: {field: context.location.city, op: eq, value: London}, within: 90d}",
    "many_pages": "condition: {trait: event_count, op: gt, value: 5}",
    "vip": "condition: {any: [{audience: repeat}, {all: [{audience: big_spenders}, {audience: heavy_adders}]}]}",
}
NOW = epoch("2026-12-01T00:00:00Z")  # the generated log's events are in November 2026


def definitions():
    texts = {f"traits/{k}.yaml": v for k, v in TRAITS.items()}
    texts.update({f"audiences/{k}.yaml": v + "\n" for k, v in AUDIENCES.items()})
    return parse_files(texts)


class EveryBatch(Live):
    """The light-load path in every batch: each batch's people evaluated in its transaction."""

    def fold(self, graph, folded, *, defer: bool = False) -> None:
        super().fold(graph, folded, defer=False)


def fold(data_dir: Path, db: Path, live: type[Live] | None, again: Path | None = None) -> dict:
    """Fold the log at ``data_dir`` (timed); with ``again``, first fold that log (untimed: the people
    are known and in their audiences) and time the fold of the next day's events, at ``data_dir``."""
    if db.exists():
        db.unlink()
    store = SqliteStore(db, building=True)
    engage = live(store, definitions(), clock=lambda: NOW) if live is not None else None

    def catch_up(log: Path) -> int:
        builder = Builder(store, log, checkpoint=str(log))
        builder.engage = engage
        builder.catch_up()
        while engage is not None and engage.tick(5_000):
            pass
        return builder.count

    if again is not None:
        catch_up(again)
    wall, cpu = time.perf_counter(), time.process_time()
    events = catch_up(data_dir)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    members = store._all("SELECT COUNT(*) FROM engage_members")[0][0]
    store.close()
    return {"events": events, "members": members, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "events_per_cpu_s": round(events / cpu)}  # fmt: skip


def next_day(data_dir: Path, people: int) -> None:
    """A second log: the same people's events of another visit (new messageIds, later times)."""
    write_log(data_dir, people, seed=2)
    for path in (data_dir / "events").rglob("*.gz"):
        lines = gzip.decompress(path.read_bytes()).splitlines()
        out = []
        for line in lines:
            event = orjson.loads(line)
            event["messageId"] = "day2-" + event["messageId"]
            event["timestamp"] = event["receivedAt"] = event["timestamp"].replace("2026-11-", "2026-12-")[:8] + \
                f"{int(event['timestamp'][8:10]) % 27 + 1:02d}" + event["timestamp"][10:]
            out.append(orjson.dumps(event))
        path.write_bytes(gzip.compress(b"\n".join(out) + b"\n", compresslevel=1))


def expiry(db: Path, people: int) -> dict:
    """``people`` people in "clicked within 7d" through one event each, all ending within one minute."""
    if db.exists():
        db.unlink()
    store = SqliteStore(db, building=True)
    texts = {"audiences/recent.yaml": "condition: {event: Clicked, within: 7d}\n"}
    clock = [NOW]
    live = Live(store, parse_files(texts), clock=lambda: clock[0])
    work = Path(tempfile.mkdtemp(prefix="bench-expiry-"))
    try:
        directory = work / "events" / "dt=2026-11-24/hr=00"
        directory.mkdir(parents=True)
        lines = [orjson.dumps({"type": "track", "event": "Clicked", "userId": f"u-{p:07d}", "messageId": f"m-{p}",
                               "source": "web", "timestamp": f"2026-11-24T00:00:{p * 60 // people:02d}.000Z"})
                 for p in range(people)]  # fmt: skip
        (directory / "part-bench_0-000001.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        builder = Builder(store, work, batch=1_000)
        builder.engage = live
        builder.catch_up()
        while live.tick():
            pass
        entered = store._all("SELECT COUNT(*) FROM engage_members")[0][0]
        clock[0] = epoch("2026-12-01T00:01:00Z")  # every window ended in the last minute
        started, cpu = time.perf_counter(), time.process_time()
        while live.tick():
            pass
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        left = entered - store._all("SELECT COUNT(*) FROM engage_members")[0][0]
        announced = store._all("SELECT COUNT(*) FROM engage_announce WHERE message LIKE '%Audience Exited%'")[0][0]
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    return {"people": people, "entered": entered, "left": left, "exits_announced": announced,
            "seconds": round(seconds, 2), "cpu_s": round(cpu, 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=100_000, help="visitors in the generated log, and people expiring")
    parser.add_argument("--only", choices=("fold", "expiry"))
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    root = Path(tempfile.mkdtemp(prefix="bench-audiences-"))
    results: dict = {}
    try:
        if args.only in (None, "fold"):
            data_dir = root / "data"
            write_log(data_dir, args.people)
            base = fold(data_dir, root / "none.db", None)
            every = fold(data_dir, root / "every.db", EveryBatch)
            rebuild = fold(data_dir, root / "rebuild.db", Live)
            results["fold"] = {"none": base, "every_batch": every, "rebuild": rebuild,
                               "every_batch_ratio": round(every["events_per_cpu_s"] / base["events_per_cpu_s"], 2),
                               "rebuild_ratio": round(rebuild["events_per_cpu_s"] / base["events_per_cpu_s"], 2)}  # fmt: skip
            print(orjson.dumps(results["fold"]).decode(), flush=True)
            day2 = root / "day2"
            next_day(day2, args.people)
            base = fold(day2, root / "none2.db", None, again=data_dir)
            every = fold(day2, root / "every2.db", EveryBatch, again=data_dir)
            results["next_day"] = {"none": base, "every_batch": every,
                                   "every_batch_ratio": round(every["events_per_cpu_s"] / base["events_per_cpu_s"], 2)}  # fmt: skip
            print(orjson.dumps(results["next_day"]).decode(), flush=True)
        if args.only in (None, "expiry"):
            results["expiry"] = expiry(root / "expiry.db", args.people)
            print(orjson.dumps(results["expiry"]).decode(), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
