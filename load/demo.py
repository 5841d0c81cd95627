"""The demo (`trackbone demo`): the whole product on one machine, then what it saw.

It runs the real pieces, not a mock-up: the local Kafka broker (unless one is
configured), one `trackbone worker` subprocess, one `trackbone sink` subprocess
writing embedded chdb, and the carrier simulator producing a Singles Day slice as
Avro at a paced rate. Every number in the report is read back from the product's
outputs: the worker's `/metrics`, ClickHouse through the sink's `POST /query` (the
embedded engine belongs to the sink process), the tracking API `GET /parcels/{id}`
and the status topic. The simulator's own counts are never shown, so the report is evidence
that the pipeline did its job rather than an echo of the input.

Each run gets a fresh topic prefix and app id (old runs' topics never mix in), a
wiped data dir, and deletes its topics at the end unless asked to keep them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shlex
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from load import charts
from load.simulator import Scenario, SimEvent, simulate
from load.worker_process import (
    SinkClient,
    SinkProcess,
    WorkerClient,
    WorkerError,
    WorkerProcess,
    worker_env,
)
from projections.jsonform import format_time, parse_time
from projections.milestones import CUSTOMS_MILESTONE, FORWARD_RANK, SCAN_MILESTONE, Milestone
from streams.kafka_io import security_options
from streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PARCELS = 12_000
DEFAULT_RATE = 5000.0
DEFAULT_OUT = Path("out/demo")
HEALTH_TIMEOUT_S = 120.0
SAMPLE_EVERY_S = 0.25
STATS_EVERY_S = 2.0
DUPLICATES = "trackbone_events_duplicate_total"
FLUSH_EVERY_S = 0.1
"""Paced production: send what the token bucket released at least this often."""


DemoError = WorkerError
"""A step of the demo failed; the message says which and what to look at."""


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What one demo run does; the command line builds it."""

    parcels: int = DEFAULT_PARCELS
    seed: int = 11
    rate: float = DEFAULT_RATE
    out_dir: Path = DEFAULT_OUT
    data_dir: Path | None = None
    """None: ``<settings.data_dir>/demo`` (wiped at the start of every run)."""
    keep_topics: bool = False
    stall_timeout_s: float = 120.0
    """Give up waiting for the worker after this long without any progress."""


# --------------------------------------------------------------------------- HTTP client


def demo_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The run's prefix and app id; the operator's Kafka and sink knobs kept."""
    keep = ("TRACKBONE_KAFKA_HOME", "TRACKBONE_KAFKA_VERSION", "TRACKBONE_SINK_FLUSH_S")
    return worker_env(
        bootstrap,
        settings.topic_prefix,
        settings.app_id,
        TRACKBONE_PARTITIONS=str(settings.partitions),
        **{k: os.environ[k] for k in keep if k in os.environ},
    )


def demo_worker(settings: Settings, bootstrap: str, data_dir: Path) -> WorkerProcess:
    """The demo's worker (no ClickHouse: the sink process writes it)."""
    return WorkerProcess(demo_env(settings, bootstrap), data_dir, log=data_dir / "worker.log")


def demo_sink(settings: Settings, bootstrap: str, data_dir: Path) -> SinkProcess:
    """The demo's ClickHouse sink: owns the embedded engine under its data dir."""
    return SinkProcess(demo_env(settings, bootstrap), data_dir, log=data_dir / "sink.log")


class Pipeline:
    """What the demo reads back: the worker's API and the sink's (ClickHouse) API."""

    def __init__(self, worker: WorkerClient, sink: SinkClient) -> None:
        self.worker = worker
        self.sink = sink

    def metrics(self) -> dict[str, float]:
        return self.worker.metrics()

    def stream_time(self) -> int | None:
        return self.worker.stream_time()

    def parcel(self, parcel_id: str) -> dict[str, Any] | None:
        return self.worker.parcel(parcel_id)

    def sink_rows(self) -> int:
        return self.sink.sink_rows()

    def sink_progress(self) -> tuple[int, int]:
        """Rows the sink wrote and output records it has yet to read (one /metrics call)."""
        metrics = self.sink.metrics()
        lag = sum(v for k, v in metrics.items() if k.startswith("trackbone_sink_consumer_lag{"))
        return int(metrics.get("trackbone_sink_rows_total", 0)), int(lag)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.sink.query(sql, params)


# --------------------------------------------------------------------------- producing


@dataclass(slots=True)
class Sample:
    """One look at the pipeline during the run (for the live line and the throughput chart)."""

    t: float
    produced: int
    events_in: int
    applied: int
    duplicates: int
    dead_lettered: int
    statuses: int
    sink_rows: int
    sink_lag: int = 0
    """Worker output records the sink has not read yet: how far ClickHouse is behind."""


@dataclass(slots=True)
class Progress:
    """Shared between the producer and the monitor (one event loop, no locks needed)."""

    total: int
    produced: int = 0
    failed: int = 0
    producing: bool = True
    phase: str = "producing"
    samples: list[Sample] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


