"""The whole comparison in one command: the framework ceiling, the collector, the table.

    python -m bench.run              # every row, 3 rounds, the 60 s overload check, micro (~8 min)
    python -m bench.run --quick      # 1 round, short runs, 15 s overload check (~2 min)
    python -m bench.run --readme     # also write the results into bench/README.md

Every row starts its own server (the ceiling app of ``bench/ceiling.py`` or
``python -m collector serve``) pinned to CPU 0 with ``taskset``; ``wrk`` (``bench/load.lua``,
one thread, keep-alive) runs pinned to CPU 1. After a warm-up the measured run gives
requests, latency percentiles and errors; ``/proc`` gives the server's peak RSS (VmHWM) and
the CPU time it used. Rows are run in rounds (every row once per round), and each round's
ratio to the ceiling is taken against the ceiling measured in that same round; the table
shows medians over rounds.

Rows (see ``scenarios``): ``ceiling`` single / batch, ``collector`` single / batch with
``fsync = always`` and ``never``, ``nats`` single / batch (a local ``nats-server -js``,
when the NATS store and nats-server are present), and ``--workers 2`` (unpinned: it
shares both CPUs with the load generator). Then the overload check: the collector with far
more connections than it can serve for ``--overload-seconds``, its RSS sampled every second
(and the ceiling app under the same overload, for what the framework alone needs); last the
per-event micro-benchmark (``bench/micro.py``) pinned to CPU 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.workload import build_bench_geo_db, distinct_agents, write_requests
from bench.processes import free_port, stop_process, write_config

BENCH = Path(__file__).parent
ROOT = BENCH.parent
SERVER_ROOT = ROOT  # where servers and the micro-benchmark import the collector from (--collector-root)
LUA = BENCH / "load.lua"
SERVER_CPU, LOAD_CPU = "0", "1"
BATCH_SIZE = 100
WEB_KEY, RELAY_KEY = "wk_bench_web", "wk_bench_relay"
SOURCES = [
    {"name": "web", "write_key": WEB_KEY},  # browsers: address from X-Forwarded-For
    {"name": "relay", "write_key": RELAY_KEY, "trust_client_ip": True},  # a server relaying context.ip
]
ACCESS_TOKEN = "at_bench_console_token"
NATS_SERVER = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # ceiling | collector | nats
    mode: str  # single | batch
    fsync: str = "-"
    workers: int = 1
    connections: int = 64
    profiles: bool = True  # the in-process profile builder (serve's default); False: --no-profiles
    consoles: int = 0  # console streams held open during the run that never read (bench/console.py)

    @property
    def events_per_request(self) -> int:
        return BATCH_SIZE if self.mode == "batch" else 1

    @property
    def pinned(self) -> bool:
        return self.workers == 1


@dataclass
class Result:
    scenario: Scenario
    events_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    server_cpu: float  # CPU seconds per second of the measured run (1.0 = one core busy)
    errors: int  # non-2xx answers and socket errors
    accepted_check: float | None = None  # events/s from the collector's own /metrics
    extra: dict = field(default_factory=dict)


def scenarios(with_nats: bool, with_workers: bool, single_c: int = 64, batch_c: int = 8) -> list[Scenario]:
    rows = [
        Scenario("ceiling, single", "ceiling", "single", connections=single_c),
        Scenario("collector single, fsync=always", "collector", "single", "always", connections=single_c),
        Scenario("collector single, fsync=never", "collector", "single", "never", connections=single_c),
        Scenario("ceiling, batch of 100", "ceiling", "batch", connections=batch_c),
        Scenario("collector batch, fsync=always", "collector", "batch", "always", connections=batch_c),
        Scenario("collector batch, fsync=always, --no-profiles", "collector", "batch", "always", connections=batch_c,
                 profiles=False),
        Scenario("collector batch, fsync=never", "collector", "batch", "never", connections=batch_c),
        Scenario("collector batch, fsync=always, 64 connections", "collector", "batch", "always", connections=64),
    ]
    if with_nats:
        rows += [
            Scenario("nats single (1 nats-server -js)", "nats", "single", "JetStream", connections=single_c),
            Scenario("nats batch (1 nats-server -js)", "nats", "batch", "JetStream", connections=batch_c),
        ]
    if with_workers:
        rows += [
            Scenario("--workers 2 single, fsync=always", "collector", "single", "always", workers=2, connections=single_c),
            Scenario("--workers 2 batch, fsync=always", "collector", "batch", "always", workers=2, connections=batch_c),
        ]
    return rows


# --- processes ------------------------------------------------------------------------
def _taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _status(pid: int, key: str) -> float:
    """A /proc/PID/status field in MB (VmHWM: peak RSS, VmRSS: current)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not answer {url} within {timeout}s:\n{log.read_text()[-3000:]}")


