"""Prometheus metrics of one worker, in a registry of its own (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest


class Metrics:
    """The counters that prove every input is accounted for, plus lag and latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # RSS and CPU: the benchmark's soak reads them
        self.events_in = Counter("trackbone_events_in", "Input messages consumed", registry=r)
        self.applied = Counter(
            "trackbone_events_applied", "Events accepted by the fold", registry=r
        )
        self.duplicates = Counter(
            "trackbone_events_duplicate", "Repeats of an event already held", registry=r
        )
        self.dead_lettered = Counter(
            "trackbone_events_dead_lettered",
            "Inputs sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.alerts = Counter("trackbone_alerts", "Alerts emitted", ["alert"], registry=r)
        self.lag = Gauge(
            "trackbone_consumer_lag",
            "Messages behind the high-water mark",
            ["topic", "partition"],
            registry=r,
        )
        self.latency = Histogram(
            "trackbone_event_latency_seconds",
            "From the input message's Kafka timestamp to its state being stored",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.sink_rows = Counter(
            "trackbone_sink_rows", "Rows accepted by ClickHouse", ["table"], registry=r
        )

    def render(self) -> tuple[bytes, str]:
        # aiohttp wants the charset outside content_type; the exposition format is UTF-8.
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.split(";")[0]

    def value(self, name: str) -> float:
        """Sum of a metric's samples (all labels), for summaries and tests."""
        total = 0.0
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name == name:
                    total += sample.value
        return total
