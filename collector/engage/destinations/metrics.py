"""The destinations' metrics, read from the outbox at each scrape of the collector's ``/metrics``
(the destinations process writes them with each outcome: ``outbox_stats``), so they are one
host's truth whichever process sent, and survive restarts::

    intilery_deliveries_total{destination,outcome}     deliveries by the outcome of an attempt
                                                       (delivered, failed: to be retried, dead), and the
                                                       events not sent (filtered, no_consent)
    intilery_delivery_seconds{destination}             a request's time, from send to answer (histogram)
    intilery_destination_queue_depth{destination}      deliveries not delivered yet (pending, failed, in flight)
"""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from collector.engage.outbox.store import LATENCY_BUCKETS, open_outbox
from collector.profiles.database import db_target

log = logging.getLogger("intilery.destinations")


class OutboxMetrics:
    """A ``prometheus_client`` collector over the outbox (registered by ``Metrics.register``)."""

    def __init__(self, config) -> None:
        self.target = db_target(config)
        self.outbox = None

    def _open(self):
        if self.outbox is None:
            if not self.target.startswith("postgres") and not Path(self.target).is_file():
                return None
            self.outbox = open_outbox(self.target, reads_only=True)  # a scrape never waits for a writer
        return self.outbox

    def collect(self):
        deliveries = CounterMetricFamily("intilery_deliveries", "Deliveries by destination and the outcome of an attempt "
                                         "(delivered, failed: to be retried, dead), and events not sent (filtered, no_consent).", labels=["destination", "outcome"])  # fmt: skip
        seconds = HistogramMetricFamily("intilery_delivery_seconds", "A webhook request's time, from send to answer.",
                                        labels=["destination"])  # fmt: skip
        depth = GaugeMetricFamily("intilery_destination_queue_depth", "Deliveries not delivered yet (pending, failed, "
                                  "in flight), per destination.", labels=["destination"])  # fmt: skip
        try:
            outbox = self._open()
            stats, counts = (outbox.stats(), outbox.counts()) if outbox is not None else ({}, {})
        except Exception:  # noqa: BLE001 - a scrape never fails for the outbox's sake
            log.exception("the outbox could not be read for /metrics")
            stats, counts = {}, {}
        for destination, values in sorted(stats.items()):
            for name, value in sorted(values.items()):
                if name.startswith("outcome:"):
                    deliveries.add_metric([destination, name[8:]], value)
            running, buckets = 0.0, []
            for bound in (*LATENCY_BUCKETS, "+Inf"):
                running += values.get(f"le:{bound}", 0.0)
                buckets.append((str(bound), running))
            seconds.add_metric([destination], buckets, values.get("sum", 0.0))
        for destination, states in sorted(counts.items()):
            depth.add_metric([destination], states["pending"] + states["failed"] + states["in_flight"])
        yield deliveries
        yield seconds
        yield depth