class Server:
    """One server under test (ceiling app or collector), started pinned, stopped with SIGTERM."""

    def __init__(self, scenario: Scenario, workdir: Path, geo: Path, nats_url: str | None = None) -> None:
        self.scenario, self.workdir = scenario, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "server.log"
        python = [sys.executable]
        if scenario.server == "ceiling":
            cmd = python + ["-m", "bench.ceiling", "--port", str(self.port)]
        else:
            config = write_config(workdir / "intilery.toml", SOURCES, trusted_proxy=["127.0.0.1/32"],
                                  access_token=ACCESS_TOKEN)  # fmt: skip
            cmd = python + ["-m", "collector", "serve", "--config", str(config), "--port", str(self.port),
                            "--data-dir", str(workdir / "data"), "--geoip", str(geo),
                            "--workers", str(scenario.workers)]  # fmt: skip
            if scenario.server == "nats":
                cmd += ["--store", "nats", "--nats-url", nats_url or ""]
            else:
                cmd += ["--fsync", scenario.fsync]
            if not scenario.profiles:
                cmd += ["--no-profiles"]
        cmd = _taskset(SERVER_CPU if scenario.pinned else None) + cmd
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=SERVER_ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        _wait_http(self.url + "/healthz", self.proc, self.log)

    def pids(self) -> list[int]:
        """The processes that serve: the workers under a supervisor, else the server itself."""
        kids = _children(self.proc.pid) if self.scenario.workers > 1 else []
        return kids or [self.proc.pid]

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(p) for p in self.pids())

    def peak_rss_mb(self) -> float:
        return max(_status(p, "VmHWM") for p in self.pids())

    def rss_mb(self) -> float:
        return max(_status(p, "VmRSS") for p in self.pids())

    def accepted(self) -> float | None:
        """intilery_events_accepted_total summed over sources (None for the ceiling); with --workers, the host's."""
        if self.scenario.server == "ceiling":
            return None
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("intilery_events_accepted_total"))  # fmt: skip

    def stop(self) -> int:
        stop_process(self.proc, signal.SIGTERM, 120)
        return self.proc.returncode


