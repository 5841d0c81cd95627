"""The end-to-end benchmark behind `trackbone bench`: honest numbers from one machine.

Everything runs in one process tree against the real broker (the one configured, or a
local broker started in a temporary directory and stopped at the end), every phase on
the same simulated events:

1. prepare: simulate N events, Avro-encode them once, produce them with `BatchSender`
   to a fresh topic prefix (the produce rate is reported too);
2. raw loop (`load.raw_loop`): a plain aiokafka consumer doing exactly the worker's
   work (its `BatchProcessor`: core, state encoding, every output encoded) and sending
   its outputs with the worker's `Outputs`: `raw_events_per_s`, what Faust is measured
   against; and `domain_us_per_event`, the same processor with no I/O;
3. replay: `streams.replay.replay` over the same topics (the reference state);
4. fold: `load.fold_bench.run`, the fold alone (in-order and shuffled arrival);
5. workers (`load.worker_bench`): one, then two worker processes of one app id, no
   sink, on a fresh prefix: `worker_events_per_s`, `worker_over_raw`,
   `workers_2_over_1`;
6. pipeline: one worker and one `trackbone sink` (ClickHouse), the same events;
   timed from the first produce to the last status (each parcel's latest status equal
   to the replayed state) and to the last row visible in ClickHouse:
   `worker_sink_over_worker` = that end-to-end rate / the worker alone;
7. sink drain: a fresh sink (new consumer group, new embedded engine) over the
   pipeline's outputs, now a backlog: `sink_rows_per_s` = rows it inserted / seconds
   from its first fetch to its last accepted batch (from its `GET /stats`);
8. latency: new parcels produced paced at half the worker's rate, twice, each on a
   fresh prefix: through a worker alone (status latency per status record = its
   Kafka timestamp - the `source_ts` header, the input record's Kafka timestamp, that
   the worker copies onto it), then through a worker and a sink (ClickHouse-visible
   latency from the sink's `GET /stats`, and the status latency beside a sink).

Progress goes to stderr; the result is one dict (JSON-able), and a PNG latency plot.
A figure the processes cannot provide (no `source_ts` header, no `/query`, no
`/stats`) is reported as null with a note, never estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from load import raw_loop, worker_bench
from load.worker_process import SinkProcess, WorkerError, WorkerProcess, worker_env
from streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent

GOALS: dict[str, tuple[str, float]] = {
    "worker_events_per_s": (">=", 5_000),
    "worker_over_raw": (">=", 0.6),
    "domain_us_per_event": ("<=", 50),
    "sink_rows_per_s": (">=", 20_000),
    "worker_sink_over_worker": (">=", 0.8),
    "clickhouse_visible_ms_p99": ("<=", 1_500),
    "status_latency_ms_p99": ("<=", 50),
}
EVENTS_PER_PARCEL_GUESS = 14
PROFILE_INCLUSIVE = ("getmany", "process", "decode_event", "step", "encode_status", "send")
"""Functions whose inclusive time the profile reports (as a share of non-idle time)."""
PROFILE_IDLE = frozenset({"select", "poll", "_run_once", "run_forever", "epoll.poll"})
STATUS_IGNORED = frozenset({"eta_p50", "eta_p90", "on_time_probability", "eta_basis", "version"})


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What one benchmark run does; `quick` shortens the slow phases for smoke tests."""

    events: int = 1_000_000
    seed: int = 11
    out_dir: Path = Path("out/bench")
    latency_seconds: float = 20.0
    fold_events: int = 200_000
    profile: bool = False
    worker_timeout_s: float = 900.0
    pipeline_budget_s: float = 240.0
    """After this long the pipeline run stops waiting and reports the rate it reached."""
    clickhouse_timeout_s: float = 120.0
    settings: Settings = field(default_factory=Settings.from_env)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- events --------------------------------------------------------------------------------


@dataclass(slots=True)
class Encoded:
    """Events ready to produce: (topic base, key, value), in arrival order."""

    messages: list[tuple[str, bytes, bytes]]
    parcels: int
    simulate_s: float
    encode_s: float


