"""Micro-benchmark of the per-event path: ``Pipeline.process`` (validate + enrich + serialise).

Times the collector's own code on already-parsed messages (JSON parsing of the request body
is the framework's part and is measured by the HTTP benchmark), in µs per event::

    python -m bench.micro            # all cases, a few seconds
    python -m bench.micro --events 20000 --repeat 7

Cases: the user-agent cache warm (every agent of the run already parsed) or cold (a
parser with no cache, so every event pays a full ua-parser resolve), with the geo database
or without. Addresses come from the workload's users (a Zipf-like mix of IPv4 and IPv6,
85% inside the database's networks); the geo and anonymisation caches start empty in every
repetition, so they help only as much as repeated users make them.
The best of ``--repeat`` runs is reported (the least disturbed by other load on the machine),
with the median beside it.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from bench.workload import Workload, build_bench_geo_db
from collector.config import Config, Source
from collector.enrich import ip as iputil
from collector.enrich.geo import Geo
from collector.enrich.useragent import UserAgentParser
from collector.ingest import Pipeline, RequestInfo

BROWSER = Source(name="web", write_key="wk_web")
RELAY = Source(name="relay", write_key="wk_relay", trust_client_ip=True)


def _batches(work: Workload, events: int, size: int) -> list[bytes]:
    """Serialised batches of messages, each with its own address in context.ip."""
    out = []
    for start in range(0, events, size):
        messages = list(work.messages(min(size, events - start), with_ip=True))
        for n, message in enumerate(messages):
            message["messageId"] = f"m-{start + n:09d}"
        out.append(orjson.dumps(messages))
    return out


def run_case(pipeline: Pipeline, batches: list[bytes], source: Source, repeat: int, reset) -> list[float]:
    """µs/event of ``pipeline.process`` over every batch, once per repetition."""
    results = []
    for _ in range(repeat):
        parsed = [orjson.loads(b) for b in batches]  # fresh dicts: process() fills them in place
        events = sum(len(p) for p in parsed)
        reset()
        gc.collect()
        request = RequestInfo(time.time(), "127.0.0.1", None)
        started = time.perf_counter()
        for messages in parsed:
            pipeline.process(messages, source, request)
        results.append((time.perf_counter() - started) / events * 1e6)
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="µs per event of validate + enrich + serialise")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100, help="messages per Pipeline.process call")
    args = parser.parse_args(argv)

    work = Workload(seed=3)
    batches = _batches(work, args.events, args.batch)
    agents = {m["context"]["userAgent"] for b in batches for m in orjson.loads(b)}
    with tempfile.TemporaryDirectory() as tmp:
        geo = Geo(build_bench_geo_db(Path(tmp) / "geo.mmdb"))
        config = Config(sources=(RELAY,))
        warm = UserAgentParser()
        for agent in agents:
            warm.parse(agent[:1024])
        cold = UserAgentParser(cache_size=0)

        def reset_geo() -> None:
            geo.locate.cache_clear()
            iputil.anonymize.cache_clear()

        cases = [
            ("warm UA cache, geo on", Pipeline(config, warm, geo)),
            ("warm UA cache, no geo", Pipeline(config, warm, None)),
            ("cold UA (no cache), geo on", Pipeline(config, cold, geo)),
            ("cold UA (no cache), no geo", Pipeline(config, cold, None)),
        ]
        rows = []
        for name, pipeline in cases:
            timings = run_case(pipeline, batches, RELAY, args.repeat, reset_geo)
            rows.append({"case": name, "best_us": min(timings), "median_us": statistics.median(timings)})
        geo.close()

    print(f"per-event path (Pipeline.process), {args.events:,} events, {len(agents):,} distinct user agents, "
          f"best of {args.repeat}")  # fmt: skip
    print(f"| {'case':<28} | µs/event (best) | µs/event (median) |")
    print(f"|{'-' * 30}|----------------:|------------------:|")
    for row in rows:
        print(f"| {row['case']:<28} | {row['best_us']:15.2f} | {row['median_us']:17.2f} |")
    return rows


if __name__ == "__main__":
    main()