class NatsServer:
    """A single local ``nats-server -js`` for the nats rows, pinned with the load generator."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        cmd = _taskset(LOAD_CPU) + [NATS_SERVER, "-js", "-sd", str(workdir / "js"), "-a", "127.0.0.1",
                                    "-p", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def nats_available() -> str | None:
    """Why the nats rows cannot run, or None when they can."""
    if NATS_SERVER is None:
        return "nats-server is not installed"
    try:
        import nats  # noqa: F401

        from collector.log import nats as nats_store  # noqa: F401
    except ImportError as exc:
        return f"the NATS store cannot be imported ({exc})"
    return None


def wrk(url: str, requests_file: Path, key: str, seconds: float, connections: int, tag: str,
        cpus: str | None = LOAD_CPU) -> dict:  # fmt: skip
    cmd = _taskset(cpus) + ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                            "-s", str(LUA), url, "--", str(requests_file), key, tag]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    for line in out.splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON "):])
    raise RuntimeError(f"wrk printed no result:\n{out}")


# --- one measurement ------------------------------------------------------------------
_tags = iter(range(1, 1 << 16))


def measure(scenario: Scenario, workdir: Path, files: dict[str, Path], geo: Path, warmup: float, seconds: float,
            nats_url: str | None = None) -> Result:  # fmt: skip
    server = Server(scenario, workdir, geo, nats_url)
    key = WEB_KEY if scenario.mode == "single" else RELAY_KEY
    load_cpus = LOAD_CPU if scenario.pinned else None
    viewers = []
    try:
        if scenario.consoles:
            from bench.console import idle_viewer

            viewers = [idle_viewer(server.port, ACCESS_TOKEN) for _ in range(scenario.consoles)]
        wrk(server.url, files[scenario.mode], key, warmup, scenario.connections, f"{next(_tags):04x}", load_cpus)
        accepted, cpu = server.accepted(), server.cpu_seconds()
        run = wrk(server.url, files[scenario.mode], key, seconds, scenario.connections, f"{next(_tags):04x}",
                  load_cpus)  # fmt: skip
        cpu = server.cpu_seconds() - cpu
        after = server.accepted()
        peak = server.peak_rss_mb()
    finally:
        for viewer in viewers:
            viewer.close()
        code = server.stop()
    if code != 0:
        raise RuntimeError(f"{scenario.name}: the server exited with {code}:\n{server.log.read_text()[-3000:]}")
    duration = run["duration_us"] / 1e6
    errors = run["non2xx"] + run["connect_errors"] + run["read_errors"] + run["write_errors"] + run["timeouts"]
    ok = run["requests"] - run["non2xx"]
    return Result(
        scenario,
        events_per_s=ok * scenario.events_per_request / duration,
        requests_per_s=run["requests"] / duration,
        p50_ms=run["p50_us"] / 1000,
        p99_ms=run["p99_us"] / 1000,
        peak_rss_mb=peak,
        server_cpu=cpu / duration,
        errors=errors,
        accepted_check=(after - accepted) / duration if accepted is not None and after is not None else None,
    )


def overload(workdir: Path, files: dict[str, Path], geo: Path, seconds: float, connections: int,
             server: str = "collector") -> dict:  # fmt: skip
    """A server far past its capacity (batches on many connections): RSS sampled every second."""
    scenario = Scenario("overload", server, "batch", "always", connections=connections)
    server = Server(scenario, workdir, geo)
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        while not done.wait(1.0):
            samples.append((time.monotonic() - started, server.rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        run = wrk(server.url, files["batch"], RELAY_KEY, seconds, connections, f"{next(_tags):04x}")
        done.set()
        sampler.join()
        peak = server.peak_rss_mb()
    finally:
        done.set()
        code = server.stop()
    if code != 0:
        raise RuntimeError(f"overload: the server exited with {code}:\n{server.log.read_text()[-3000:]}")
    duration = run["duration_us"] / 1e6
    tenth = max(1, len(samples) // 6)
    early = max(rss for _, rss in samples[tenth : 2 * tenth]) if len(samples) > 2 else 0.0
    late = max(rss for _, rss in samples[-tenth:]) if samples else 0.0
    return {
        "seconds": round(duration, 1),
        "connections": connections,
        "events_per_s": (run["requests"] - run["non2xx"]) * BATCH_SIZE / duration,
        "p99_ms": run["p99_us"] / 1000,
        "status_503_or_other": run["non2xx"],
        "socket_errors": run["connect_errors"] + run["read_errors"] + run["write_errors"] + run["timeouts"],
        "peak_rss_mb": peak,
        "rss_early_mb": early,
        "rss_late_mb": late,
        "samples": [(round(t, 1), round(r, 1)) for t, r in samples],
    }


# --- the table ------------------------------------------------------------------------
def summarise(rounds: list[list[Result]]) -> list[dict]:
    """Medians over rounds; ratios against the same round's ceiling for that mode."""
    rows = []
    for i, first in enumerate(rounds[0]):
        results = [r[i] for r in rounds]
        ratios = []
        for round_results in rounds:
            ceiling = next(r for r in round_results if r.scenario.server == "ceiling" and r.scenario.mode == first.scenario.mode)
            ratios.append(round_results[i].events_per_s / ceiling.events_per_s if ceiling.events_per_s else 0.0)
        checks = [r.accepted_check for r in results if r.accepted_check is not None]
        rows.append({
            "name": first.scenario.name,
            "mode": first.scenario.mode,
            "connections": first.scenario.connections,
            "events_per_s": statistics.median(r.events_per_s for r in results),
            "requests_per_s": statistics.median(r.requests_per_s for r in results),
            "p50_ms": statistics.median(r.p50_ms for r in results),
            "p99_ms": statistics.median(r.p99_ms for r in results),
            "peak_rss_mb": max(r.peak_rss_mb for r in results),
            "server_cpu": statistics.median(r.server_cpu for r in results),
            "events_per_cpu_s": statistics.median(r.events_per_s / r.server_cpu if r.server_cpu else 0 for r in results),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "errors": sum(r.errors for r in results),
            "accepted_check": statistics.median(checks) if checks else None,
        })  # fmt: skip
    return rows


