"""Prometheus metrics (``prometheus_client``): the collector's counters, gauges and one latency histogram.

One process: each ``Metrics`` has a registry of its own, which also brings the standard
``process_*`` and ``python_*`` metrics. ``--workers N``: the supervisor calls ``share`` before
it forks, and every process then keeps its values in files of one directory (the client's
multiprocess mode); a scrape on any worker reads the host's totals, summed over every
process, the dead ones' counters included (so a counter never goes back when a worker is
replaced). A gauge is then a callback that ``start`` publishes once a second (and the
scraping process at every scrape): the live processes' sum, or their minimum for
``intilery_store_ready``. The client's multiprocess mode has no process metrics.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values

FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FLUSH = "intilery_store_flush_seconds"

COUNTERS = {  # name: (help, label names)
    "intilery_http_requests_total": ("HTTP requests by route and status.", ("route", "status")),
    "intilery_events_accepted_total": ("Events stored, by source.", ("source",)),
    "intilery_events_rejected_total": ("Events rejected, by source and code.", ("source", "code")),
    "intilery_events_duplicate_total": ("Events answered as accepted but not stored again (same messageId).", ("source",)),
    "intilery_events_bots_dropped_total": ("Events from known bots dropped by a source's drop_bots setting.", ("source",)),
    "intilery_events_suppressed_total": ("Events of people on the suppression list (privacy requests): answered 200, not stored.",
                                         ("source",)),  # fmt: skip
    "intilery_nats_duplicates_total": ("Publishes JetStream answered as duplicates (already stored by some collector).", ()),
    "intilery_archive_lines_total": ("Lines the archive consumer wrote (after dedup).", ()),
    "intilery_plan_violations_total": ("Tracking-plan violations, by source, event (planned name, (unplanned), or call) and code.",
                                       ("source", "event", "code")),  # fmt: skip
}
GAUGES = {  # name: (help, how the processes of a host add up)
    "intilery_store_queue_bytes": ("Bytes waiting for the store writer.", "livesum"),
    "intilery_store_ready": ("1 when the store takes writes, 0 otherwise.", "livemin"),
    "intilery_nats_inflight_messages": ("Messages published to JetStream and waiting for their PubAck.", "livesum"),
}
PUBLISH_EVERY = 1.0  # seconds: how old a gauge of another process can be in a scrape (--workers N)

prometheus_client.disable_created_metrics()  # no *_created series: they say nothing an operator needs
_shared: dict[str, object] = {}  # with --workers N: this process's metric objects, one set for all its Metrics


def share(directory: str) -> None:
    """From now on (and in every process forked after), values live in files in ``directory``
    (empty, this host's), summed at each scrape. Call before any metric exists."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()


def shared() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


def process_gone(pid: int) -> None:
    """A process of the host died: its gauges stop counting (its counters stay in the totals)."""
    if shared():
        multiprocess.mark_process_dead(pid)


class Metrics:
    """The collector's metrics; ``render()`` gives the /metrics body."""

    def __init__(self) -> None:
        self.registry = None if shared() else CollectorRegistry()
        if self.registry is not None:
            prometheus_client.ProcessCollector(registry=self.registry)
            prometheus_client.PlatformCollector(registry=self.registry)
            prometheus_client.GCCollector(registry=self.registry)
        self._families: dict[str, object] = {}
        self._children: dict[tuple, object] = {}
        self._reads: dict[str, Callable[[], float]] = {}
        self._publisher: asyncio.Task | None = None
        self._collectors: list = []  # read at each scrape (register)
        self._flush = self._family(FLUSH, lambda r: Histogram(FLUSH, "Time to write (and fsync, per policy) one group commit.",
                                                              buckets=FLUSH_BUCKETS, registry=r))  # fmt: skip

    def _family(self, name: str, make: Callable):
        """The metric called ``name``, made at its first use (this ``Metrics``'s, or with --workers N this process's)."""
        families = self._families if self.registry is not None else _shared
        if name not in families:
            families[name] = make(self.registry)
        return families[name]

    def _counter(self, name: str):
        help_text, labels = COUNTERS[name]
        return self._family(name, lambda r: Counter(name, help_text, labels, registry=r))

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, *labels.values())
        child = self._children.get(key)
        if child is None:
            counter = self._counter(name)
            child = self._children[key] = counter.labels(**labels) if labels else counter
        child.inc(value)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        help_text, mode = GAUGES[name]
        gauge = self._family(name, lambda r: Gauge(name, help_text, registry=r, multiprocess_mode=mode))
        if self.registry is not None:
            gauge.set_function(read)
        else:
            self._reads[name] = read
            gauge.set(read())

    def observe_flush(self, seconds: float) -> None:
        self._flush.observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value, as a scrape of this process would read it (tests); 0 when absent."""
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return registry.get_sample_value(name, labels) or 0.0

    def register(self, collector) -> None:
        """A ``prometheus_client`` collector read at each scrape (the outbox's: engage/destinations/metrics.py)."""
        self._collectors.append(collector)
        if self.registry is not None:
            self.registry.register(collector)

    def render(self) -> str:
        if self.registry is not None:
            return generate_latest(self.registry).decode()
        self.publish()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry).decode()

    # --- gauges across processes (--workers N) -------------------------------------------
    def publish(self) -> None:
        """Write this process's gauges where the other processes' scrapes read them."""
        for name, read in self._reads.items():
            self._family(name, None).set(read())

    def start(self) -> None:
        """Publish the gauges once a second, for as long as the running loop (``stop`` ends it)."""
        if self.registry is None and self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish(), name="metrics-publisher")

    def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            self._publisher = None

    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY)
            self.publish()