def simulate_encoded(events: int, seed: int, tag: str) -> Encoded:
    """Simulate at least `events` events in arrival order and Avro-encode each once."""
    from load.simulator import Scenario, simulate
    from streams.avro import encode_event, topic_base_for

    parcels = max(1, math.ceil(events / EVENTS_PER_PARCEL_GUESS))
    started = time.perf_counter()
    produced: list[Any] = []
    # Registrations spread in proportion to the size keep the simulator's heap small.
    scenario = Scenario(
        parcels=parcels, seed=seed, id_tag=tag, registration_hours=max(24.0, parcels / 500)
    )
    for item in simulate(scenario):
        produced.append(item.event)
        if len(produced) >= events:
            break
    simulate_s = time.perf_counter() - started
    started = time.perf_counter()
    messages = [(topic_base_for(e), e.parcel_id.encode(), encode_event(e)) for e in produced]
    encode_s = time.perf_counter() - started
    return Encoded(messages, len({e.parcel_id for e in produced}), simulate_s, encode_s)


# --- Kafka helpers -------------------------------------------------------------------------


async def produce(
    bootstrap: str,
    settings: Settings,
    messages: Sequence[tuple[str, bytes, bytes]],
) -> tuple[float, float]:
    """Produce as fast as possible; return (wall seconds, first-send epoch seconds)."""
    from streams.kafka_io import BatchSender, ensure_contract_topics, make_producer

    await ensure_contract_topics(settings, bootstrap)
    topics = settings.topics
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        sender = BatchSender(producer)
        first = time.time()
        started = time.perf_counter()
        name = topics.name
        names: dict[str, str] = {}
        for base, key, value in messages:
            topic = names.get(base)
            if topic is None:
                topic = names[base] = name(base)
            await sender.send(topic, key, value)
        await sender.flush()
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    if sender.failed:
        raise RuntimeError(f"{sender.failed} records not acknowledged: {sender.first_error!r}")
    return elapsed, first


async def produce_paced(
    bootstrap: str,
    settings: Settings,
    messages: Sequence[tuple[str, bytes, bytes]],
    rate: float,
    tick_s: float = 0.005,
) -> float:
    """Produce at `rate` records/s (token bucket, one flushed batch per tick); return seconds."""
    from streams.kafka_io import BatchSender, ensure_contract_topics, make_producer

    await ensure_contract_topics(settings, bootstrap)
    producer = make_producer(bootstrap, linger_ms=0)
    await producer.start()
    name = settings.topics.name
    sent = 0
    try:
        started = time.perf_counter()
        sender = BatchSender(producer)
        while sent < len(messages):
            allowed = min(len(messages), int((time.perf_counter() - started) * rate) + 1)
            for base, key, value in messages[sent:allowed]:
                await sender.send(name(base), key, value)
            sent = max(sent, allowed)
            await sender.flush()
            ahead = sent / rate - (time.perf_counter() - started)
            await asyncio.sleep(max(0.0, min(ahead, tick_s)))  # pacing, not synchronisation
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    if sender.failed:
        raise RuntimeError(f"{sender.failed} records not acknowledged: {sender.first_error!r}")
    return elapsed


async def read_until_end(
    bootstrap: str,
    topics: Sequence[str],
    on_batch: Callable[[list[Any]], None],
) -> int:
    """Feed every record of `topics` up to their end offsets at start to `on_batch`."""
    from aiokafka import TopicPartition

    from streams.replay import MAX_RECORDS, make_consumer

    consumer = make_consumer(bootstrap, client_id="trackbone-bench")
    await consumer.start()
    count = 0
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t))
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        active = {tp for tp in partitions if ends[tp] > 0}
        while active:
            batch = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
            for tp, records in batch.items():
                end = ends[tp]
                if records and records[-1].offset >= end - 1:
                    records = [r for r in records if r.offset < end]
                    active.discard(tp)
                    consumer.pause(tp)
                count += len(records)
                on_batch(records)
            if not batch:
                for tp in list(active):
                    if await consumer.position(tp) >= ends[tp]:
                        active.discard(tp)
    finally:
        await consumer.stop()
    return count