def render(rows: list[dict], over: dict | None, stress: dict | None, ceiling_stress: dict | None,
           micro: str | None, micro_rows: list[dict] | None) -> str:  # fmt: skip
    from bench.report import targets

    head = ("| row | conns | events/s | req/s | p50 ms | p99 ms | peak RSS MB | server CPU | events per CPU-s "
            "| × ceiling (median) | × ceiling per round | errors |")  # fmt: skip
    lines = [head, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|"]
    for r in rows:
        ratios = " ".join(f"{x:.2f}" for x in r["ratios"])
        lines.append(
            f"| {r['name']} | {r['connections']} | {r['events_per_s']:,.0f} | {r['requests_per_s']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['peak_rss_mb']:.0f} | {r['server_cpu']:.2f} | "
            f"{r['events_per_cpu_s']:,.0f} | {r['ratio']:.2f} | {ratios} | {r['errors']} |"
        )
    for label, run in (("Overload", over), ("Stress", stress)):
        if not run:
            continue
        series = ", ".join(f"{rss:.0f}" for t, rss in run["samples"][4::5])
        lines += [
            "",
            f"{label}: {run['connections']} connections sending batches of {BATCH_SIZE} as fast as answered for "
            f"{run['seconds']:g} s (collector, fsync=always): {run['events_per_s']:,.0f} events/s, p99 {run['p99_ms']:.0f} ms, "
            f"{run['status_503_or_other']} non-2xx answers, {run['socket_errors']} socket errors. "
            f"RSS peak {run['peak_rss_mb']:.0f} MB; max over the second sixth of the run {run['rss_early_mb']:.0f} MB, "
            f"over the last sixth {run['rss_late_mb']:.0f} MB (growth {run['rss_late_mb'] - run['rss_early_mb']:+.0f} MB); "
            f"RSS every 5 s: {series} MB.",
        ]
    if ceiling_stress:
        lines.append(
            f"The ceiling app under the same stress ({ceiling_stress['connections']} connections, "
            f"{ceiling_stress['seconds']:g} s): RSS peak {ceiling_stress['peak_rss_mb']:.0f} MB, "
            f"{ceiling_stress['events_per_s']:,.0f} events/s."
        )
    if micro:
        lines += ["", micro.strip()]
    judged = targets(rows, over, micro_rows)
    if judged:
        lines += ["", "Targets (issue 5):", *judged]
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiohttp
    import orjson

    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"aiohttp {aiohttp.__version__}, {loop}, orjson {orjson.__version__}")  # fmt: skip


