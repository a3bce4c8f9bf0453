"""Destinations: delivery throughput, ingest with destinations configured, time from 200 to webhook.

    python -m bench.destinations            # every measurement, in one run (~2 min)
    python -m bench.destinations --quick    # fewer events, shorter runs

1. *delivered/s*: ``--events`` events written to a log, then ``intilery destinations run`` started
   against one receiver (its own process, answering 200 at once); events over the time from the
   first event's arrival to the last's (the process's start-up left out). Unbatched (one event a request) and batched (``batch_size: 100``).
2. *ingest*: a collector (``fsync = always``) taking batches of 100 for ``--seconds`` from 8
   connections, with no destination, one, and five (each with its own receiver), the three one after
   the other in each of ``--rounds`` rounds; the median of each round's ratio to the run with none.
3. *latency*: one event every 50 ms through ``/v1/track`` of a collector with one destination; per
   event, the receiver's arrival time minus the time its ``200`` came back: p50 and p99.

The receiver is ``python -m bench.destinations --receiver PORT``: every POST answered 200 at once,
the arrival time of each event (by messageId) kept, ``GET /stats`` gives them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SECRET = "whsec_" + base64.b64encode(b"bench-secret-bench-secret-bench!").decode()


# --- the receiver ----------------------------------------------------------------------------------
def receiver_main(port: int) -> None:
    from aiohttp import web

    arrived: dict[str, float] = {}
    requests = [0]

    async def hook(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        now = time.time()
        requests[0] += 1
        for event in body["data"]["batch"] if body["type"] == "batch" else [body["data"]]:
            arrived.setdefault(event.get("messageId"), now)
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        full = request.query.get("full") == "1"
        return web.json_response({"events": len(arrived), "requests": requests[0], **({"arrived": arrived} if full else {})})

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Receiver:
    def __init__(self, workdir: Path) -> None:
        from bench.processes import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.destinations", "--receiver", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=open(workdir / f"receiver-{self.port}.log", "wb"))  # fmt: skip
        self.wait(lambda s: True, 30)

    def stats(self, full: bool = False) -> dict | None:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats{'?full=1' if full else ''}", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def wait(self, test, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats is not None and test(stats):
                return stats
            time.sleep(0.02)
        raise RuntimeError(f"the receiver did not get there within {timeout:g} s: {self.stats()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def destination(engage: Path, name: str, url: str, **settings) -> None:
    folder = engage / "destinations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(json.dumps({"url": url, "secret": SECRET, "allow_private_network": True, **settings}))


# --- 1. delivered per second -----------------------------------------------------------------------
def delivered_per_second(workdir: Path, events: int, batch_size: int, concurrency: int) -> tuple[float, int]:
    import orjson

    run = workdir / f"deliver-{batch_size}-{uuid.uuid4().hex[:6]}"
    data, engage = run / "data", run / "engage"
    segment = data / "events" / "dt=2026-12-08/hr=02" / "part-bench_0-000001.ndjson"
    segment.parent.mkdir(parents=True)
    segment.write_bytes(b"".join(orjson.dumps({"type": "track", "event": "Order Completed", "userId": f"u{i % 500}",
                                               "messageId": f"m{i}", "source": "web", "properties": {"revenue": i},
                                               "timestamp": "2026-12-08T02:00:00.000Z"}) + b"\n" for i in range(events)))  # fmt: skip
    receiver = Receiver(run)
    destination(engage, "bench", receiver.url, batch_size=batch_size, concurrency=concurrency)
    proc = subprocess.Popen([sys.executable, "-m", "collector", "destinations", "run", "--data-dir", str(data),
                             "--engage-dir", str(engage)], stdout=subprocess.DEVNULL, stderr=open(run / "run.log", "wb"))  # fmt: skip
    try:
        stats = receiver.wait(lambda s: s["events"] >= events, 600)
        arrived = sorted(receiver.stats(full=True)["arrived"].values())
    finally:
        proc.terminate()
        proc.wait(30)
        receiver.stop()
    return (events - 1) / (arrived[-1] - arrived[0]), stats["requests"]  # from the first arrival: not the start-up


# --- 2. ingest with destinations -------------------------------------------------------------------
async def _load(url: str, seconds: float, connections: int = 8, size: int = 100) -> float:
    import aiohttp

    sent = [0]
    deadline = time.monotonic() + seconds

    async def one(client) -> None:
        while time.monotonic() < deadline:
            batch = [{"type": "track", "event": "Order Completed", "userId": f"u{uuid.uuid4().hex[:4]}",
                      "messageId": uuid.uuid4().hex, "properties": {"revenue": 1}} for _ in range(size)]  # fmt: skip
            async with client.post(url + "/v1/batch", json={"batch": batch}, headers={"X-Write-Key": "wk_bench"}) as r:
                await r.read()
                if r.status == 200:
                    sent[0] += size

    started = time.monotonic()
    async with aiohttp.ClientSession() as client:
        await asyncio.gather(*(one(client) for _ in range(connections)))
    return sent[0] / (time.monotonic() - started)


def ingest_rate(workdir: Path, destinations: int, seconds: float) -> float:
    from bench.processes import CollectorProcess

    run = workdir / f"ingest-{destinations}-{uuid.uuid4().hex[:6]}"
    run.mkdir()
    engage = run / "engage"
    engage.mkdir()
    receivers = [Receiver(run) for _ in range(destinations)]
    for i, receiver in enumerate(receivers):
        destination(engage, f"d{i}", receiver.url)
    collector = CollectorProcess(run, [{"name": "web", "write_key": "wk_bench"}], engage_dir=str(engage), fsync="always")
    collector.start()
    try:
        asyncio.run(_load(collector.url, 1.0))  # warm-up
        return asyncio.run(_load(collector.url, seconds))
    finally:
        collector.stop()
        for receiver in receivers:
            receiver.stop()


# --- 3. from the 200 to the webhook ----------------------------------------------------------------
def latency(workdir: Path, events: int) -> tuple[float, float]:
    import urllib.request

    from bench.processes import CollectorProcess

    run = workdir / "latency"
    run.mkdir()
    engage = run / "engage"
    receiver = Receiver(run)
    destination(engage, "crm", receiver.url)
    collector = CollectorProcess(run, [{"name": "web", "write_key": "wk_bench"}], engage_dir=str(engage))
    collector.start()
    answered: dict[str, float] = {}
    try:
        for i in range(events):
            mid = f"lat-{i}"
            body = json.dumps({"event": "Order Completed", "userId": "u1", "messageId": mid}).encode()
            request = urllib.request.Request(collector.url + "/v1/track", data=body,
                                             headers={"Content-Type": "application/json", "X-Write-Key": "wk_bench"})  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            answered[mid] = time.time()
            time.sleep(0.05)
        receiver.wait(lambda s: s["events"] >= events, 60)
        arrived = receiver.stats(full=True)["arrived"]
    finally:
        collector.stop()
        receiver.stop()
    delays = sorted((arrived[m] - t) * 1000 for m, t in answered.items())
    return statistics.median(delays), delays[min(len(delays) - 1, int(len(delays) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="destinations: delivered/s, ingest with destinations, 200 to webhook")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rounds", type=int, help="rounds of the ingest comparison (default 3)")
    args = parser.parse_args(argv)
    if args.receiver:
        receiver_main(args.receiver)
        return 0
    events = args.events or (2_000 if args.quick else 10_000)
    seconds = args.seconds or (3 if args.quick else 8)
    with tempfile.TemporaryDirectory(prefix="intilery-bench-destinations-") as tmp:
        workdir = Path(tmp)
        print("| delivery | events | requests | events/s |\n|---|---|---|---|")
        for batch_size, concurrency in ((1, 4), (1, 16), (100, 4)):
            rate, requests = delivered_per_second(workdir, events, batch_size, concurrency)
            print(f"| batch_size {batch_size}, concurrency {concurrency} | {events:,} | {requests:,} | {rate:,.0f} |", flush=True)
        runs: dict[int, list[float]] = {0: [], 1: [], 5: []}
        for _ in range(args.rounds or (1 if args.quick else 3)):  # the three side by side, each round
            for n in runs:
                runs[n].append(ingest_rate(workdir, n, seconds))
        print("\n| ingest (batches of 100, 8 connections, fsync=always) | events/s (median) | per round | ratio to none "
              "(median of the rounds' ratios) |\n|---|---|---|---|")  # fmt: skip
        for n, rates in runs.items():
            ratio = statistics.median(r / base for r, base in zip(rates, runs[0]))
            print(f"| {n} destination(s) | {statistics.median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} | "
                  f"{ratio:.2f} |", flush=True)  # fmt: skip
        p50, p99 = latency(workdir, 100 if args.quick else 400)
        print(f"\n| from the 200 to the webhook (one event every 50 ms) | p50 | p99 |\n|---|---|---|\n| ms | {p50:.0f} | {p99:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
