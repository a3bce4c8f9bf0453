"""With PostgreSQL, several hosts share one outbox: each fills it from its own log (its own cursor)
and every sender claims with FOR UPDATE SKIP LOCKED, so each delivery is sent once per attempt."""

from __future__ import annotations

import asyncio
from collections import Counter

from collector.config import Config
from collector.engage.destinations import service
from helpers import eventually

from .conftest import Log, ev, write_destination
from .test_webhooks import deliveries


async def test_two_hosts_share_one_outbox_and_send_each_delivery_once(tmp_path, receivers, postgres):
    url = postgres.database()
    receiver = await receivers(answer=lambda n, r: (200, {}, 0.01))
    engage = tmp_path / "engage"
    write_destination(engage, "crm", url=receiver.url, concurrency=4)
    write_destination(engage, "batches", url=receiver.url, concurrency=4, batch_size=5)
    hosts = [Config(data_dir=tmp_path / f"host{i}", engage_dir=engage, profiles_db=url) for i in range(2)]
    events = {}
    for host in hosts:
        written = [ev() for _ in range(150)]
        events.update((e["messageId"], e) for e in written)
        Log(host.data_dir).write(written)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(service.serve(host, stop)) for host in hosts]
    try:
        await eventually(lambda: len(deliveries(hosts[0], "crm", "delivered")) == 300
                         and len(deliveries(hosts[0], "batches", "delivered")) == 300, 60, what="600 deliveries")  # fmt: skip
    finally:
        stop.set()
        stats = await asyncio.gather(*tasks)
    assert all(r.verified for r in receiver.got)
    ids = Counter(receiver.ids())
    assert max(ids.values()) == 1, "a delivery was sent twice"
    singles = [e for r in receiver.got if r.json["type"] != "batch" for e in [r.json["data"]]]
    assert sorted(e["messageId"] for e in singles) == sorted(events)
    assert sorted(e["messageId"] for r in receiver.got if r.json["type"] == "batch" for e in r.json["data"]["batch"]) == sorted(events)
    assert all(s["sent"] for s in stats), f"both hosts sent: {stats}"  # each sender took part