async def produce_paced(
    events: Sequence[SimEvent], settings: Settings, bootstrap: str, rate: float, progress: Progress
) -> int:
    """Produce the events in arrival order as Avro at ``rate`` events/s; return the count sent.

    Records go through the bulk batch path, flushed every FLUSH_EVERY_S so the worker
    sees a steady feed rather than one burst when a 256 KiB batch finally fills.
    """
    from load.commands.simulate import TokenBucket
    from streams.avro import encode_event, topic_base_for
    from streams.kafka_io import BatchSender, make_producer

    producer = make_producer(bootstrap, client_id="trackbone-demo")
    await producer.start()
    sender = BatchSender(producer)
    topics: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(rate, capacity=max(1.0, rate / 10)) if rate > 0 else None
    chunk = max(1, min(500, int(rate / 50))) if rate > 0 else 500
    last_flush = loop.time()
    try:
        for count, item in enumerate(events, start=1):
            event = item.event
            base = topic_base_for(event)
            topic = topics.get(base) or topics.setdefault(base, settings.topics.name(base))
            await sender.send(topic, event.parcel_id.encode(), encode_event(event))
            if count % chunk:
                continue
            progress.produced = count
            if loop.time() - last_flush >= FLUSH_EVERY_S:
                await sender.flush()
                last_flush = loop.time()
            wait = bucket.wait_time(loop.time(), chunk) if bucket is not None else 0.0
            await asyncio.sleep(wait)  # pacing (and a yield to the monitor), not a sync
        sent = await sender.flush()
    finally:
        await producer.stop()
    progress.produced = sent
    progress.failed = sender.failed
    if sender.failed:
        raise DemoError(f"{sender.failed} events could not be produced: {sender.first_error!r}")
    return sent


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> list[Any]:
    """Every partition of the topics, from the broker (a plain consumer knows only its own)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="trackbone-demo", **security_options()
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        TopicPartition(topic["topic"], part["partition"])
        for topic in described
        if topic["error_code"] == 0
        for part in topic["partitions"]
    )


class StatusOffsets:
    """Records in the status topic so far (sum of its end offsets), for the live line."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: Any = None
        self._partitions: list[Any] = []

    async def __aenter__(self) -> StatusOffsets:
        from aiokafka import AIOKafkaConsumer

        self._partitions = await topic_partitions(self.bootstrap, [self.topic])
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, **security_options()
        )
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def count(self) -> int:
        if not self._partitions:
            return 0
        ends = await self._consumer.end_offsets(self._partitions)
        return int(sum(ends.values()))


def take_sample(
    client: Pipeline, progress: Progress, statuses: int, sink_rows: int, sink_lag: int = 0
) -> Sample:
    metrics = client.metrics()
    return Sample(
        t=time.monotonic() - progress.started,
        produced=progress.produced,
        events_in=int(metrics.get("trackbone_events_in_total", 0)),
        applied=int(metrics.get("trackbone_events_applied_total", 0)),
        duplicates=int(metrics.get("trackbone_events_duplicate_total", 0)),
        dead_lettered=int(metrics.get("trackbone_events_dead_lettered_total", 0)),
        statuses=statuses,
        sink_rows=sink_rows,
        sink_lag=sink_lag,
    )