def profile_raw(bootstrap: str, settings: Settings, out_dir: Path, events: int) -> dict[str, Any]:
    """Run the raw loop again under pyinstrument; return the top costs by own time."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    asyncio.run(raw_loop.raw_loop(bootstrap, settings, events))
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    path = out_dir / "profile_raw.txt"
    path.write_text(text)
    session = profiler.last_session
    assert session is not None
    own: dict[str, float] = {}
    inclusive = dict.fromkeys(PROFILE_INCLUSIVE, 0.0)

    def walk(frame: Any, counted: frozenset[str]) -> None:
        name = frame.function
        if name in inclusive and name not in counted:
            inclusive[name] += frame.time
            counted = counted | {name}
        if not name.startswith("[") and name not in PROFILE_IDLE:
            key = f"{name} ({Path(frame.file_path or '?').name}:{frame.line_no})"
            own[key] = own.get(key, 0.0) + frame.total_self_time
        for child in frame.children:
            walk(child, counted)

    root = session.root_frame()
    if root is not None:
        walk(root, frozenset())
    busy = sum(own.values()) or 1.0
    top = sorted(own.items(), key=lambda kv: -kv[1])[:12]
    return {
        "file": str(path),
        "busy_s": round(busy, 3),
        "inclusive_share_of_busy": {k: round(v / busy, 3) for k, v in inclusive.items()},
        "top_self_time": [{"where": k, "share": round(v / busy, 3)} for k, v in top],
    }


# --- the worker ----------------------------------------------------------------------------


def bench_env(bootstrap: str, prefix: str, settings: Settings) -> dict[str, str]:
    """A fresh app id on `prefix`; the operator's other TRACKBONE_* knobs (sink batching,
    store...) kept.
    """
    operator = {k: v for k, v in os.environ.items() if k.startswith("TRACKBONE_")}
    env = worker_env(bootstrap, prefix, f"bench-{uuid.uuid4().hex[:12]}")
    env |= {k: v for k, v in operator.items() if k not in env}
    env["TRACKBONE_PARTITIONS"] = str(settings.partitions)
    if settings.kafka_home:
        env["TRACKBONE_KAFKA_HOME"] = str(settings.kafka_home)
    return env


class Worker(WorkerProcess):
    """One `trackbone worker` on its own prefix, app id, port and data dir.

    Its readings return None instead of raising, so a slow worker reads as "not yet".
    """

    def __init__(self, bootstrap: str, prefix: str, work_dir: Path, settings: Settings) -> None:
        name = f"worker-{uuid.uuid4().hex[:8]}"
        env = bench_env(bootstrap, prefix, settings)
        super().__init__(env, work_dir / name, log=work_dir / f"{name}.log")

    def start(self, timeout_s: float = 120.0) -> Worker:
        super().start(timeout_s)
        return self

    def metrics(self) -> dict[str, float] | None:
        try:
            return self.client.metrics()
        except (OSError, WorkerError):
            return None


class Sink(SinkProcess):
    """One `trackbone sink` for a worker's outputs (its env: prefix and app id = group).

    ``fresh_group``: a new app id, so a new consumer group that reads the outputs
    from the beginning (the drain measurement). Readings return None instead of raising.
    """

    def __init__(self, worker: Worker, work_dir: Path, *, fresh_group: bool = False) -> None:
        name = f"sink-{uuid.uuid4().hex[:8]}"
        env = dict(worker.env)
        if fresh_group:
            env["TRACKBONE_APP_ID"] = f"bench-{uuid.uuid4().hex[:12]}"
        super().__init__(env, work_dir / name, log=work_dir / f"{name}.log")

    def clickhouse_count(self) -> int | None:
        """Rows of `parcel_state FINAL` through the sink's query endpoint; None: unavailable."""
        try:
            rows = self.client.query("SELECT count() AS n FROM parcel_state FINAL")
        except (OSError, WorkerError, KeyError):
            return None
        return int(rows[0]["n"]) if rows else None

    def stats(self) -> dict[str, Any] | None:  # type: ignore[override]
        try:
            return self.client.stats()
        except (OSError, WorkerError):
            return None


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in STATUS_IGNORED}


async def await_statuses(
    bootstrap: str,
    topic: str,
    expected: dict[str, dict[str, Any]],
    deadline: float,
) -> tuple[dict[bytes, Any], bool]:
    """Read the status topic until every parcel's latest status equals the expected one.

    Returns (latest record per key, complete). Only the latest record per key is decoded,
    so reading does not compete much with the worker for the CPU.
    """
    from aiokafka import TopicPartition

    from streams.avro import decode_status
    from streams.replay import make_consumer

    consumer = make_consumer(bootstrap, client_id="trackbone-bench-status")
    await consumer.start()
    latest: dict[bytes, Any] = {}
    checked: dict[bytes, Any] = {}
    wrong: set[bytes] = set(k.encode() for k in expected)
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=50_000)
            for records in batch.values():
                for rec in records:
                    latest[rec.key] = rec
            if batch:
                continue  # catch up first, check once the topic is drained
            for key in list(wrong):
                rec = latest.get(key)
                if rec is None or checked.get(key) is rec:
                    continue
                checked[key] = rec
                if rec.value is None:  # a tombstone: the parcel was removed
                    continue
                if _comparable(decode_status(rec.value)) == expected[key.decode()]:
                    wrong.discard(key)
            if not wrong:
                return latest, True
    finally:
        await consumer.stop()
    return latest, False


