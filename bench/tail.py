"""``intilery tail`` on a large store: time to start following, and the work done while idle.

    python -m bench.tail                 # 1 GB of gzipped segments under a temporary directory
    python -m bench.tail --gb 0.2 --dir /var/tmp/tail-store   # smaller, kept for the next run

The store is closed segments as the file store leaves them (``part-*.ndjson.gz``, 40 of
them per GB), plus one open segment. Rows:

- *reader start*: ``Reader.at_end`` and its first read, in this process (wall and CPU time);
- *tail start*: ``intilery tail`` started as a subprocess, an event appended to the open
  segment, the time until it is printed (process start-up included);
- *tail idle*: the CPU time (``/proc/<pid>/stat``) the running ``intilery tail`` used over
  ``--idle`` seconds with nothing written, and the reader's counts of files opened,
  segments decompressed and bytes read over 100 polls of the unchanged store;
- *baseline*: reading every closed segment through gzip once, which the previous follower
  did at start (to find the end) and again on every 0.3 s poll; ``--compare TREE`` also
  runs the *tail* rows with the ``intilery tail`` of another source tree.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from collector.log.layout import segment_name
from collector.log.reader import Reader

PARTITION = "dt=2026-11-28/hr=13"
SEGMENT_GZ_BYTES = 25 * 1024 * 1024  # about what a 128 MB segment of real events compresses to


def build_store(data_dir: Path, gigabytes: float) -> int:
    """Closed segments adding up to ``gigabytes`` of gzip, and one open segment; returns the .gz bytes."""
    directory = data_dir / "events" / PARTITION
    directory.mkdir(parents=True, exist_ok=True)
    existing = sum(p.stat().st_size for p in directory.glob("*.gz"))
    if existing >= gigabytes * 1e9 * 0.99:
        return existing
    # one segment's content, written under every name: random padding keeps gzip near 1.6x,
    # so the store is 1 GB of gzip without generating 8 GB of events
    lines, size = [], 0
    n = 0
    while size < SEGMENT_GZ_BYTES * 1.6:
        event = {
            "type": "track", "event": "Product Viewed", "userId": f"u{n % 5000}", "messageId": f"itl-{n}",
            "receivedAt": "2026-11-28T13:04:05.121Z", "properties": {"sku": f"sku-{n % 977}", "price": 12.5},
            "context": {"page": {"path": "/product.html"}, "ip": "203.0.113.0"},
            "pad": base64.b64encode(os.urandom(150)).decode(),
        }  # fmt: skip
        line = orjson.dumps(event) + b"\n"
        lines.append(line)
        size += len(line)
        n += 1
    blob = gzip.compress(b"".join(lines), compresslevel=1, mtime=0)
    total, seq = 0, 1
    while total < gigabytes * 1e9:
        (directory / (segment_name("bench_0", seq) + ".gz")).write_bytes(blob)
        total += len(blob)
        seq += 1
    (directory / segment_name("bench_1", 1)).write_bytes(lines[0])
    return total


def reader_start(root: Path) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    reader = Reader.at_end(root)
    assert list(reader.read()) == []
    start = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    before = dict(reader.stats)
    for _ in range(100):
        list(reader.read())
    idle = {k: reader.stats[k] - before.get(k, 0) for k in ("listed", "stat", "opened", "decompressed", "bytes")}
    return {**start, "idle_100_polls": idle}


def tail_process(data_dir: Path, idle: float, source: str | None = None) -> dict:
    """Start ``intilery tail``, append one event, time until it is printed; then its CPU while idle."""
    open_segment = data_dir / "events" / PARTITION / segment_name("bench_1", 1)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "tail", "--data-dir", str(data_dir.resolve()), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": source} if source else None, cwd=source,
    )  # fmt: skip
    try:
        marker = b'"messageId":"bench-marker"'
        deadline = time.monotonic() + 60
        printed = None
        while printed is None and time.monotonic() < deadline:
            with open(open_segment, "ab") as fh:  # appended until the tail, once running, prints it
                fh.write(orjson.dumps({"type": "track", "event": "Marker", "messageId": "bench-marker"}) + b"\n")
            ready, _, _ = select.select([proc.stdout], [], [], 0.05)
            if ready and marker in os.read(proc.stdout.fileno(), 1 << 16):
                printed = time.perf_counter() - started
        if printed is None:
            raise SystemExit("intilery tail printed nothing within 60 s")
        time.sleep(1.0)  # let it drain what it printed
        os.read(proc.stdout.fileno(), 1 << 20) if select.select([proc.stdout], [], [], 0)[0] else None
        cpu_before = _cpu_seconds(proc.pid)
        time.sleep(idle)
        cpu_idle = _cpu_seconds(proc.pid) - cpu_before
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"first_event_printed_s": printed, "idle_s": idle, "idle_cpu_s": cpu_idle}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def baseline(root: Path) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    size = 0
    for path in sorted(root.glob("**/*.ndjson.gz")):
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                size += len(chunk)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "bytes_inflated": size}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="gigabytes of gzipped segments (default 1)")
    parser.add_argument("--dir", help="keep the store here (reused when big enough) instead of a temporary one")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle tail measured (default 10)")
    parser.add_argument("--compare", metavar="SOURCE_TREE",
                        help="also run the 'intilery tail' of another source tree (e.g. git archive of an older commit)")  # fmt: skip
    args = parser.parse_args(argv)
    data_dir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="intilery-tail-"))
    try:
        gz_bytes = build_store(data_dir, args.gb)
        results = {
            "store_gz_bytes": gz_bytes,
            "segments": len(list((data_dir / "events").glob("**/*.gz"))),
            "reader_start": reader_start(data_dir / "events"),
            "tail": tail_process(data_dir, args.idle),
            "baseline_decompress_all": baseline(data_dir / "events"),
        }
        if args.compare:
            results["tail_of_" + args.compare] = tail_process(data_dir, args.idle, args.compare)
    finally:
        if not args.dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    base = results["baseline_decompress_all"]["wall_s"]
    results["start_vs_baseline"] = results["reader_start"]["wall_s"] / base if base else None
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    return results


if __name__ == "__main__":
    main()