class LiveLine:
    """One status line on stderr, rewritten in place on a terminal (else every few seconds)."""

    def __init__(self, stream: TextIO, every_s: float = 5.0, offset_s: float = 0.0) -> None:
        self.stream = stream
        self.offset_s = offset_s
        """Added to the samples' times: the lines share the clock of the demo's other lines."""
        self.tty = stream.isatty()
        self.every_s = every_s
        self._last_plain = -math.inf
        self._width = 0

    def show(self, progress: Progress, sample: Sample, *, force: bool = False) -> None:
        samples = progress.samples
        window = [s for s in samples if s.t >= sample.t - 2.0] or [sample]
        span = max(sample.t - window[0].t, 1e-9)
        produced_rate = (sample.produced - window[0].produced) / span
        applied_rate = (sample.events_in - window[0].events_in) / span
        text = (
            f"{progress.phase}: produced {sample.produced:,}/{progress.total:,} "
            f"({produced_rate:,.0f}/s) | worker in {sample.events_in:,} ({applied_rate:,.0f}/s),"
            f" lag {max(0, sample.produced - sample.events_in):,},"
            f" applied {sample.applied:,}, dup {sample.duplicates:,},"
            f" dead letters {sample.dead_lettered:,} | statuses {sample.statuses:,}"
            f" | ClickHouse rows {sample.sink_rows:,}"
        )
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
            self.stream.flush()
        elif force or sample.t - self._last_plain >= self.every_s:
            self._last_plain = sample.t
            self.stream.write(f"[{sample.t + self.offset_s:5.1f} s] {text}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


async def monitor(
    client: Pipeline,
    offsets: StatusOffsets,
    progress: Progress,
    line: LiveLine,
    stop: asyncio.Event,
) -> None:
    """Sample the pipeline every SAMPLE_EVERY_S until ``stop`` is set."""
    sink_rows = sink_lag = 0
    last_stats = -math.inf
    while True:
        try:
            statuses = await offsets.count()
            if time.monotonic() - last_stats >= STATS_EVERY_S or stop.is_set():
                # a second process to ask: less often than the worker
                last_stats = time.monotonic()
                sink_rows, sink_lag = await asyncio.to_thread(client.sink_progress)
            sample = await asyncio.to_thread(
                take_sample, client, progress, statuses, sink_rows, sink_lag
            )
        except (OSError, DemoError):
            sample = None  # a slow answer while the worker is busy: skip this sample
        if sample is not None:
            progress.samples.append(sample)
            line.show(progress, sample)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


# --------------------------------------------------------------------------- catching up


@dataclass(frozen=True, slots=True)
class StatusTopicView:
    """The status topic read to its end: the latest record per parcel."""

    records: int
    parcels: int
    """Parcels whose latest record is a status (not a tombstone)."""
    version_sum: int
    event_count_sum: int


async def committed_all(bootstrap: str, group: str, topics: Sequence[str]) -> bool:
    """Tell whether the group's committed offsets reached the end of every input partition.

    The worker commits an input offset only after flushing what it produced for it, so
    at that point the status topic holds every status the run will produce.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    partitions = await topic_partitions(bootstrap, topics)
    if not partitions:
        return False
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **security_options())
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="trackbone-demo", **security_options()
    )
    await consumer.start()
    await admin.start()
    try:
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await consumer.stop()
        await admin.close()
    for tp, end in ends.items():
        if end == 0:
            continue
        meta = committed.get(tp)
        if meta is None or meta.offset < end:
            return False
    return True


async def read_status_topic(bootstrap: str, topic: str) -> StatusTopicView:
    """Read the compacted status topic from the start to its current end."""
    from aiokafka import AIOKafkaConsumer

    from streams.avro import decode_status

    partitions = await topic_partitions(bootstrap, [topic])
    if not partitions:
        raise DemoError(f"topic {topic} has no partitions (does it exist?)")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **security_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    latest: dict[bytes, tuple[int, int] | None] = {}
    records = 0
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + 120.0
        while remaining:
            if time.monotonic() > deadline:
                raise DemoError(f"reading {topic} to its end took over 120 s")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, recs in batch.items():
                for rec in recs:
                    records += 1
                    if rec.value is None:
                        latest[rec.key] = None
                    else:
                        status = decode_status(rec.value)
                        latest[rec.key] = (int(status["version"]), int(status["event_count"]))
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    live = [value for value in latest.values() if value is not None]
    return StatusTopicView(
        records=records,
        parcels=len(live),
        version_sum=sum(v for v, _ in live),
        event_count_sum=sum(c for _, c in live),
    )


def clickhouse_totals(client: Pipeline) -> dict[str, int]:
    (row,) = client.query(
        "SELECT (SELECT count() FROM parcel_state FINAL) AS parcels,"
        " (SELECT sum(version) FROM parcel_state FINAL) AS version_sum,"
        " (SELECT count() FROM parcel_events FINAL) AS events"
    )
    return {k: int(v or 0) for k, v in row.items()}


# --------------------------------------------------------------------------- report data

LANE = "concat(origin_country, '->', destination_country)"
SCOPE = "if(origin_country = destination_country, 'domestic', 'international')"
PROMISE_H = "dateDiff('millisecond', registered_at, promised_at) / 3600000.0"


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the report prints and the charts draw, read back from the product."""

    metrics: dict[str, float]
    totals: dict[str, int]
    milestones: list[dict[str, Any]]
    sla: list[dict[str, Any]]
    lanes: list[dict[str, Any]]
    scopes: list[dict[str, Any]]
    hubs: list[dict[str, Any]]
    customs: list[dict[str, Any]]
    late_end: LateSnapshot
    late_mid: LateSnapshot | None
    late_mid_note: str | None
    transit_bins: list[dict[str, Any]]
    sample_parcel: dict[str, Any] | None
    status_view: StatusTopicView
    last_delivery: int | None = None
    """Epoch millis of the latest delivery in ClickHouse."""


@dataclass(frozen=True, slots=True)
class LateSnapshot:
    """Parcels past their promise, not delivered or returned, as of the worker's stream time."""

    stream_time: int | None
    events_in: int
    count: int
    by_milestone: list[dict[str, Any]]
    examples: list[dict[str, Any]]


def late_snapshot(client: Pipeline, as_of: int | None = None) -> LateSnapshot:
    """Ask ClickHouse which parcels are late as of a time, by default the stream time.

    The stream time (the latest event time in the data, ``STREAM_TIME_SQL``) rather than
    the wall clock: a simulated Singles Day is not today. It is the default as-of of
    `trackbone query --named late_now` too, so the report and the query agree; mid-run
    the as-of is the worker's stream time at that moment.
    """
    from streams.commands.query import STREAM_TIME_SQL

    events_in = int(client.metrics().get("trackbone_events_in_total", 0))
    if as_of is None:
        rows = client.query(STREAM_TIME_SQL)
        as_of = int(rows[0]["ms"]) if rows and rows[0]["ms"] else 0
    late = {"as_of": as_of}
    source = "parcels_late_at(as_of = fromUnixTimestamp64Milli({as_of:Int64}, 'UTC'))"
    return LateSnapshot(
        stream_time=as_of,
        events_in=events_in,
        count=int(client.query(f"SELECT count() AS n FROM {source}", late)[0]["n"]),
        by_milestone=client.query(
            f"SELECT toString(milestone) AS milestone, count() AS parcels FROM {source}"
            " GROUP BY milestone ORDER BY parcels DESC",
            late,
        ),
        examples=[
            {**r, "lane": f"{r['origin_country']}->{r['destination_country']}"}
            for r in client.query(named_query("late_now"), late)[:5]
        ],
    )


def named_query(name: str) -> str:
    from streams.commands.query import named_queries

    return named_queries()[name]


def gather_report(
    client: Pipeline,
    status_view: StatusTopicView,
    late_mid: LateSnapshot | None = None,
    late_mid_note: str | None = None,
    transit_bin_hours: float = 4.0,
) -> Report:
    """Ask ClickHouse, the metrics and the tracking API for the report's numbers."""
    q = client.query
    late_end = late_snapshot(client)
    return Report(
        metrics=client.metrics(),
        totals=clickhouse_totals(client),
        milestones=q(
            "SELECT toString(milestone) AS milestone, count() AS parcels FROM parcel_state FINAL"
            " GROUP BY milestone ORDER BY parcels DESC"
        ),
        sla=q(named_query("sla_by_lane"), {"as_of": late_end.stream_time or 0}),
        lanes=q(
            f"SELECT {LANE} AS lane, {SCOPE} AS scope, count() AS delivered,"
            " countIf(on_time) / count() AS on_time_share,"
            " quantileExactInclusive(0.9)(transit_hours) AS p90,"
            f" min({PROMISE_H}) AS promise_min, max({PROMISE_H}) AS promise_max"
            " FROM deliveries GROUP BY lane, scope ORDER BY delivered DESC, lane"
        ),
        scopes=q(
            f"SELECT {SCOPE} AS scope, service, count() AS delivered,"
            " countIf(on_time) / count() AS on_time_share,"
            f" median({PROMISE_H}) AS promise_hours,"
            " quantileExactInclusive(0.5)(transit_hours) AS p50,"
            " quantileExactInclusive(0.9)(transit_hours) AS p90"
            " FROM deliveries GROUP BY scope, service WITH ROLLUP"
            " HAVING scope != '' ORDER BY scope, service = '', service"
        ),
        hubs=q(named_query("slowest_hubs")),
        customs=q(named_query("customs_delays")),
        late_end=late_end,
        late_mid=late_mid,
        late_mid_note=late_mid_note,
        transit_bins=q(
            f"SELECT {SCOPE} AS scope, service,"
            " floor(transit_hours / {bin:Float64}) * {bin:Float64} AS bin, count() AS parcels"
            " FROM deliveries GROUP BY scope, service, bin ORDER BY scope, service, bin",
            {"bin": transit_bin_hours},
        ),
        sample_parcel=pick_sample_parcel(client),
        status_view=status_view,
        last_delivery=(
            q("SELECT toUnixTimestamp64Milli(max(delivered_at)) AS ms FROM deliveries")[0]["ms"]
            or None
        ),
    )


def pick_sample_parcel(client: Pipeline) -> dict[str, Any] | None:
    """A delivered international parcel with an import customs hold, failed attempts first."""
    held = (
        "SELECT parcel_id FROM parcel_events FINAL WHERE event_type = 'CustomsStatusRecorded'"
        " AND customs_status = 'HELD'"
    )
    candidates = [
        f"milestone = 'DELIVERED' AND origin_country != destination_country"
        f" AND parcel_id IN ({held} AND customs_direction = 'IMPORT')",
        f"milestone = 'DELIVERED' AND parcel_id IN ({held})",
        "milestone = 'DELIVERED'",
        "1",
    ]
    for where in candidates:
        rows = client.query(
            f"SELECT parcel_id FROM parcel_state FINAL WHERE {where}"
            " ORDER BY attempts > 0 DESC, event_count DESC, parcel_id LIMIT 1"
        )
        if rows:
            return client.parcel(str(rows[0]["parcel_id"]))
    return None


# --------------------------------------------------------------------------- formatting


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Plain-text table: numbers right-aligned, text left-aligned, a rule under the header."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(list(headers)), indent + "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} h"


