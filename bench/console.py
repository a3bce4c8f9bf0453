"""Ingest with open consoles that never read, against ingest with none, in the same run.

    python -m bench.console              # 3 rounds of both pairs (~3 min)
    python -m bench.console --quick      # 1 round, short runs

Each round measures, back to back and with the same inputs and pinning as ``bench.run``
(collector on CPU 0, ``wrk`` on CPU 1, ``fsync = always``), the collector with no console
and the collector with ``--consoles`` (10) streams of ``GET /console/stream`` open that read
their response headers and then nothing: each of them has the console's follower read and
fan out every event stored, their queues full, the rest dropped and counted. The ratio is
events/s with the consoles over events/s without, per round; the target (issue 15) is a
median of at least 0.95. The machine is shared, so the ratio of events per CPU-second (the
server's CPU time, the console's reading included) is printed too: it moves less with other
load than events/s does.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path

TARGET = 0.95


def idle_viewer(port: int, token: str, timeout: float = 30) -> socket.socket:
    """A console stream that reads its headers and never anything more (a small receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /console/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())  # fmt: skip
    head = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in head:
        if time.monotonic() > deadline:
            raise RuntimeError("the console stream did not answer")
        chunk = sock.recv(1024)
        if not chunk:
            raise RuntimeError(f"the console stream closed: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the console stream answered {head[:80]!r}")
    return sock


def main(argv: list[str] | None = None) -> int:
    from bench.run import BATCH_SIZE, Scenario, measure
    from bench.workload import build_bench_geo_db, write_requests

    parser = argparse.ArgumentParser(description="ingest with consoles that never read against ingest with none")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--consoles", type=int, default=10)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3 if args.quick else 5)
    warmup = 1 if args.quick else 2
    pairs = [
        (Scenario("batch of 100, no console", "collector", "batch", "always", connections=8),
         Scenario(f"batch of 100, {args.consoles} consoles that never read", "collector", "batch", "always",
                  connections=8, consoles=args.consoles)),
        (Scenario("single, no console", "collector", "single", "always", connections=64),
         Scenario(f"single, {args.consoles} consoles that never read", "collector", "single", "always",
                  connections=64, consoles=args.consoles)),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="intilery-bench-console-") as tmp:
        workdir = Path(tmp)
        geo = build_bench_geo_db(workdir / "bench-geo.mmdb")
        files = {
            "single": write_requests(workdir / "single.txt", "single", 20_000, seed=1),
            "batch": write_requests(workdir / "batch.txt", "batch", 300, seed=2, batch_size=BATCH_SIZE),
        }
        results: dict[str, list[tuple[float, float]]] = {}
        per_cpu: dict[str, list[float]] = {}
        for r in range(rounds):
            for n, (base, with_consoles) in enumerate(pairs):
                a = measure(base, workdir / f"r{r}p{n}a", files, geo, warmup, seconds)
                b = measure(with_consoles, workdir / f"r{r}p{n}b", files, geo, warmup, seconds)
                results.setdefault(base.mode, []).append((a.events_per_s, b.events_per_s))
                cpu_ratio = (b.events_per_s / b.server_cpu) / (a.events_per_s / a.server_cpu) if a.server_cpu and b.server_cpu else 0
                per_cpu.setdefault(base.mode, []).append(cpu_ratio)
                print(f"round {r + 1} {base.mode}: {a.events_per_s:,.0f} events/s without (server CPU {a.server_cpu:.2f}), "
                      f"{b.events_per_s:,.0f} with {args.consoles} consoles (server CPU {b.server_cpu:.2f}): "
                      f"{b.events_per_s / a.events_per_s:.3f}, per CPU-s {cpu_ratio:.3f}; errors {a.errors}/{b.errors}",
                      flush=True)  # fmt: skip
    print()
    print(f"| mode | events/s, no console | events/s, {args.consoles} consoles that never read | ratio (median) | per round "
          "| events per CPU-s ratio (median) |")
    print("|---|--:|--:|--:|---|--:|")
    ok = True
    for mode, runs in results.items():
        ratios = [b / a if a else 0 for a, b in runs]
        median = statistics.median(ratios)
        ok &= median >= TARGET
        print(f"| {mode} | {statistics.median(a for a, _ in runs):,.0f} | {statistics.median(b for _, b in runs):,.0f} "
              f"| {median:.3f} | {' '.join(f'{x:.3f}' for x in ratios)} | {statistics.median(per_cpu[mode]):.3f} |")  # fmt: skip
    print(f"\ntarget: ratio >= {TARGET}: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