async def status_latencies(bootstrap: str, topic: str) -> tuple[list[tuple[int, int]], bool]:
    """(status timestamp ms, latency ms) for every status record with a `source_ts` header."""
    samples: list[tuple[int, int]] = []
    missing = [0]

    def collect(records: list[Any]) -> None:
        for rec in records:
            if rec.key and rec.key.startswith(b"WARMUP-"):
                continue
            source = None
            for name, value in rec.headers or ():
                if name == "source_ts":
                    source = int(value)
                    break
            if source is None:
                missing[0] += 1
            else:
                samples.append((rec.timestamp, rec.timestamp - source))

    await read_until_end(bootstrap, [topic], collect)
    return samples, missing[0] == 0 and bool(samples)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def warmup_message(tag: str) -> tuple[str, bytes, bytes]:
    """One registration of a parcel outside the measured set, to see the worker is ready."""
    from projections.events import ParcelRegistered, Place, Service
    from streams.avro import encode_event, topic_base_for

    event = ParcelRegistered(
        event_id=f"warmup-{tag}",
        parcel_id=f"WARMUP-{tag}",
        event_time=1_794_355_200_000,
        source="bench",
        merchant_id="bench",
        origin=Place("CN", "Hangzhou"),
        destination=Place("CN", "Beijing"),
        service=Service.STANDARD,
    )
    return topic_base_for(event), event.parcel_id.encode(), encode_event(event)


async def warm_up(bootstrap: str, settings: Settings, tag: str, deadline: float) -> None:
    """Produce one event and wait for its status: the worker then has its partitions.

    A worker reports healthy before its consumer group has assigned it anything; timing
    from that moment would measure the rebalance, not the pipeline.
    """
    from streams.replay import make_consumer

    message = warmup_message(tag)
    await produce(bootstrap, settings, [message])
    consumer = make_consumer(bootstrap, client_id="trackbone-bench-warmup")
    await consumer.start()
    consumer.subscribe([settings.topics.parcel_status])
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            if any(rec.key == message[1] for recs in batch.values() for rec in recs):
                return
    finally:
        await consumer.stop()
    raise RuntimeError("the worker did not process a warm-up event in time")


# --- machine facts -------------------------------------------------------------------------