def local_time(ms: int, tz_minutes: int) -> str:
    """Render an instant in the local time of where it happened, with its UTC offset."""
    zone = timezone(timedelta(minutes=tz_minutes))
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone)
    sign = "+" if tz_minutes >= 0 else "-"
    hh, mm = divmod(abs(tz_minutes), 60)
    return f"{moment:%a %d %b %H:%M} {sign}{hh:02d}:{mm:02d}"


def utc_time(value: str | int | None) -> str:
    if value is None:
        return "-"
    ms = parse_time(value, "time") if isinstance(value, str) else value
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%a %d %b %H:%M} UTC"


def describe_event(event: Mapping[str, Any]) -> str:
    kind = event.get("type")
    if kind == "ParcelRegistered":
        promise = event.get("promised_hours")
        return f"registered by {event.get('merchant_id')}" + (
            f" (promise {promise} h)" if promise else ""
        )
    if kind == "ParcelScanned":
        return f"scan {event.get('scan')}"
    if kind == "ParcelHandedOver":
        return f"handed over {event.get('from_party')} -> {event.get('to_party')}"
    if kind == "CustomsStatusRecorded":
        reason = f" ({event['reason']})" if event.get("reason") else ""
        return f"customs {event.get('direction')} {event.get('status')}{reason}"
    if kind == "EventVoided":
        return f"voided {event.get('voided_event_id')} ({event.get('reason')})"
    return str(kind)


_SCAN_MILESTONE = {str(scan): milestone for scan, milestone in SCAN_MILESTONE.items()}
_CUSTOMS_MILESTONE = {str(d): milestone for d, milestone in CUSTOMS_MILESTONE.items()}


def milestone_of(event: Mapping[str, Any]) -> Milestone | None:
    """The forward milestone an event stands for (contract section 2), if any."""
    kind = event.get("type")
    if kind == "ParcelRegistered":
        return Milestone.REGISTERED
    if kind == "ParcelScanned":
        return _SCAN_MILESTONE.get(str(event.get("scan")))
    if kind == "CustomsStatusRecorded":
        return _CUSTOMS_MILESTONE.get(str(event.get("direction")))
    return None


def _city(registration: Mapping[str, Any], side: str) -> str:
    return str((registration.get(side) or {}).get("city") or "?")


