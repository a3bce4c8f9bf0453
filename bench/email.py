"""Email: messages rendered and handed to a local SMTP server per second; a broadcast to 100,000 people.

    python -m bench.email              # 2,000 messages sent; a broadcast to 100,000 people
    python -m bench.email --quick      # 500 messages; 20,000 people

1. *sent per second*: ``--messages`` deliveries composed (the template rendered for a person) and
   put in the outbox, then the email lane (``collector/engage/email/sender.py``, concurrency 4,
   no rate limit) hands them to aiosmtpd's Sink in its own process on 127.0.0.1 (one SMTP
   transaction per message, a connection each, as ``aiosmtplib.send`` makes): messages over wall
   time, and the rendering alone (``compose``) per second.
2. *broadcast*: ``--people`` people (identify with an email), all in one audience, built into a
   SQLite profile database; ``intilery campaign send`` (its own process) queues the campaign: its
   wall time and RSS (max). Then the same again killed with SIGKILL halfway (once half the
   deliveries are in the outbox) and started again with the same id: the deliveries afterwards,
   and how many people have more than one (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

NEWS = "---\nsubject: News for {{ traits.name }}\n---\n<p>Hello {{ traits.name }}, <a href=\"{{ unsubscribe_url }}\">leave</a></p>\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sink(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"])
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the SMTP sink did not start")
            time.sleep(0.05)


def send_rate(n: int) -> dict:
    from collector.config import Email
    from collector.engage.destinations.sender import Database
    from collector.engage.email import sender, templates
    from collector.engage.outbox.store import open_outbox

    port = free_port()
    proc = sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            outbox = open_outbox(Path(tmp) / "profiles.db")
            settings = Email(smtp_port=port, smtp_security="none", from_="Shop <news@shop.example>",
                             public_url="https://c.example", rate_per_second=1e9)  # fmt: skip
            template = templates.parse("news", NEWS, Path("news.liquid"))
            started = time.perf_counter()
            payloads = [sender.compose(settings, b"k" * 32, template, {"traits": {"email": f"p{i}@x.example", "name": f"P{i}"},
                                       "profile_id": f"p{i}"}, f"msg_{i:08d}", time.time()) for i in range(n)]  # fmt: skip
            rendered = n / (time.perf_counter() - started)
            outbox.begin()
            outbox.add([(p["id"], sender.LANE, orjson.dumps(p).decode(), "") for p in payloads], "bench", {}, 0)
            outbox.commit()
            db = Database(outbox)

            async def run() -> float:
                stop = asyncio.Event()
                lane = sender.EmailLane(settings, db, b"k" * 32, concurrency=4)
                started = time.perf_counter()
                task = asyncio.create_task(lane.run(stop))
                while (await db(outbox.counts)).get(sender.LANE, {}).get("delivered", 0) < n:
                    if task.done():
                        raise SystemExit(f"the lane stopped: {task.exception()}")
                    await asyncio.sleep(0.05)
                took = time.perf_counter() - started
                stop.set()
                await task
                return took

            took = asyncio.run(run())
            db.close()
            return {"messages": n, "sent_per_second": round(n / took, 1), "rendered_per_second": round(rendered)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def broadcast(people: int) -> dict:
    from collector.profiles.builder import Builder
    from collector.profiles.rules import Rules
    from collector.profiles.store import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        directory = data / "events" / "dt=2026-12-08" / "hr=02"
        directory.mkdir(parents=True)
        per = 10_000
        for n, start in enumerate(range(0, people, per)):
            lines = [orjson.dumps({"type": "identify", "userId": f"u{i}", "messageId": uuid.uuid4().hex, "source": "web",
                                   "timestamp": "2026-12-08T02:00:00.000Z", "receivedAt": "2026-12-08T02:00:00.000Z",
                                   "traits": {"email": f"p{i}@x.example", "name": f"P{i}"}}) + b"\n"
                     for i in range(start, min(people, start + per))]  # fmt: skip
            (directory / f"part-bench_0-{n + 1:06d}.ndjson").write_bytes(b"".join(lines))
        started = time.perf_counter()
        store = SqliteStore(data / "profiles.db")
        Builder(store, data, Rules()).catch_up()
        store._run("INSERT INTO engage_members (audience, profile_id, entered_at) SELECT 'all', profile_id, 0 FROM profiles")
        store.commit()
        store.close()
        built = time.perf_counter() - started
        (root / "engage" / "templates").mkdir(parents=True)
        (root / "engage" / "templates" / "news.liquid").write_text(NEWS)
        config = root / "intilery.toml"
        config.write_text(f'data_dir = "{data}"\n[email]\nfrom = "Shop <news@shop.example>"\npublic_url = "https://c.example"\n')
        command = [sys.executable, "-m", "collector", "campaign", "send", "--audience", "all", "--template", "news",
                   "--config", str(config)]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        out = subprocess.run([*command, "--id", "full"], capture_output=True, text=True, timeout=3600)
        took = time.perf_counter() - started
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        queued = orjson.loads(out.stdout)["queued"]

        import sqlite3

        def count(cid: str) -> int:
            conn = sqlite3.connect(data / "profiles.db", timeout=30)
            try:
                return conn.execute("SELECT COUNT(*) FROM outbox WHERE id LIKE ?", (f"cmp_{cid}_%",)).fetchone()[0]
            except sqlite3.OperationalError:
                return 0
            finally:
                conn.close()

        proc = subprocess.Popen([*command, "--id", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while count("killed") < people // 2 and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill = count("killed")
        again = subprocess.run([*command, "--id", "killed"], capture_output=True, text=True, timeout=3600)
        if again.returncode != 0:
            raise SystemExit(again.stderr)
        conn = sqlite3.connect(data / "profiles.db")
        twice = conn.execute("SELECT COUNT(*) FROM (SELECT who FROM outbox WHERE id LIKE 'cmp_killed_%' GROUP BY who "
                             "HAVING COUNT(*) > 1) AS t").fetchone()[0]  # fmt: skip
        total = conn.execute("SELECT COUNT(*) FROM outbox WHERE id LIKE 'cmp_killed_%'").fetchone()[0]
        conn.close()
        return {"people": people, "profiles_built_seconds": round(built, 1), "queued": queued, "campaign_seconds": round(took, 1),
                "queued_per_second": round(queued / took), "campaign_rss_mb_max": round(max(rss, before) / 1024, 1),
                "killed_at": at_kill, "after_restart": total, "people_with_two": twice}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.email")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int)
    parser.add_argument("--people", type=int)
    args = parser.parse_args(argv)
    messages = args.messages or (500 if args.quick else 2000)
    people = args.people or (20_000 if args.quick else 100_000)
    print(orjson.dumps(send_rate(messages)).decode(), flush=True)
    print(orjson.dumps(broadcast(people)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
