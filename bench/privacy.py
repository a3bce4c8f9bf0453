"""Privacy requests: what an erasure costs, and what the suppression check costs ingest.

    python -m bench.privacy                 # 200 MB of segments, about a minute
    python -m bench.privacy --mb 50 --repeat 3

*Erase*: a data directory of gzipped segments (the workload's events, 16 MB segments over
several hours) is erased by the real job (``collector.privacy.erase.Job``, no collector
running): once for a subject that is in no segment (every segment scanned by the pre-filter,
none rewritten: MB/s *scanned*), once for a person with events in every segment (every
segment scanned and rewritten: MB/s *rewritten*). MB are of uncompressed NDJSON; the gzipped
size is beside them.

*Ingest*: µs per event of ``Pipeline.process`` (``bench.micro``'s warm, no-geo case) with no
suppression list, an empty one and one of 5,000 hashes none of the events match, in the
same run (best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from bench.micro import make_batches, run_case
from bench.workload import Workload
from collector.ingest.enrich.useragent import UserAgentParser
from collector.ingest.pipeline import Pipeline
from collector.log.files import FileStore
from collector.log.layout import hour_partition
from collector.privacy.erase import Context, Job
from collector.privacy.regulations import Regulations
from collector.privacy.suppression import Suppression

SUBJECT = {"userId": "bench-erased-person", "email": "erased@bench.example"}


def build(data_dir: Path, megabytes: int, hours: int = 8) -> tuple[int, int]:
    """Segments holding ``megabytes`` MB of events, the subject's among them; (bytes, subject's events)."""
    work = Workload(seed=5)
    start = time.time() - (hours + 1) * 3600
    target, written, mine = megabytes * 1_000_000, 0, 0

    async def write() -> None:
        nonlocal written, mine
        store = FileStore(data_dir, fsync="never", segment_max_bytes=16 * 1024 * 1024, max_pending_bytes=1 << 30)
        await store.start()
        n = 0
        while written < target:
            lines = []
            for message in work.messages(1000):
                n += 1
                message["messageId"] = f"m-{n}"
                lines.append(orjson.dumps(message) + b"\n")
            mine += 1
            lines.append(orjson.dumps({"type": "identify", "messageId": f"s-{n}", **SUBJECT,
                                       "traits": {"email": SUBJECT["email"]}}) + b"\n")  # fmt: skip
            written += sum(map(len, lines))
            hour = hour_partition(start + (written * hours // target) * 3600)
            await store.append(lines, partition=hour)
        await store.close()

    asyncio.run(write())
    return written, mine


def erase(data_dir: Path, subject: str) -> tuple[float, dict]:
    regulations = Regulations(data_dir / "regulations")
    suppression = Suppression(data_dir)
    record = regulations.create("DELETE_ONLY", "USER_ID", sorted(suppression.digests([("user_id", subject)])),
                                [["user_id", subject]])  # fmt: skip
    started = time.perf_counter()
    Job(regulations, record, Context(data_dir=data_dir, suppression=suppression)).run()
    return time.perf_counter() - started, record["stores"]["events"]


def ingest(repeat: int) -> dict[str, float]:
    work = Workload(seed=3)
    warmup, measured = make_batches(work, 10_000, 100, "w"), make_batches(work, 20_000, 100, "m")
    agents = UserAgentParser()
    for batch in warmup + measured:
        for message in orjson.loads(batch):
            agents.parse(message["context"]["userAgent"][:1024])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Suppression(Path(tmp) / "a"), Suppression(Path(tmp) / "b")
        full.change(add=full.digests(("user_id", f"someone-else-{n}") for n in range(5000)))
        cases = [("no list", Pipeline(agents, None)), ("empty list", Pipeline(agents, None, None, empty)),
                 ("5,000 hashes", Pipeline(agents, None, None, full))]  # fmt: skip
        for _ in range(repeat):  # interleaved, so a load on the machine hits every case alike
            for name, pipeline in cases:
                results.setdefault(name, []).extend(t[0] for t in run_case(pipeline, measured, warmup, 1))
    return {name: min(values) for name, values in results.items()} | {
        f"{name} (median)": statistics.median(values) for name, values in results.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="privacy requests: erase MB/s, suppression cost at ingest")
    parser.add_argument("--mb", type=int, default=200, help="MB of events (uncompressed) to erase from")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data", help="build the segments here once, and reuse them (with --scan-only)")
    parser.add_argument("--scan-only", action="store_true",
                        help="only the erase that finds the subject in no segment, --repeat times (MB/s each)")
    args = parser.parse_args(argv)
    if args.scan_only:
        data_dir = Path(args.data or tempfile.mkdtemp()) / "data"
        if not (data_dir / "events").exists():
            build(data_dir, args.mb)
        size = sum(p.stat().st_size for p in (data_dir / "events").rglob("*.gz"))
        runs = [erase(data_dir, "nobody-has-this-id")[0] for _ in range(args.repeat)]
        print(f"scan only: {size / 1e6:.0f} MB gzipped; MB/s of events (uncompressed {args.mb} MB): "
              + ", ".join(f"{args.mb / s:.0f}" for s in runs))  # fmt: skip
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        size, mine = build(data_dir, args.mb)
        gz = sum(p.stat().st_size for p in (data_dir / "events").rglob("*.gz"))
        files = len(list((data_dir / "events").rglob("*.gz")))
        mb, gz_mb = size / 1e6, gz / 1e6
        scan_s, scan = erase(data_dir, "nobody-has-this-id")
        assert scan["rewritten_files"] == 0
        erase_s, erased = erase(data_dir, SUBJECT["userId"])
        assert erased["removed"] == mine and erased["rewritten_files"] == files, erased
    print(f"erase: {mb:.0f} MB of events ({gz_mb:.0f} MB gzipped) in {files} segments; the person in every one")
    print("| erase | segments | MB (gzipped) | seconds | MB/s (gzipped MB/s) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| scanned only (subject in none) | {files} | {mb:.0f} ({gz_mb:.0f}) | {scan_s:.2f} | "
          f"{mb / scan_s:.0f} ({gz_mb / scan_s:.1f}) |")  # fmt: skip
    print(f"| scanned and rewritten (subject in all) | {files} | {mb:.0f} ({gz_mb:.0f}) | {erase_s:.2f} | "
          f"{mb / erase_s:.0f} ({gz_mb / erase_s:.1f}) |")  # fmt: skip
    rows = ingest(args.repeat)
    print(f"ingest, Pipeline.process (warm UA cache, no geo), µs/event, best (median) of {args.repeat}:")
    for name in ("no list", "empty list", "5,000 hashes"):
        print(f"| {name} | {rows[name]:.2f} ({rows[name + ' (median)']:.2f}) | {rows[name] / rows['no list']:.2f}x |")


if __name__ == "__main__":
    main()