def format_parcel(parcel: Mapping[str, Any]) -> str:
    """The where-is-my-parcel answer: the state, then the timeline in local times."""
    timeline: list[Mapping[str, Any]] = parcel.get("timeline") or []
    first = timeline[0] if timeline else {}
    origin_tz = int(first.get("tz_offset_minutes", 0))
    delivered = parcel.get("delivered_at")
    promised = parcel.get("promised_at")
    verdict = ""
    if delivered and promised:
        late = parse_time(delivered, "delivered_at") - parse_time(promised, "promised_at")
        verdict = (
            f" ({-late / 3_600_000:.1f} h before the promise)"
            if late <= 0
            else f" ({late / 3_600_000:.1f} h LATE)"
        )
    registration = next((e for e in timeline if e.get("type") == "ParcelRegistered"), {})
    head = [
        ("parcel", parcel.get("parcel_id")),
        (
            "lane",
            f"{_city(registration, 'origin')}, {parcel.get('origin_country')} -> "
            f"{_city(registration, 'destination')}, {parcel.get('destination_country')}; "
            f"{parcel.get('service')}, promise {parcel.get('promised_hours')} h",
        ),
        ("milestone", parcel.get("milestone")),
        ("custodian", parcel.get("custodian")),
        ("registered", utc_time(parcel.get("registered_at"))),
        ("promised by", utc_time(promised)),
        ("delivered", utc_time(delivered) + verdict),
        (
            "events",
            f"{parcel.get('event_count')} effective, {parcel.get('attempts')} failed attempts, "
            f"holds now: {', '.join(parcel.get('holds') or []) or 'none'}",
        ),
    ]
    if parcel.get("eta_p50"):
        head.append(
            ("ETA p50/p90", f"{utc_time(parcel['eta_p50'])} / {utc_time(parcel.get('eta_p90'))}")
        )
    lines = [f"  {name:>12}: {value}" for name, value in head]
    rows = []
    rank = -1
    custodian = "-"
    start = parse_time(first["event_time"], "event_time") if first else 0
    for event in timeline:
        ms = parse_time(event["event_time"], "event_time")
        tz = int(event.get("tz_offset_minutes", origin_tz))
        milestone = milestone_of(event)
        mark = ""
        if milestone is not None and FORWARD_RANK[milestone] > rank:
            rank = FORWARD_RANK[milestone]
            mark = str(milestone)
        if event.get("type") == "ParcelHandedOver" and event.get("to_party"):
            custodian = str(event["to_party"])
        location = event.get("location") or {}
        place = location.get("facility_id") or location.get("city")
        rows.append(
            [
                local_time(ms, tz),
                f"+{(ms - start) / 3_600_000:.1f} h",
                place or "-",
                describe_event(event),
                mark,
                custodian,
            ]
        )
    lines.append("")
    lines.append(
        format_table(["local time", "elapsed", "where", "what", "milestone", "custodian"], rows)
    )
    return "\n".join(lines)


def format_late(snapshot: LateSnapshot, when: str) -> str:
    """One late-parcels snapshot: how many, at which milestone, the worst few."""
    out = [
        f"  {when}: as of {utc_time(snapshot.stream_time)} (stream time),"
        f" {snapshot.events_in:,} events consumed: {snapshot.count:,} parcels past their"
        " promise, not delivered or returned"
    ]
    if snapshot.by_milestone:
        out.append(
            "  waiting at: "
            + ", ".join(f"{r['milestone']} {int(r['parcels']):,}" for r in snapshot.by_milestone)
        )
        out.append(
            format_table(
                ["parcel", "milestone", "lane", "service", "custodian", "late by", "last event"],
                [
                    [
                        r["parcel_id"],
                        r["milestone"],
                        r["lane"],
                        r["service"],
                        r["custodian"],
                        hours(r["hours_late"]),
                        utc_time(r["last_event_time"]),
                    ]
                    for r in snapshot.examples
                ],
            )
        )
    return "\n".join(out)


def section(title: str) -> str:
    return f"\n== {title} " + "=" * max(3, 74 - len(title))