def machine_facts(kafka: str) -> dict[str, Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or None,
        "python": platform.python_version(),
        "kafka": kafka,
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- the plot ------------------------------------------------------------------------------


def plot_latency(
    samples: list[tuple[int, int]],
    clickhouse_ms: list[float],
    path: Path,
    title: str,
) -> Path | None:
    """Latency over time and its histogram (status, and ClickHouse-visible when known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples and not clickhouse_ms:
        return None
    fig, (over_time, hist) = plt.subplots(1, 2, figsize=(13, 4.8))
    if samples:
        start = min(ts for ts, _ in samples)
        xs = [(ts - start) / 1000 for ts, _ in samples]
        ys = [lat for _, lat in samples]
        over_time.scatter(xs, ys, s=2, alpha=0.4, label="status latency")
        for q, style in ((50, "--"), (99, ":")):
            value = percentile(ys, q)
            if value is not None:
                over_time.axhline(value, linestyle=style, color="k", label=f"p{q} {value:.0f} ms")
        hist.hist(ys, bins=80, alpha=0.7, label="status")
    if clickhouse_ms:
        hist.hist(clickhouse_ms, bins=80, alpha=0.5, label="ClickHouse visible")
    over_time.set_xlabel("time since first status (s)")
    over_time.set_ylabel("latency (ms)")
    over_time.set_yscale("symlog", linthresh=10)
    over_time.set_ylim(bottom=0)
    over_time.legend(loc="upper right", fontsize=8)
    hist.set_xlabel("latency (ms)")
    hist.set_ylabel("records")
    hist.set_yscale("log")
    hist.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- the run -------------------------------------------------------------------------------


@contextlib.contextmanager
def broker_for(settings: Settings, work_dir: Path) -> Iterator[tuple[str, str]]:
    """Yield (bootstrap, description): the configured one, or a local broker in `work_dir`."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap, f"external ({settings.kafka_bootstrap})"
        return
    from streams.broker import LocalBroker

    broker = LocalBroker(replace(settings, data_dir=work_dir / "broker"))
    log("starting a local Kafka broker")
    bootstrap = broker.start()
    try:
        yield bootstrap, f"Apache Kafka {settings.kafka_version} (local KRaft broker)"
    finally:
        log("stopping the local Kafka broker")
        broker.stop()


def goals_met(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (op, target) in GOALS.items():
        value = result.get(key)
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out[key] = {"goal": f"{op} {target:g}", "value": value, "met": met}
    return out


def _rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds and seconds > 0 else None


def run(config: BenchConfig) -> dict[str, Any]:
    """Run every phase and return the result dict (see the module docstring)."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="trackbone-bench-"))
    try:
        with broker_for(config.settings, work_dir) as (bootstrap, kafka):
            return _run(config, bootstrap, kafka, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _run(config: BenchConfig, bootstrap: str, kafka: str, work_dir: Path) -> dict[str, Any]:
    from load import fold_bench
    from streams.avro import status_from_state
    from streams.replay import replay

    notes: list[str] = []
    run_id = uuid.uuid4().hex[:10]
    result: dict[str, Any] = {"events": config.events, "run_id": run_id}
    base = config.settings

    def prefixed(name: str) -> Settings:
        return replace(base, kafka_bootstrap=bootstrap, topic_prefix=f"bench-{run_id}-{name}.")

    # 1. prepare
    log(f"simulating and encoding {config.events:,} events")
    batch = simulate_encoded(config.events, config.seed, f"B{run_id[:6]}")
    events = len(batch.messages)
    result["events"] = events
    result["parcels"] = batch.parcels
    log(
        f"{events:,} events of {batch.parcels:,} parcels: simulated in {batch.simulate_s:.1f} s, "
        f"encoded in {batch.encode_s:.1f} s"
    )
    source = prefixed("src")
    produce_s, _ = asyncio.run(produce(bootstrap, source, batch.messages))
    result["produce_events_per_s"] = _rate(events, produce_s)
    log(f"produced at {result['produce_events_per_s']:,.0f} events/s")

    # 2. the worker's work without Faust: a plain aiokafka loop, and the domain alone
    log("raw loop: a plain aiokafka consumer doing the worker's work and sending its outputs")
    raw = asyncio.run(raw_loop.raw_loop(bootstrap, source, events))
    result["raw_events_per_s"] = raw["events_per_s"]
    result["raw"] = raw
    log(f"raw loop: {raw['events_per_s']:,.0f} events/s ({raw['events_per_cpu_s']:,.0f}/cpu-s)")
    domain = raw_loop.domain_costs(base, batch.messages[: config.fold_events], rounds=2)
    result["domain_us_per_event"] = domain["domain_us_per_event"]
    result["domain"] = domain
    log(f"domain work: {domain['domain_us_per_event']:.1f} us/event (no I/O)")
    if config.profile:
        log("profiling the raw fold loop")
        result["raw_profile"] = profile_raw(bootstrap, source, config.out_dir, events)

    # 3. replay
    replayed = asyncio.run(replay(source, bootstrap))
    result["replay_events_per_s"] = round(replayed.events_per_s, 1)
    result["replay"] = {
        "events": replayed.records,
        "seconds": round(replayed.elapsed_s, 3),
        "events_per_cpu_s": _rate(replayed.records, replayed.cpu_s),
        "applied": replayed.applied,
        "duplicates": replayed.duplicates,
        "dead": replayed.dead,
    }
    log(f"replay: {replayed.events_per_s:,.0f} events/s")
    expected = {
        pid: _comparable(status_from_state(state)) for pid, state in replayed.visible().items()
    }

    # 5a. workers alone on a backlog: one, then two with one app id
    for count in (1, 2):
        log(f"{count} worker process(es), no sink, reading {events:,} events")
        phase = worker_bench.worker_phase(bootstrap, base, batch.messages, work_dir, workers=count)
        result[f"workers_{count}"] = phase
        log(f"{count} worker(s): {phase['events_per_s'] or 0:,.0f} events/s")
    result["worker_events_per_s"] = result["workers_1"]["events_per_s"]
    result["worker_cpu_us_per_event"] = result["workers_1"]["cpu_us_per_event"]
    one, two = result["workers_1"]["events_per_s"], result["workers_2"]["events_per_s"]
    result["workers_2_over_1"] = round(two / one, 3) if one and two else None
    worker_rate, raw_rate = result["worker_events_per_s"], result["raw_events_per_s"]
    result["worker_over_raw"] = (
        round(worker_rate / raw_rate, 3) if worker_rate and raw_rate else None
    )

    # 4. fold alone
    fold_n = min(config.events, config.fold_events)
    log(f"fold micro-benchmark over {fold_n:,} events")
    folded = fold_bench.run(fold_n, config.seed, codec_events=min(fold_n, 20_000))
    result["fold_events_per_s"] = folded["in_order_events_per_s"]
    result["fold_shuffled_events_per_s"] = folded["shuffled_events_per_s"]
    result["fold"] = {k: folded[k] for k in folded if k.endswith("_per_s") or k == "events"}

    # 6. pipeline: worker and sink
    pipe = prefixed("pipe")
    log("starting a worker and a ClickHouse sink for the pipeline run")
    worker = Worker(bootstrap, pipe.topic_prefix, work_dir, base)
    sink = Sink(worker, work_dir).start()
    worker.start()
    result["pipeline_events_per_s"] = None
    result["clickhouse_visible_s"] = None
    try:
        asyncio.run(warm_up(bootstrap, pipe, run_id, time.monotonic() + 180))
        pipe_produce_s, first_produce = asyncio.run(produce(bootstrap, pipe, batch.messages))
        log(f"produced to the worker's topics in {pipe_produce_s:.1f} s; waiting for statuses")
        budget = time.monotonic() + config.pipeline_budget_s
        progress = wait_for_worker(worker, events + 1, budget)
        result["pipeline_complete"] = False
        if progress is not None and progress[0] < events + 1:
            # Out of budget: the rate reached so far, from the worker's own input count.
            taken = max(0.0, progress[0] - 1)
            result["pipeline_events_per_s"] = _rate(int(taken), progress[1] - first_produce)
            notes.append(
                f"pipeline: partial, the worker took in {taken:,.0f} of {events:,} events in "
                f"the {config.pipeline_budget_s:.0f} s budget; rate from its events_in metric"
            )
            log(f"pipeline partial: {result['pipeline_events_per_s']:,.0f} events/s")
            latest: dict[bytes, Any] = {}
            complete = False
        else:
            latest, complete = asyncio.run(
                await_statuses(
                    bootstrap,
                    pipe.topics.parcel_status,
                    expected,
                    time.monotonic() + config.worker_timeout_s,
                )
            )
        if complete:
            result["pipeline_complete"] = True
            last_status_s = max(rec.timestamp for rec in latest.values()) / 1000
            pipeline_s = last_status_s - first_produce
            result["pipeline_seconds"] = round(pipeline_s, 3)
            result["pipeline_events_per_s"] = _rate(events, pipeline_s)
            log(f"pipeline: {result['pipeline_events_per_s']:,.0f} events/s to the last status")
        elif latest:
            notes.append("pipeline: the worker's statuses never matched the replayed state")
            log(f"pipeline incomplete; worker log tail:\n{worker.tail()}")
        visible_at = (
            await_clickhouse(  # every parcel plus the warm-up one
                sink, len(expected) + 1, time.monotonic() + config.clickhouse_timeout_s
            )
            if complete
            else None
        )
        if visible_at is None:
            notes.append("clickhouse: no full row count via POST /query (endpoint, sink or time)")
        else:
            result["clickhouse_visible_s"] = round(visible_at - first_produce, 3)
            result["pipeline_clickhouse_events_per_s"] = _rate(events, visible_at - first_produce)
        result["worker_metrics"] = _short_metrics(worker.metrics())
    finally:
        worker.stop()
        sink.stop()

    # 7. the sink alone, draining the pipeline's outputs
    result |= drain_phase(config, worker, work_dir, len(expected) + 1, notes)

    end_to_end = result.get("pipeline_clickhouse_events_per_s")
    result["worker_sink_over_worker"] = (
        round(end_to_end / worker_rate, 3) if end_to_end and worker_rate else None
    )

    # 8. latency at half the worker's rate
    result |= latency_phase(config, bootstrap, prefixed("lat"), work_dir, worker_rate, notes)

    result["machine"] = machine_facts(kafka)
    result["goals"] = goals_met(result)
    result["notes"] = notes
    return result


def wait_for_worker(worker: Worker, events: int, deadline: float) -> tuple[float, float] | None:
    """Wait until the worker has taken in every event (cheap: its metrics endpoint).

    Returns (events taken in, epoch seconds) as last seen, or None without metrics.
    """
    taken, seen_at, reported = 0.0, time.time(), time.monotonic()
    while time.monotonic() < deadline:
        metrics = worker.metrics()
        if metrics is None:
            return None  # no metrics: fall back to reading the status topic
        taken, seen_at = metrics.get("trackbone_events_in_total", 0.0), time.time()
        if taken >= events:
            break
        if worker.proc is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"worker died:\n{worker.tail()}")
        if time.monotonic() - reported > 15:
            reported = time.monotonic()
            log(f"worker has taken in {taken:,.0f} of {events:,} events")
        time.sleep(0.25)  # poll interval of a deadline-bounded wait
    return taken, seen_at


def await_clickhouse(sink: Sink, rows: int, deadline: float) -> float | None:
    """Epoch seconds when `parcel_state FINAL` first shows `rows` rows; None if never/unknown."""
    while time.monotonic() < deadline:
        count = sink.clickhouse_count()
        if count is None:
            return None
        if count >= rows:
            return time.time()
        time.sleep(0.1)  # poll interval of a deadline-bounded wait
    return None


def _short_metrics(metrics: dict[str, float] | None) -> dict[str, float] | None:
    if metrics is None:
        return None
    keep = ("events_in", "applied", "duplicate", "dead_lettered")
    return {
        k: v for k, v in metrics.items() if k.startswith("trackbone_") and any(s in k for s in keep)
    }


def latency_phase(
    config: BenchConfig,
    bootstrap: str,
    settings: Settings,
    work_dir: Path,
    worker_rate: float | None,
    notes: list[str],
) -> dict[str, Any]:
    """Latency at half the worker's rate: status latency, then ClickHouse-visible latency.

    Two runs on fresh prefixes with new parcels. The status run has the worker alone,
    as `worker_events_per_s` was measured: on one small machine a sink beside it takes
    the CPU the worker needs, which would measure the machine, not the worker. The
    ClickHouse run adds the sink (its status latency is reported too, as
    `status_latency_with_sink_ms_*`).
    """
    out: dict[str, Any] = {
        "status_latency_ms_p50": None,
        "status_latency_ms_p99": None,
        "clickhouse_visible_ms_p99": None,
        "latency_plot": None,
    }
    if not worker_rate:
        notes.append("latency: skipped, no worker rate to take half of")
        return out
    rate = 0.5 * worker_rate
    count = max(500, min(config.events, int(rate * config.latency_seconds)))
    out["latency_events"] = count
    log(f"latency run (worker alone): {count:,} new events at {rate:,.0f} events/s")
    prefix = settings.topic_prefix
    alone_settings = replace(settings, topic_prefix=f"{prefix}alone.")
    alone = paced_run(config, bootstrap, alone_settings, work_dir, rate, count, False, notes)
    out["latency_offered_events_per_s"] = alone["offered"]
    out["latency_worker_cpu_us_per_event"] = alone["worker_cpu_us_per_event"]
    out["latency_generator_cpu_us_per_event"] = alone["generator_cpu_us_per_event"]
    out |= _latency_figures("status_latency_ms", alone["status_ms"])
    log(f"latency run (worker and sink): {count:,} new events at {rate:,.0f} events/s")
    both_settings = replace(settings, topic_prefix=f"{prefix}sink.")
    both = paced_run(config, bootstrap, both_settings, work_dir, rate, count, True, notes)
    out["latency_with_sink_offered_events_per_s"] = both["offered"]
    out |= _latency_figures("status_latency_with_sink_ms", both["status_ms"])
    out |= _latency_figures("clickhouse_visible_ms", both["clickhouse_ms"])
    plot = plot_latency(
        alone["samples"],
        both["clickhouse_ms"],
        config.out_dir / "latency.png",
        f"trackbone: latency at {rate:,.0f} events/s (half the worker's rate)",
    )
    out["latency_plot"] = str(plot) if plot else None
    return out


def _latency_figures(prefix: str, values: list[float]) -> dict[str, Any]:
    if not values:
        return {f"{prefix}_p50": None, f"{prefix}_p99": None}
    return {
        f"{prefix}_p50": percentile(values, 50),
        f"{prefix}_p99": percentile(values, 99),
        f"{prefix}_max": max(values),
        f"{prefix.removesuffix('_ms')}_samples": len(values),
    }


def paced_run(
    config: BenchConfig,
    bootstrap: str,
    settings: Settings,
    work_dir: Path,
    rate: float,
    count: int,
    with_sink: bool,
    notes: list[str],
) -> dict[str, Any]:
    """New parcels paced at `rate` through a fresh worker (and sink): latency samples."""
    from streams.avro import status_from_state
    from streams.replay import replay

    label = "with sink" if with_sink else "worker alone"
    seed = config.seed + (2 if with_sink else 1)
    batch = simulate_encoded(count, seed, f"L{uuid.uuid4().hex[:6]}")
    worker = Worker(bootstrap, settings.topic_prefix, work_dir, config.settings)
    sink = Sink(worker, work_dir).start() if with_sink else None
    worker.start()
    out: dict[str, Any] = {"offered": None, "samples": [], "status_ms": [], "clickhouse_ms": []}
    out |= {"worker_cpu_us_per_event": None, "generator_cpu_us_per_event": None}
    try:
        asyncio.run(warm_up(bootstrap, settings, "lat", time.monotonic() + 180))
        worker_cpu, generator_cpu = worker_bench.cpu_seconds(worker), time.process_time()
        paced_s = asyncio.run(produce_paced(bootstrap, settings, batch.messages, rate))
        generator_cpu = time.process_time() - generator_cpu
        out["offered"] = _rate(len(batch.messages), paced_s)
        deadline = time.monotonic() + config.worker_timeout_s
        wait_for_worker(worker, len(batch.messages) + 1, deadline)
        # A live mix: nearly every record touches another parcel (a backlog batch holds
        # several events of each), so a touch's costs are not shared: compare with
        # `worker_cpu_us_per_event` of the backlog run.
        events = len(batch.messages)
        out["worker_cpu_us_per_event"] = worker_bench.cpu_us_per_event(
            [worker_cpu], [worker_bench.cpu_seconds(worker)], events
        )
        out["generator_cpu_us_per_event"] = round(generator_cpu / events * 1e6, 1)
        replayed = asyncio.run(replay(settings, bootstrap))
        expected = {pid: _comparable(status_from_state(s)) for pid, s in replayed.visible().items()}
        _, complete = asyncio.run(
            await_statuses(bootstrap, settings.topics.parcel_status, expected, deadline)
        )
        if not complete:
            notes.append(f"latency ({label}): the worker's statuses never matched the replay")
        samples, all_headed = asyncio.run(
            status_latencies(bootstrap, settings.topics.parcel_status)
        )
        if not samples:
            notes.append(f"latency ({label}): status records carry no source_ts header")
        elif not all_headed:
            notes.append(f"latency ({label}): some status records lack the source_ts header")
        out["samples"] = samples
        out["status_ms"] = [float(lat) for _, lat in samples]
        if sink is not None:
            # Let the sink catch up before reading its samples (returns at once without /query).
            await_clickhouse(sink, len(expected), time.monotonic() + config.clickhouse_timeout_s)
            stats = sink.stats()
            if stats and stats.get("clickhouse_visible_ms"):
                out["clickhouse_ms"] = [float(v) for v in stats["clickhouse_visible_ms"]]
            else:
                notes.append("latency: no ClickHouse-visible samples (GET /stats missing or empty)")
    finally:
        worker.stop()
        if sink is not None:
            sink.stop()
    return out


def drain_phase(
    config: BenchConfig, worker: Worker, work_dir: Path, parcels: int, notes: list[str]
) -> dict[str, Any]:
    """A fresh sink over the worker's finished outputs: how fast it stores a backlog.

    Caught up = every parcel in `parcel_state FINAL`, no consumer lag, nothing buffered;
    the rate is rows / (last accepted batch - first fetch), both from its `GET /stats`.
    """
    out: dict[str, Any] = {"sink_rows_per_s": None}
    log("sink drain: a fresh sink over the pipeline's outputs")
    sink = Sink(worker, work_dir, fresh_group=True).start()
    try:
        deadline = time.monotonic() + config.worker_timeout_s
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = sink.stats()
            state = (stats or {}).get("sink") or {}
            drained = state.get("consumer_lag") == 0 and not state.get("pending_rows")
            if drained and (sink.clickhouse_count() or 0) >= parcels:
                state = (sink.stats() or {}).get("sink") or state
                break
            if not sink.alive():
                raise RuntimeError(f"the drain sink died:\n{sink.tail()}")
            time.sleep(0.25)  # poll interval of a deadline-bounded wait
        else:
            notes.append("sink drain: the sink did not catch up in time")
            return out
        first, last = state.get("first_fetch_at"), state.get("last_write_at")
        rows = int(state.get("rows_written") or 0)
        seconds = (last - first) if first and last else None
        out["sink_rows_per_s"] = _rate(rows, seconds)
        out["sink_drain"] = {
            "rows": rows,
            "seconds": round(seconds, 3) if seconds else None,
            "rows_by_table": state.get("rows_by_table"),
            "batches": state.get("batches_written"),
        }
        log(f"sink drain: {rows:,} rows at {out['sink_rows_per_s'] or 0:,.0f} rows/s")
    finally:
        sink.stop()
    return out
