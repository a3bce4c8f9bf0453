"""Prometheus text-format metrics: counters, a gauge callback and one latency histogram."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_HELP = {
    "intilery_http_requests_total": "HTTP requests by route and status.",
    "intilery_events_accepted_total": "Events stored, by source.",
    "intilery_events_rejected_total": "Events rejected, by source and code.",
    "intilery_events_duplicate_total": "Events answered as accepted but not stored again (same messageId).",
    "intilery_events_bots_dropped_total": "Events from known bots dropped by a source's drop_bots setting.",
    "intilery_events_suppressed_total": "Events of people on the suppression list (privacy requests): answered 200, not stored.",
    "intilery_store_flush_seconds": "Time to write (and fsync, per policy) one group commit.",
    "intilery_store_queue_bytes": "Bytes waiting for the store writer.",
    "intilery_store_ready": "1 when the store takes writes, 0 otherwise.",
    "intilery_nats_inflight_messages": "Messages published to JetStream and waiting for their PubAck.",
    "intilery_nats_duplicates_total": "Publishes JetStream answered as duplicates (already stored by some collector).",
    "intilery_archive_lines_total": "Lines the archive consumer wrote (after dedup).",
    "intilery_plan_violations_total": "Tracking-plan violations, by source, event (planned name, (unplanned), or call) and code.",
}


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """In-process metrics; ``render()`` gives the /metrics body."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.gauges: dict[str, Callable[[], float]] = {}
        self._flush_counts = [0] * (len(FLUSH_BUCKETS) + 1)
        self._flush_sum = 0.0

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        self.counters[name][tuple(labels.items())] += value

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def observe_flush(self, seconds: float) -> None:
        self._flush_sum += seconds
        for i, bound in enumerate(FLUSH_BUCKETS):
            if seconds <= bound:
                self._flush_counts[i] += 1
                return
        self._flush_counts[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        return self.counters[name].get(tuple(labels.items()), 0.0)

    def render(self) -> str:
        out: list[str] = []
        for name, series in sorted(self.counters.items()):
            out.append(f"# HELP {name} {_HELP.get(name, name)}")
            out.append(f"# TYPE {name} counter")
            out.extend(f"{name}{_labels(labels)} {value:g}" for labels, value in sorted(series.items()))
        for name, read in sorted(self.gauges.items()):
            out.append(f"# HELP {name} {_HELP.get(name, name)}")
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {read():g}")
        name = "intilery_store_flush_seconds"
        out.append(f"# HELP {name} {_HELP[name]}")
        out.append(f"# TYPE {name} histogram")
        running = 0
        for bound, count in zip(FLUSH_BUCKETS, self._flush_counts):
            running += count
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        running += self._flush_counts[-1]
        out.append(f'{name}_bucket{{le="+Inf"}} {running}')
        out.append(f"{name}_sum {self._flush_sum:g}")
        out.append(f"{name}_count {running}")
        return "\n".join(out) + "\n"