def format_report(report: Report, *, top: int = 12) -> str:
    """The visibility report as plain text."""
    m = report.metrics
    t = report.totals
    out: list[str] = []
    out.append(section("Totals (worker /metrics, ClickHouse)"))
    counts = [
        ("events in (consumed by the worker)", int(m.get("trackbone_events_in_total", 0))),
        ("  applied by the fold", int(m.get("trackbone_events_applied_total", 0))),
        (
            "  duplicates (at-least-once re-sends)",
            int(m.get("trackbone_events_duplicate_total", 0)),
        ),
        ("  dead-lettered", int(m.get("trackbone_events_dead_lettered_total", 0))),
        ("parcels in ClickHouse (parcel_state FINAL)", t["parcels"]),
        ("effective events in ClickHouse (parcel_events FINAL)", t["events"]),
        ("status records on the status topic", report.status_view.records),
        ("alerts raised", int(m.get("trackbone_alerts_total", 0))),
    ]
    width = max(len(name) for name, _ in counts)
    out.extend(f"  {name:<{width}}  {value:>10,}" for name, value in counts)
    reasons = sorted(
        (k.split('reason="', 1)[1].rstrip('"}'), int(v))
        for k, v in m.items()
        if k.startswith("trackbone_events_dead_lettered_total{")
    )
    if reasons:
        out.append("  dead letters by reason: " + ", ".join(f"{r} {n:,}" for r, n in reasons))
    alerts = sorted(
        (k.split('alert="', 1)[1].rstrip('"}'), int(v))
        for k, v in m.items()
        if k.startswith("trackbone_alerts_total{")
    )
    if alerts:
        out.append("  alerts by kind: " + ", ".join(f"{a} {n:,}" for a, n in alerts))
    out.append(
        "  parcels by milestone: "
        + ", ".join(f"{r['milestone']} {int(r['parcels']):,}" for r in report.milestones)
    )

    out.append(
        section("SLA by lane and service (deliveries up to the stream time; top lanes by volume)")
    )
    out.append(
        format_table(
            ["lane", "service", "delivered", "on time", "promise", "p50 transit", "p90 transit"],
            [
                [
                    r["lane"],
                    r["service"],
                    int(r["delivered"]),
                    pct(r["on_time_share"]),
                    hours(r["promise_hours"]),
                    hours(r["p50_transit_hours"]),
                    hours(r["p90_transit_hours"]),
                ]
                for r in report.sla[:top]
            ],
        )
    )
    if len(report.sla) > top:
        rest = report.sla[top:]
        out.append(
            f"  ... {len(rest)} more lane/service pairs with"
            f" {sum(int(r['delivered']) for r in rest):,} deliveries"
            " (all of them: the sla_by_lane query below)"
        )

    out.append(section("On-time share against the promise (each parcel against its own)"))
    out.append(
        format_table(
            ["scope", "service", "delivered", "on time", "promise", "p50 transit", "p90 transit"],
            [
                [
                    r["scope"],
                    r["service"] or "all",
                    int(r["delivered"]),
                    pct(r["on_time_share"]),
                    hours(r["promise_hours"]),
                    hours(r["p50"]),
                    hours(r["p90"]),
                ]
                for r in report.scopes
            ],
        )
    )

    out.append(section("Slowest hubs (p90 dwell from arrival to departure)"))
    out.append(
        format_table(
            ["facility", "hub", "city", "visits", "p50 dwell", "p90 dwell", "max dwell"],
            [
                [
                    r["facility_id"],
                    r["hub"].lower(),
                    f"{r['city']}, {r['country']}",
                    int(r["visits"]),
                    hours(r["p50_dwell_hours"]),
                    hours(r["p90_dwell_hours"]),
                    hours(r["max_dwell_hours"]),
                ]
                for r in report.hubs[:8]
            ],
        )
    )

    out.append(section("Customs delays by country (first SUBMITTED/HELD to RELEASED/REFUSED)"))
    out.append(
        format_table(
            ["country", "direction", "parcels", "held", "refused", "p50 dwell", "p90 dwell"],
            [
                [
                    r["country"],
                    str(r["direction"]).lower(),
                    int(r["parcels"]),
                    pct(r["held_share"]),
                    int(r["refused_count"]),
                    hours(r["p50_dwell_hours"]),
                    hours(r["p90_dwell_hours"]),
                ]
                for r in report.customs[:top]
            ],
        )
    )

    out.append(section("Parcels late right now"))
    if report.late_mid is not None:
        out.append(format_late(report.late_mid, "mid-run"))
        out.append("")
    elif report.late_mid_note:
        out.append(f"  ({report.late_mid_note})")
    out.append(format_late(report.late_end, "at the end of the feed"))

    out.append(section("Where is my parcel? (GET /parcels/{id} on the worker)"))
    if report.sample_parcel is None:
        out.append("  (no parcel found)")
    else:
        out.append(format_parcel(report.sample_parcel))

    out.append(section("Status topic vs ClickHouse"))
    sv = report.status_view
    same = (sv.parcels, sv.version_sum) == (t["parcels"], t["version_sum"])
    out.append(
        f"  status topic: {sv.parcels:,} parcels (latest record per key, {sv.records:,} records),"
        f" versions summing to {sv.version_sum:,}"
    )
    out.append(
        f"  ClickHouse:   {t['parcels']:,} parcels in parcel_state FINAL,"
        f" versions summing to {t['version_sum']:,}"
    )
    out.append(
        f"  effective events: {sv.event_count_sum:,} by the status topic's event_count,"
        f" {t['events']:,} rows in parcel_events FINAL"
    )
    out.append(
        "  -> " + ("they agree" if same and sv.event_count_sum == t["events"] else "MISMATCH")
    )
    return "\n".join(out)


# --------------------------------------------------------------------------- the run


def demo_settings(settings: Settings, run_id: str) -> Settings:
    """A topic prefix and app id of this run only: reruns never read an old run's topics."""
    return replace(settings, topic_prefix=f"demo-{run_id}.", app_id=f"trackbone-demo-{run_id}")


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


async def delete_run_topics(bootstrap: str, settings: Settings) -> int:
    """Delete the topics this run created (its prefix, and the worker's internal ones)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="trackbone-demo", **security_options()
    )
    await admin.start()
    try:
        names = [
            name
            for name in await admin.list_topics()
            if name.startswith((settings.topic_prefix, settings.app_id + "-"))
        ]
        if names:
            await admin.delete_topics(names, timeout_ms=30_000)
        return len(names)
    finally:
        await admin.close()


def cli_prefix(argv0: str | None = None) -> str:
    """How to call trackbone again, as this process was called: runnable as printed.

    ``trackbone`` if that is what the shell finds, else the script's path as given
    (``make demo`` runs ``.venv/bin/trackbone``), else ``python -m streams.cli``.
    """
    script = Path(sys.argv[0] if argv0 is None else argv0)
    if script.name == "trackbone":
        found = shutil.which("trackbone")
        if found is not None and Path(found).resolve() == script.resolve():
            return "trackbone"
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m streams.cli"


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM takes the Ctrl-C path, so the demo still stops what it started."""
    raise KeyboardInterrupt


