"""The benchmark's references for the worker: a plain aiokafka loop, and the domain alone.

`raw_loop` is what the worker would be without Faust: one aiokafka consumer reading
the five input topics, the worker's own `BatchProcessor` per fetched topic-partition
batch (core, state encoding into a dict, every output encoded), and the same
`Outputs` producer sending them, at most as many batches in flight as the worker.
So `worker_events_per_s / raw_events_per_s` is what Faust costs.

`domain_costs` times the same processor with no I/O at all: microseconds per event
of decode + core + state encode + status encode, over batches shaped like the ones
Kafka delivers (records of one topic-partition in offset order).
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from projections import core
from streams.outputs import Outputs
from streams.processor import BatchInfo, BatchProcessor, OutputTopics
from streams.settings import Settings
from streams.stuck import StuckIndex


def output_topics(settings: Settings) -> OutputTopics:
    topics = settings.topics
    return OutputTopics(
        inputs=topics.inputs,
        changelog=topics.name("raw.parcel-state-changelog"),
        stuck_changelog=topics.name("raw.stuck-index-changelog"),
        status=topics.name("raw.parcel-status"),
        milestones=topics.name("raw.milestones"),
        alerts=topics.name("raw.alerts"),
        dead_letter=topics.name("raw.dead-letter"),
        parcel_events=topics.name("raw.parcel-events"),
        observations=topics.name("raw.lane-observations"),
    )


def processor(settings: Settings, topics: OutputTopics) -> BatchProcessor:
    from projections import eta

    stats = eta.empty_stats()

    def estimate(state: Any) -> eta.Estimate | None:
        return eta.estimate_for(stats, state, now_ms=state.last_event_time)

    rules = core.Rules(
        max_events=settings.max_events_per_parcel,
        max_future_ms=settings.max_future_ms,
        risk_threshold=settings.promise_risk_threshold,
        estimate=estimate if settings.eta_enabled else None,
    )
    return BatchProcessor(topics, rules, {}, StuckIndex({}), None, settings.state_cache_size)


async def raw_loop(bootstrap: str, settings: Settings, events: int) -> dict[str, Any]:
    """Consume `events` input records with the worker's work and outputs; the rate."""
    from streams.kafka_io import ensure_topics
    from streams.replay import make_consumer

    topics = output_topics(settings)
    outs = [
        topics.changelog,
        topics.stuck_changelog,
        topics.status,
        topics.milestones,
        topics.alerts,
        topics.dead_letter,
        topics.parcel_events,
        topics.observations,
    ]
    await ensure_topics(bootstrap, outs, settings.partitions)
    work = processor(settings, topics)
    outputs = Outputs(
        bootstrap, client_id="trackbone-bench-raw", max_in_flight=settings.records_in_flight
    )
    await outputs.open()
    consumer = make_consumer(bootstrap, client_id="trackbone-bench-raw")
    await consumer.start()
    count = 0
    try:
        partitions = [
            TopicPartition(t, p)
            for t in settings.topics.inputs
            for p in await outputs.partitions(t)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = cpu = 0.0
        while count < events:
            fetched = await consumer.getmany(
                timeout_ms=1000, max_records=settings.max_batch_records
            )
            if not fetched:
                continue
            if not count:
                started, cpu = time.perf_counter(), time.process_time()
            for tp, records in fetched.items():
                batch = [core.Record(r.key, r.value, r.offset, r.timestamp or 0) for r in records]
                out = work.process(BatchInfo(tp.topic, tp.partition, batch[-1].offset), batch)
                outputs.ack_when_stored(await outputs.send(out), lambda: None, len(out))
                await outputs.settle()
                count += len(records)
        await outputs.settle(0)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()
        await outputs.close()
    return {
        "events": count,
        "seconds": round(elapsed, 3),
        "events_per_s": round(count / elapsed, 1) if elapsed else None,
        "events_per_cpu_s": round(count / cpu, 1) if cpu else None,
        "records_sent": outputs.records_sent,
    }


def domain_costs(
    settings: Settings, messages: Sequence[tuple[str, bytes, bytes]], rounds: int = 1
) -> dict[str, Any]:
    """Microseconds per event of the worker's per-batch work with no I/O (best of `rounds`)."""
    partitioner = DefaultPartitioner()
    partitions = list(range(settings.partitions))
    by_tp: dict[tuple[str, int], list[core.Record]] = defaultdict(list)
    names = {name: settings.topics.name(name) for name in {m[0] for m in messages}}
    for base, key, value in messages:
        tp = (names[base], partitioner(key, partitions, partitions))
        records = by_tp[tp]
        records.append(core.Record(key, value, len(records)))
    # Kafka's delivery order: fetches of up to max_batch_records, interleaved.
    batches: list[tuple[BatchInfo, list[core.Record]]] = []
    share = settings.max_batch_records // len(by_tp) + 1
    position = 0
    while True:
        added = False
        for (topic, partition), records in by_tp.items():
            chunk = records[position : position + share]
            if chunk:
                batches.append((BatchInfo(topic, partition, chunk[-1].offset), chunk))
                added = True
        if not added:
            break
        position += share
    best = None
    collecting = gc.isenabled()
    for _ in range(rounds):
        work = processor(settings, output_topics(settings))
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            for info, records in batches:
                work.process(info, records)
            elapsed = time.perf_counter() - started
        finally:
            if collecting:
                gc.enable()
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return {
        "events": len(messages),
        "batches": len(batches),
        "domain_us_per_event": round(best / len(messages) * 1e6, 2),
    }
