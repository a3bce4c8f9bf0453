"""Two collectors on a 3-node JetStream cluster: a node is SIGKILLed under load, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import nats
from natsprocs import cluster_url, consumer_drained, output_ids, post_batch, track

from helpers import eventually

BATCH = 20
CLIENTS = 4
PHASE = 1000  # events acknowledged before the kill, while the node is down, after it is back


async def _ready(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url + "/readyz") as answer:
            return answer.status == 200
    except aiohttp.ClientError:
        return False


async def stream_leader(url: str) -> str:
    nc = await nats.connect(url.split(","), connect_timeout=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info("INTILERY")
        assert info.config.num_replicas == 3
        return info.cluster.leader
    finally:
        await nc.close()


async def stream_whole(url: str) -> bool:
    """Whether every replica of the stream is up and current (a restarted node has caught up)."""
    nc = await nats.connect(url.split(","), connect_timeout=2)
    try:
        cluster = (await nc.jetstream(timeout=5).stream_info("INTILERY")).cluster
        replicas = cluster.replicas or []
        return len(replicas) == 2 and all(r.current and not r.offline and not r.lag for r in replicas)
    except Exception:
        return False
    finally:
        await nc.close()


async def test_node_killed_under_load_loses_and_doubles_nothing(tmp_path, nats_cluster, collectors, archives):
    """Every event answered 200 is archived exactly once; 503s retried with the same messageId are stored once."""
    url = cluster_url(nats_cluster)
    args = ["--store", "nats", "--nats-url", url, "--nats-replicas", "3"]
    sent: set[str] = set()
    acknowledged: set[str] = set()
    answers: Counter[str] = Counter()
    stop = asyncio.Event()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        targets = [
            (await collectors(name, *args, nats_publish_timeout=2.0)).url for name in ("c1", "c2")
        ]
        for target in targets:
            await eventually(lambda: _ready(session, target), timeout=60, what=f"{target} to be ready")

        async def client(n: int) -> None:
            """Sends batches round-robin; on a 503 (or no answer) retries the same batch through the other collector."""
            seq = 0
            while not stop.is_set():
                seq += 1
                ids = [f"c{n}-{seq}-{i}" for i in range(BATCH)]
                batch = [track(message_id) for message_id in ids]
                sent.update(ids)
                attempt = 0
                while True:
                    status, _, headers = await post_batch(session, targets[(n + seq + attempt) % 2], batch)
                    answers[str(status)] += 1
                    if status == 200:
                        acknowledged.update(ids)
                        break
                    attempt += 1
                    await asyncio.sleep(min(float(headers.get("Retry-After", 1)), 0.5) if headers else 0.2)
                if seq % 10 == 0:  # as if the 200 was lost on the way: resent through the other collector
                    status, _, _ = await post_batch(session, targets[(n + seq + 1) % 2], batch)
                    answers[f"resent {status}"] += 1
                await asyncio.sleep(0.02)  # a steady load, not a benchmark (the machine is shared)

        def acknowledged_past(count: int):  # the phases of the run are counted events, not seconds
            return lambda: len(acknowledged) >= count

        clients = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        await eventually(acknowledged_past(PHASE), timeout=60, what=f"{PHASE} events accepted before the kill")
        leader = await stream_leader(url)
        victim = next(server for server in nats_cluster if server.name == leader)
        victim.kill()
        before_kill = len(acknowledged)
        await eventually(acknowledged_past(before_kill + PHASE), timeout=90, what="events accepted while a node was down")
        await asyncio.to_thread(victim.start)
        restarted = len(acknowledged)
        await eventually(acknowledged_past(restarted + PHASE), timeout=90, what="events accepted after the node came back")
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), timeout=120)
        await eventually(lambda: stream_whole(url), timeout=90, what="the restarted node to catch up")
        assert answers["503"] + answers["None"] > 0, f"the kill was felt: {dict(answers)}"

    out = tmp_path / "out"
    archive = await archives(out, url)
    await eventually(lambda: consumer_drained(url), timeout=90, what="the archive to catch up")
    assert await asyncio.to_thread(archive.stop) == 0

    counts = Counter(output_ids(out))
    assert [m for m, n in counts.items() if n > 1] == []
    assert acknowledged - set(counts) == set(), "every event answered 200 is archived"
    assert set(counts) <= sent
    print(f"\n{len(acknowledged)} events acknowledged, answers {dict(answers)}, leader {leader} killed")