class Demo:
    """One run: set up, produce and watch, wait, report, chart, tear down."""

    def __init__(
        self,
        config: DemoConfig,
        settings: Settings,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.config = config
        self.base_settings = settings
        self.run_id = new_run_id()
        self.settings = demo_settings(settings, self.run_id)
        self.data_dir = (config.data_dir or settings.data_dir / "demo").resolve()
        self.out = sys.stdout if out is None else out
        self.err = sys.stderr if err is None else err
        self.broker: Any = None
        self.worker: WorkerProcess | None = None
        self.sink: SinkProcess | None = None
        self.bootstrap: str | None = None
        self.started = time.monotonic()
        self.charts: list[Path] = []
        self.samples: list[Sample] = []
        self.progress: Progress | None = None
        self.snapshot: LateSnapshot | None = None
        self.snapshot_skipped: str | None = None

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f} s] {text}", file=self.err, flush=True)

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            self.setup()
            report = asyncio.run(self.produce_and_report())
            print(format_report(report), file=self.out, flush=True)
            self.write_charts(report)
            self.print_next(report)
            verified = self.verify()
            return 0 if self.consistent(report) and verified else 1
        finally:
            try:
                self.teardown()
            finally:
                signal.signal(signal.SIGTERM, previous)

    def setup(self) -> None:
        from streams.broker import LocalBroker

        shutil.rmtree(self.data_dir, ignore_errors=True)  # the previous demo's state
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.base_settings.kafka_bootstrap:
            self.bootstrap = self.base_settings.kafka_bootstrap
            self.say(f"Kafka: using TRACKBONE_KAFKA_BOOTSTRAP={self.bootstrap}")
        else:
            broker = LocalBroker(self.base_settings)
            running = broker.status()
            if running is not None:
                self.bootstrap = str(running["bootstrap"])
                self.say(f"Kafka: using the running local broker at {self.bootstrap}")
            else:
                self.say(
                    "Kafka: starting the local broker (the first run fetches the jars from"
                    " Maven Central)..."
                )
                self.bootstrap = broker.start()
                self.broker = broker
                self.say(f"Kafka: local broker ready at {self.bootstrap} (stopped at the end)")
        from streams.kafka_io import ensure_contract_topics

        asyncio.run(ensure_contract_topics(self.settings, self.bootstrap))
        self.say(f"topics: prefix {self.settings.topic_prefix!r}, app id {self.settings.app_id}")
        self.sink = demo_sink(self.settings, self.bootstrap, self.data_dir / "sink")
        self.say(f"sink: starting with embedded ClickHouse under {self.sink.data_dir}...")
        self.sink.start()
        self.say(f"sink: healthy at {self.sink.client.url} (log {self.sink.log})")
        self.worker = demo_worker(self.settings, self.bootstrap, self.data_dir / "worker")
        self.say("worker: starting...")
        self.worker.start()
        self.say(f"worker: healthy at {self.worker.client.url} (log {self.worker.log})")

    def teardown(self) -> None:
        for name, proc in (("worker", self.worker), ("sink", self.sink)):
            if proc is not None and proc.proc is not None:
                code = proc.stop()
                self.say(f"{name}: stopped (exit code {code})")
        if self.bootstrap is not None and not self.config.keep_topics:
            try:
                deleted = asyncio.run(delete_run_topics(self.bootstrap, self.settings))
                self.say(f"topics: deleted this run's {deleted} topics")
            except Exception as exc:  # cleanup is best effort; the prefix keeps runs apart
                self.say(f"topics: could not delete this run's topics: {exc!r}")
        if self.broker is not None:
            self.broker.stop()
            self.say("Kafka: local broker stopped")

    # -- the main phase -------------------------------------------------------------------

    def scenario(self) -> Scenario:
        return Scenario(parcels=self.config.parcels, seed=self.config.seed)

    async def produce_and_report(self) -> Report:
        assert self.worker is not None and self.sink is not None and self.bootstrap is not None
        client = Pipeline(self.worker.client, self.sink.client)
        scenario = self.scenario()
        self.say(
            f"simulating a Singles Day slice: {scenario.parcels:,} parcels registered from"
            f" {utc_time(scenario.start_ms)} over {scenario.registration_hours:.0f} h"
            " (10x surge in the first 24 h), seed "
            f"{scenario.seed}"
        )
        events = list(simulate(scenario))
        rate = self.config.rate
        self.say(
            f"producing {len(events):,} carrier events to Kafka at "
            + (f"{rate:,.0f} events/s" if rate > 0 else "full speed")
            + (f" (about {len(events) / rate:.0f} s)" if rate > 0 else "")
        )
        progress = self.progress = Progress(total=len(events))
        line = LiveLine(self.err, offset_s=progress.started - self.started)
        stop = asyncio.Event()
        async with StatusOffsets(self.bootstrap, self.settings.topics.parcel_status) as offsets:
            watcher = asyncio.create_task(monitor(client, offsets, progress, line, stop))
            snapshotter = asyncio.create_task(self.snapshot_mid_run(client, progress, stop))
            try:
                produced = await produce_paced(
                    events, self.settings, self.bootstrap, rate, progress
                )
                progress.producing = False
                progress.phase = "draining"
                produce_s = time.monotonic() - progress.started
                view = await self.wait_caught_up(client, produced)
            finally:
                stop.set()
                await watcher
                await snapshotter
                line.close()
        drain_s = time.monotonic() - progress.started - produce_s
        self.samples = progress.samples
        lags = charts.lag_seconds([(s.t, s.produced, s.events_in) for s in self.samples])
        self.say(
            f"caught up: {produced:,} events produced in {produce_s:.1f} s"
            f" ({produced / max(produce_s, 1e-9):,.0f} events/s); the worker was at most"
            f" {max(lags, default=0.0):.1f} s behind; everything in ClickHouse"
            f" {drain_s:.1f} s after the last event"
        )
        return await asyncio.to_thread(
            gather_report, client, view, self.snapshot, self.snapshot_skipped
        )

    async def snapshot_mid_run(
        self, client: Pipeline, progress: Progress, stop: asyncio.Event
    ) -> None:
        """Once the worker has consumed half the feed, ask which parcels are late then.

        Only while the worker keeps up: with a backlog it drains the input partitions
        unevenly, so its stream time runs ahead of parcels still waiting in other
        partitions and "late now" would count them wrongly.
        """
        while not stop.is_set():
            samples = progress.samples
            if samples and samples[-1].events_in >= progress.total // 2:
                lag = samples[-1].produced - samples[-1].events_in
                if lag > max(1000, progress.total // 50):
                    self.snapshot_skipped = (
                        f"mid-run snapshot skipped: the worker was {lag:,} events behind, so"
                        " its stream time was ahead of parcels still queued in Kafka"
                    )
                    return
                try:
                    self.snapshot = await asyncio.to_thread(
                        late_snapshot, client, client.stream_time()
                    )
                except (OSError, DemoError) as exc:
                    self.say(f"mid-run snapshot failed: {exc}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)

    async def wait_caught_up(self, client: Pipeline, produced: int) -> StatusTopicView:
        """Wait (conditions with deadlines) until worker, status topic and ClickHouse agree."""
        assert self.bootstrap is not None and self.worker is not None
        stall = self.config.stall_timeout_s
        last_marker: tuple[int, ...] = ()
        last_change = time.monotonic()

        async def until(check: Callable[[], Any], what: str) -> Any:
            """Poll ``check``; the deadline moves while the pipeline makes progress."""
            nonlocal last_marker, last_change
            while True:
                if not self.worker or not self.worker.alive():
                    raise DemoError(f"the worker died; its log ends with:\n{self.worker_tail()}")
                if not self.sink or not self.sink.alive():
                    tail = self.sink.tail() if self.sink else ""
                    raise DemoError(f"the sink died; its log ends with:\n{tail}")
                value = await check()
                if value:
                    return value
                samples = self.progress.samples if self.progress else []
                if samples:
                    s = samples[-1]
                    marker = (s.events_in, s.statuses, s.sink_rows)
                    if marker != last_marker:
                        last_marker, last_change = marker, time.monotonic()
                if time.monotonic() - last_change > stall:
                    sink_tail = self.sink.tail() if self.sink else ""
                    raise DemoError(
                        f"no progress for {stall:.0f} s while waiting for {what}; worker log:\n"
                        f"{self.worker_tail()}\nsink log:\n{sink_tail}"
                    )
                await asyncio.sleep(0.25)  # poll interval, not a synchronisation

        async def consumed() -> bool:
            metrics = await asyncio.to_thread(client.metrics)
            return int(metrics.get("trackbone_events_in_total", 0)) >= produced

        async def committed() -> bool:
            return await committed_all(
                self.bootstrap or "", self.settings.app_id, self.settings.topics.inputs
            )

        await until(consumed, f"the worker to consume all {produced:,} events")
        await until(committed, "the worker to commit its input offsets")
        view = await read_status_topic(self.bootstrap, self.settings.topics.parcel_status)

        async def in_clickhouse() -> bool:
            totals = await asyncio.to_thread(clickhouse_totals, client)
            return (totals["parcels"], totals["version_sum"], totals["events"]) == (
                view.parcels,
                view.version_sum,
                view.event_count_sum,
            )

        await until(in_clickhouse, f"ClickHouse to hold all {view.parcels:,} parcels")
        return view

    def worker_tail(self) -> str:
        return self.worker.tail() if self.worker is not None else ""

    def verify(self, timeout_s: float = 120.0) -> bool:
        """`trackbone verify` over this run, before its topics go: every event accounted for."""
        from streams.commands.verify import check
        from streams.errors import BEHIND
        from streams.verify import render

        assert self.bootstrap is not None
        settings = replace(self.settings, data_dir=self.data_dir / "sink")
        deadline = time.monotonic() + timeout_s
        while True:
            report = check(settings, self.bootstrap, with_clickhouse=True)
            if report.exit_code != BEHIND or time.monotonic() >= deadline:
                break
            time.sleep(1.0)  # poll interval of a deadline-bounded wait
        print(section("Accounted for (trackbone verify)"), file=self.out)
        for line in render(report, partitions=False).splitlines():
            print(f"  {line}", file=self.out)
        self.out.flush()
        return report.ok

    def consistent(self, report: Report) -> bool:
        t, sv = report.totals, report.status_view
        return (t["parcels"], t["version_sum"], t["events"]) == (
            sv.parcels,
            sv.version_sum,
            sv.event_count_sum,
        )

    # -- charts ---------------------------------------------------------------------------

    def write_charts(self, report: Report) -> None:
        out_dir = self.config.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.charts = [
            charts.on_time_by_lane(report.lanes, out_dir / "on_time_by_lane.png"),
            charts.transit_distributions(
                report.transit_bins,
                out_dir / "transit_times.png",
                {
                    (r["scope"], r["service"]): r["promise_hours"]
                    for r in report.scopes
                    if r["service"] and r["promise_hours"] is not None
                },
            ),
            charts.throughput(
                [(s.t, s.produced, s.events_in) for s in self.samples],
                out_dir / "throughput.png",
                sink_lag=[(s.t, s.sink_lag) for s in self.samples],
            ),
        ]
        print(section("Charts"), file=self.out)
        for path in self.charts:
            print(f"  {path}", file=self.out)
        self.out.flush()

    def next_commands(self, report: Report) -> list[str]:
        """Commands that work as printed once the demo is over: its ClickHouse stays."""
        sink_dir = self.data_dir / "sink"
        try:
            shown = str(sink_dir.relative_to(Path.cwd()))
        except ValueError:
            shown = str(sink_dir)
        base = f"{cli_prefix()} query --data-dir {shlex.quote(shown)}"
        commands = [f"{base} --named sla_by_lane", f"{base} --named late_now"]
        if report.last_delivery:
            # the stream time may be days after the last delivery (returns run on): a week
            # that holds deliveries
            week = format_time(report.last_delivery)
            commands.append(f"{base} --named sla_last_7_days --param as_of={week}")
        if report.sample_parcel is not None:
            parcel = shlex.quote(str(report.sample_parcel["parcel_id"]))
            commands.append(f"{base} --named where_is_my_parcel --param parcel_id={parcel}")
        return commands

    def print_next(self, report: Report) -> None:
        print(section("Try it yourself"), file=self.out)
        print(
            f"  The demo's ClickHouse stays under {self.data_dir / 'sink'} until the next demo"
            " (lateness and SLA windows are as of the stream time, as in this report):",
            file=self.out,
        )
        for command in self.next_commands(report):
            print(f"  {command}", file=self.out)
        self.out.flush()


def run_demo(config: DemoConfig, settings: Settings | None = None) -> int:
    """Run the demo end to end; 0 when the outputs agree, 1 when they do not."""
    return Demo(config, settings or Settings.from_env()).run()