def run_micro(quick: bool) -> tuple[str, list[dict]]:
    """bench/micro.py pinned to the server's CPU: its table, and its rows as data."""
    args = ["--events", "10000", "--warmup", "10000", "--repeat", "3"] if quick else ["--repeat", "7"]
    cmd = _taskset(SERVER_CPU) + [sys.executable, "-m", "bench.micro", *args, "--json", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=SERVER_ROOT, timeout=900).stdout
    table, _, data = out.partition("MICRO-JSON ")
    return table, json.loads(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmark comparison and print the table.")
    parser.add_argument("--quick", action="store_true", help="1 round, 3 s runs, 15 s overload check")
    parser.add_argument("--rounds", type=int, help="rounds of every row (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="measured seconds per row (default 5, quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per row (default 2, quick 1)")
    parser.add_argument("--overload-seconds", type=float, help="overload check length (default 60, quick 15; 0 skips)")
    parser.add_argument("--connections", type=int, default=64, help="connections for single-event rows (default 64)")
    parser.add_argument("--batch-connections", type=int, default=8, help="connections for batch rows (default 8)")
    parser.add_argument("--overload-connections", type=int, default=64,
                        help="connections of the overload check (default 64, as many as the single rows)")
    parser.add_argument("--stress-connections", type=int, default=512,
                        help="connections of the shorter stress check, also run against the ceiling (0 skips)")
    parser.add_argument("--no-nats", action="store_true", help="leave out the nats rows")
    parser.add_argument("--no-workers", action="store_true", help="leave out the --workers 2 rows")
    parser.add_argument("--no-micro", action="store_true", help="leave out the per-event micro-benchmark")
    parser.add_argument("--only", help="run only rows whose name contains this text (ceilings always run)")
    parser.add_argument("--workdir", help="where servers keep their data (default: a temporary directory)")
    parser.add_argument("--collector-root", help="run servers and the micro-benchmark from another checkout "
                        "(a before/after comparison; the inputs and the load stay this checkout's)")  # fmt: skip
    parser.add_argument("--readme", action="store_true", help="write the results into bench/README.md")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    global SERVER_ROOT
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every server started is stopped
    if args.collector_root:
        SERVER_ROOT = Path(args.collector_root).resolve()
    rounds_n = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    overload_s = args.overload_seconds if args.overload_seconds is not None else (15 if args.quick else 60)

    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    no_nats = "--no-nats given" if args.no_nats else nats_available()
    rows = [s for s in scenarios(no_nats is None, not args.no_workers, args.connections, args.batch_connections)
            if s.server == "ceiling" or not args.only or args.only in s.name]  # fmt: skip

    tmp = tempfile.TemporaryDirectory(prefix="intilery-bench-") if not args.workdir else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        geo = build_bench_geo_db(workdir / "bench-geo.mmdb")
        files = {
            "single": write_requests(workdir / "single.txt", "single", 20_000, seed=1),
            "batch": write_requests(workdir / "batch.txt", "batch", 300, seed=2, batch_size=BATCH_SIZE),
        }
        agents = {mode: distinct_agents(path) for mode, path in files.items()}
        print(f"machine: {machine()}")
        print(f"inputs: single {agents['single']:,} distinct user agents in 20,000 requests; "
              f"batch {agents['batch']:,} in 300 x {BATCH_SIZE} messages")  # fmt: skip
        if no_nats:
            print(f"nats rows left out: {no_nats}")
        nats = NatsServer(workdir / "nats") if no_nats is None and any(s.server == "nats" for s in rows) else None
        rounds: list[list[Result]] = []
        try:
            for n in range(rounds_n):
                results = []
                for i, scenario in enumerate(rows):
                    result = measure(scenario, workdir / f"r{n}-{i}", files, geo, warmup, seconds,
                                     nats.url if nats else None)  # fmt: skip
                    shutil.rmtree(workdir / f"r{n}-{i}" / "data", ignore_errors=True)
                    print(f"  round {n + 1} {scenario.name}: {result.events_per_s:,.0f} events/s, "
                          f"p99 {result.p99_ms:.1f} ms, RSS {result.peak_rss_mb:.0f} MB, "
                          f"server CPU {result.server_cpu:.2f}, errors {result.errors}"
                          + (f", /metrics says {result.accepted_check:,.0f} events/s" if result.accepted_check else ""),
                          flush=True)  # fmt: skip
                    results.append(result)
                rounds.append(results)
        finally:
            if nats:
                nats.stop()
        over = stress = ceiling_stress = None
        if overload_s > 0:
            print(f"  overload: {args.overload_connections} connections for {overload_s:g} s", flush=True)
            over = overload(workdir / "overload", files, geo, overload_s, args.overload_connections)
            shutil.rmtree(workdir / "overload" / "data", ignore_errors=True)
        if overload_s > 0 and args.stress_connections:
            stress_s = min(overload_s, 20)
            print(f"  stress: {args.stress_connections} connections for {stress_s:g} s", flush=True)
            stress = overload(workdir / "stress", files, geo, stress_s, args.stress_connections)
            shutil.rmtree(workdir / "stress" / "data", ignore_errors=True)
            ceiling_stress = overload(workdir / "stress-ceiling", files, geo, min(stress_s, 10),
                                      args.stress_connections, server="ceiling")  # fmt: skip
        micro, micro_rows = (None, None) if args.no_micro else run_micro(args.quick)
        table = summarise(rounds)
        elapsed = time.monotonic() - started
    finally:
        if tmp is not None:
            tmp.cleanup()

    command = ("python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    notes = [
        f"Inputs: single-event requests carry {agents['single']:,} distinct user agents (20,000 requests), batches "
        f"{agents['batch']:,} (300 batches of {BATCH_SIZE}); {rounds_n} round(s) of {seconds:g} s per row after "
        f"{warmup:g} s of warm-up; the table shows medians over rounds, peak RSS is the largest.",
    ]
    if no_nats:
        notes.append(f"No nats rows: {no_nats}.")
    text = render(table, over, stress, ceiling_stress, micro, micro_rows)
    print()
    print(text)
    print()
    print("\n".join(notes))
    print(f"\n{elapsed:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": table, "overload": over, "stress": stress, "ceiling_stress": ceiling_stress,
                                               "micro": micro_rows, "machine": machine()}, indent=1))  # fmt: skip
    if args.readme:
        from bench.report import update_readme

        update_readme(BENCH / "README.md", machine(), command, text + "\n\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
