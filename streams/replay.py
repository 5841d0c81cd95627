"""Batch replay: rebuild every parcel's state from the five input topics, without Faust.

The stream folds record batches through Faust's machinery (table, changelog,
outputs). Rebuilding state from history needs none of that: a plain consumer reads
each input partition from its beginning up to the end offsets seen at start, and the
worker's processing core (`projections.core.process`: decode, validate, check the
key, fold) folds the records into a dict.

Identical state. A parcel's state depends only on its *set* of records, except where
the contract says "the first received wins": a conflicting repeat of an event_id, and
the per-parcel record cap. Within one topic partition both paths see the log order.
Across the five topics the stream's order is whatever its fetches interleave; replay
uses a fixed, reproducible order instead, the order of production: records are merged
by Kafka timestamp (made monotonic per partition as a running maximum, so that how
the log is fetched in chunks cannot change the order), then topic, then offset. So the
only case where replay may differ from one particular stream run is a conflict or cap
between records of different topics (e.g. the same event_id sent as a scan and as a
hand-over), which the stream itself does not decide reproducibly either.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from projections import core
from projections import fold as fold_
from streams import avro, carrier_auth
from streams.kafka_io import security_options
from streams.settings import Settings

FETCH_MAX_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_BYTES = 16 * 1024 * 1024
MAX_RECORDS = 10_000

Item = tuple[int, int, int, bytes | None, bytes | None, int, Any]
"""(monotonic timestamp, topic index, offset, key, value, the record's own timestamp, headers):
sorts in replay order (topic and offset are never equal, so nothing after them is compared)."""

_timestamp_of = itemgetter(0)


@dataclass(slots=True)
class ReplayResult:
    """Every parcel's state after replay, plus what happened to each input record."""

    states: dict[str, fold_.ParcelState]
    """All stored states, including invisible ones (every event voided), as the table holds."""
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    """Invalid, key mismatch, conflict or over cap: what the worker dead-letters."""
    dead_reasons: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    dead_offsets: dict[tuple[str, int], set[int]] = field(default_factory=dict)
    """(topic, partition) -> offsets of the records the worker dead-letters."""
    elapsed_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def visible(self) -> dict[str, fold_.ParcelState]:
        """States the contract outputs (rule 10: a parcel with no effective event has none)."""
        return {pid: s for pid, s in sorted(self.states.items()) if s.event_count > 0}


class ReplayFold:
    """The worker's per-message rules over a plain dict; feed records in replay order."""

    def __init__(
        self,
        max_events: int = fold_.MAX_EVENTS,
        max_future_ms: int | None = None,
        authorize: core.Authorizer | None = None,
    ) -> None:
        self.max_events = max_events
        self.rules = core.Rules(
            max_events=max_events, max_future_ms=max_future_ms, authorize=authorize
        )
        self.states: dict[str, fold_.ParcelState] = {}
        self.records = 0
        self.applied = 0
        self.duplicates = 0
        self.dead_reasons: dict[str, int] = {}
        self.dead_offsets: dict[tuple[int, int], set[int]] = {}
        """(topic index, partition) -> offsets of the records the worker dead-letters."""

    def _dead(self, kind: str) -> None:
        self.dead_reasons[kind] = self.dead_reasons.get(kind, 0) + 1

    def feed(self, items: Iterable[Item], partition: int = -1) -> None:
        """Fold records in replay order through the processing core, one batch per call."""
        states = self.states
        empty = core.Stored(None)

        def load(key: bytes) -> core.Stored:
            state = states.get(key.decode())
            return empty if state is None else core.Stored(state)

        batch = core.Batch()
        run: list[core.Record] = []
        run_topic = -1

        def fold(run: list[core.Record], topic: int) -> None:
            seen = len(batch.dead_letters)
            core.process(run, topic, load, avro.decode_event, self.rules, into=batch)
            for dead in batch.dead_letters[seen:]:
                self.dead_offsets.setdefault((topic, partition), set()).add(dead.record.offset)

        for _ts, topic, offset, key, value, timestamp, headers in items:
            if topic != run_topic and run:
                fold(run, run_topic)
                run = []
            run_topic = topic
            run.append(core.Record(key, value, offset, timestamp, headers))
        if run:
            fold(run, run_topic)
        for key, change in batch.changes.items():
            state = change.stored.state
            if state is not None:
                states[key.decode()] = state
        self.records += batch.records
        self.applied += batch.applied
        self.duplicates += batch.duplicates
        for kind, count in batch.dead_reasons().items():
            self.dead_reasons[kind] = self.dead_reasons.get(kind, 0) + count

    @property
    def dead(self) -> int:
        return sum(self.dead_reasons.values())


class PartitionMerge:
    """Merges the topic partitions of one partition number into replay order, incrementally.

    Each topic partition's records get a timestamp made monotonic (running maximum), so
    that a record can be released as soon as every unfinished topic partition has shown
    a later timestamp: the released order is then the same however fetches are chunked.
    """

    def __init__(self, topics: int) -> None:
        self.buffers: list[list[Item]] = [[] for _ in range(topics)]
        self.starts = [0] * topics
        self.last_ts = [-(1 << 62)] * topics
        self.done = [False] * topics

    def add(self, topic: int, records: Sequence[Any], end: int) -> None:
        """Buffer fetched records of one topic partition (offsets >= end are ignored)."""
        buf = self.buffers[topic]
        last = self.last_ts[topic]
        for rec in records:
            offset = rec.offset
            if offset >= end:
                break
            ts = rec.timestamp
            if ts > last:
                last = ts
            buf.append((last, topic, offset, rec.key, rec.value, ts, rec.headers or None))
        self.last_ts[topic] = last

    def finish(self, topic: int) -> None:
        self.done[topic] = True

    def release(self) -> list[Item]:
        """Return the records that no future fetch can precede, in replay order."""
        limit: float = float("inf")
        for topic, last in enumerate(self.last_ts):
            if not self.done[topic] and last < limit:
                limit = last
        out: list[Item] = []
        runs = 0
        for topic, buf in enumerate(self.buffers):
            start = self.starts[topic]
            if start >= len(buf):
                continue
            # Ties at the limit wait: a later fetch may hold a record of that same
            # timestamp from a topic that sorts first.
            cut = (
                len(buf)
                if limit == float("inf")
                else bisect_left(buf, limit, lo=start, key=_timestamp_of)
            )
            if cut > start:
                out.extend(buf[start:cut])
                runs += 1
                if cut == len(buf):
                    buf.clear()
                    self.starts[topic] = 0
                else:
                    self.starts[topic] = cut
        if runs > 1:
            out.sort()  # runs are sorted already: timsort merges them
        return out

    @property
    def pending(self) -> int:
        return sum(len(b) - s for b, s in zip(self.buffers, self.starts, strict=True))


async def topic_partitions(
    consumer: AIOKafkaConsumer, topics: Sequence[str]
) -> list[TopicPartition]:
    cluster = await consumer._client.fetch_all_metadata()  # no public call returns it
    out: list[TopicPartition] = []
    for topic in topics:
        parts = cluster.partitions_for_topic(topic)
        if parts is None:
            raise ValueError(f"topic {topic!r} does not exist")
        out.extend(TopicPartition(topic, p) for p in sorted(parts))
    return out


def make_consumer(
    bootstrap: str, *, client_id: str = "trackbone-replay", settings: Settings | None = None
) -> AIOKafkaConsumer:
    """Build a group-less consumer with big fetches: replay wants throughput, not latency."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        fetch_max_wait_ms=100,
        check_crcs=False,
        **security_options(settings),
    )


async def replay(
    settings: Settings,
    bootstrap: str,
    *,
    topics: Sequence[str] | None = None,
    until: Mapping[tuple[str, int], int] | None = None,
) -> ReplayResult:
    """Rebuild all parcel state from the input topics up to their end offsets at start.

    ``until`` stops a partition earlier (e.g. at a group's committed offsets); one it
    does not name is not read at all.
    """
    names = list(topics) if topics is not None else list(settings.topics.inputs)
    index = {name: i for i, name in enumerate(names)}
    collecting = gc.isenabled()
    consumer = make_consumer(bootstrap, settings=settings)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, names)
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        begins = await consumer.beginning_offsets(partitions)
        if until is not None:
            # A partition absent from `until` (no committed offset) is cut at its start:
            # nothing of it is promised yet.
            ends = {
                tp: min(end, until.get((tp.topic, tp.partition), begins[tp]))
                for tp, end in ends.items()
            }
        started, cpu_started = time.perf_counter(), time.process_time()
        folder = ReplayFold(
            settings.max_events_per_parcel,
            settings.max_future_ms,
            carrier_auth.authorizer(settings),
        )
        # States are acyclic (tuples of frozen events), yet every generation-2 collection
        # walks all of them: with the whole history in memory the collector would cost
        # more than the fold. Reference counting still frees everything replaced.
        gc.disable()
        merges: dict[int, PartitionMerge] = {}
        active: set[TopicPartition] = set()
        for tp in partitions:
            merge = merges.setdefault(tp.partition, PartitionMerge(len(names)))
            if begins[tp] >= ends[tp]:
                merge.finish(index[tp.topic])
            else:
                active.add(tp)
        await consumer.seek_to_beginning(*partitions)
        consumer.pause(*(tp for tp in partitions if tp not in active))
        for partition, merge in merges.items():
            folder.feed(merge.release(), partition)
        while active:
            batch = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
            touched: set[int] = set()
            for tp, records in batch.items():
                if tp not in active or not records:
                    continue
                merge = merges[tp.partition]
                topic = index[tp.topic]
                end = ends[tp]
                merge.add(topic, records, end)
                touched.add(tp.partition)
                if records[-1].offset >= end - 1:
                    merge.finish(topic)
                    active.discard(tp)
                    consumer.pause(tp)
            if not batch:
                # Control records (transaction markers) take offsets but are never
                # returned: the position, not the last record, tells when a partition ends.
                for tp in list(active):
                    if await consumer.position(tp) >= ends[tp]:
                        merges[tp.partition].finish(index[tp.topic])
                        touched.add(tp.partition)
                        active.discard(tp)
                        consumer.pause(tp)
            for partition in sorted(touched):
                folder.feed(merges[partition].release(), partition)
        for partition in sorted(merges):
            folder.feed(merges[partition].release(), partition)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        if collecting:
            gc.enable()
        await consumer.stop()
    end_offsets: dict[str, dict[int, int]] = {}
    for tp, end in ends.items():
        end_offsets.setdefault(tp.topic, {})[tp.partition] = end
    return ReplayResult(
        states=folder.states,
        records=folder.records,
        applied=folder.applied,
        duplicates=folder.duplicates,
        dead=folder.dead,
        dead_reasons=dict(folder.dead_reasons),
        dead_offsets={
            (names[topic], partition): offsets
            for (topic, partition), offsets in folder.dead_offsets.items()
        },
        end_offsets=end_offsets,
        elapsed_s=elapsed,
        cpu_s=cpu,
    )
