"""One record batch in, the records to send out: the core plus storage and encoding.

`BatchProcessor` is what a worker does per batch minus Kafka: it runs the
processing core, writes each touched parcel once to the state store (and lists its
changelog record), moves parcels in the stuck index, and encodes every output once
(a status per parcel, milestones and alerts in order, event deltas reusing the
input's own bytes, dead letters with their reason and origin). The stores are
mappings: Faust's table stores in the worker, plain dicts in the benchmark's raw
loop, so both do exactly the same work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from projections import core
from streams import avro
from streams.metrics import Metrics
from streams.outputs import OutRecord
from streams.stuck import BUCKET_MS, StuckIndex

DEAD_LETTER_MAX_VALUE = 900 * 1024
"""Bytes of an input value a dead letter carries at most (the broker takes 1 MiB a record)."""


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """Where a worker's records go (names carry the deployment's prefix)."""

    inputs: tuple[str, ...]
    changelog: str
    stuck_changelog: str
    status: str
    milestones: str
    alerts: str
    dead_letter: str
    parcel_events: str
    observations: str


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """Where a batch came from: enough for dead letters and positions."""

    topic: str
    partition: int
    last_offset: int


class BatchProcessor:
    """The worker's per-batch work over mapping stores; keeps stream time and a state cache."""

    def __init__(
        self,
        topics: OutputTopics,
        rules: core.Rules,
        states: MutableMapping[bytes, bytes],
        stuck: StuckIndex,
        metrics: Metrics | None = None,
        cache_size: int = 200_000,
    ) -> None:
        self.topics = topics
        self.rules = rules
        self.states = states
        self.stuck = stuck
        self.metrics = metrics
        self.cache_size = cache_size
        self.topic_index = {name: i for i, name in enumerate(topics.inputs)}
        self.cache: dict[bytes, core.Stored] = {}
        self.stream_time = 0
        self.partition_time: dict[int, int] = {}
        self.positions: dict[tuple[str, int], int] = {}

    def forget(self) -> None:
        """Partitions moved: another worker may have changed what this one cached."""
        self.cache.clear()
        self.stuck.forget()
        self.partition_time.clear()
        self.positions.clear()  # another worker may have folded further meanwhile

    def load(self, key: bytes) -> core.Stored:
        """Decoded state from the cache, else the store."""
        stored = self.cache.get(key)
        if stored is None:
            stored = core.Stored.decode(self.states.get(key))
        return stored

    def process(self, info: BatchInfo, records: Sequence[core.Record]) -> list[OutRecord]:
        """The core over one batch, then the store writes; the records to send."""
        source = self.topic_index[info.topic]
        partition = info.partition
        result = core.process(records, source, self.load, avro.decode_event, self.rules)
        core.finish(result, self.rules)
        self.positions[(info.topic, partition)] = info.last_offset
        if result.event_time > self.stream_time:
            self.stream_time = result.event_time
        if result.event_time > self.partition_time.get(partition, 0):
            self.partition_time[partition] = result.event_time
        out: list[OutRecord] = []
        self.store(result, partition, out)
        self.emit(result, info, out)
        if self.metrics is not None:
            self.count(result, records)
        return out

    def count(self, result: core.Batch, records: Sequence[core.Record]) -> None:
        metrics = self.metrics
        assert metrics is not None
        metrics.events_in.inc(result.records)
        metrics.applied.inc(result.applied)
        metrics.duplicates.inc(result.duplicates)
        for kind, count in result.dead_reasons().items():
            metrics.dead_lettered.labels(kind).inc(count)
        now = time.time()
        observe = metrics.latency.observe
        for record in records[:: max(1, len(records) // 64)]:  # a sample is enough
            if record.timestamp_ms:
                observe(max(0.0, now - record.timestamp_ms / 1000))

    def store(self, result: core.Batch, partition: int, out: list[OutRecord]) -> None:
        """Write through: one store write and one changelog record per touched parcel."""
        states = self.states
        changelog = self.topics.changelog
        cache = self.cache
        moves = []
        for key, change in result.changes.items():
            stored = change.stored
            if stored is change.before and not change.status:
                continue
            encoded = stored.encode()
            states[key] = encoded
            out.append((changelog, partition, key, encoded, []))
            cache.pop(key, None)
            cache[key] = stored
            if stored is not change.before:
                moves.append((key, change.before.state, stored.state))
        while len(cache) > self.cache_size:
            del cache[next(iter(cache))]  # evict the least recently written
        stuck_changelog = self.topics.stuck_changelog
        for key, value in self.stuck.moves(partition, moves):
            out.append((stuck_changelog, partition, key, value, []))

    def emit(self, result: core.Batch, info: BatchInfo, out: list[OutRecord]) -> None:
        """The batch's outputs: statuses (one per parcel), milestones, alerts, deltas."""
        topics = self.topics
        status_topic = topics.status
        events_topic = topics.parcel_events
        for key, change in result.changes.items():
            state = change.stored.state
            if state is None:
                continue
            stamp = ("source_ts", b"%d" % change.source_ts)
            if change.status:
                eta_fields = None if change.estimate is None else change.estimate.status_fields()
                status = avro.status_bytes(state, eta_fields)
                out.append((status_topic, None, key, status, [stamp]))
            elif change.tombstone:
                headers = [
                    stamp,
                    ("version", b"%d" % state.version),
                    ("updated_at", b"%d" % (state.last_event_time or 0)),
                ]
                out.append((status_topic, None, key, None, headers))
            for delta in change.deltas:
                value = delta.raw if delta.raw is not None else avro.encode_event(delta.event)
                headers = [
                    ("op", b"add" if delta.added else b"remove"),
                    ("version", b"%d" % delta.version),
                    stamp,
                ]
                out.append((events_topic, None, key, value, headers))
        milestones = topics.milestones
        for key, milestone in result.milestones:
            out.append((milestones, None, key, orjson.dumps(milestone), []))
        self.alerts(result.alerts, out)
        observations = topics.observations
        for obs_key, obs_value in result.observations:
            out.append((observations, None, obs_key, obs_value, []))
        for dead in result.dead_letters:
            out.append(self.dead_letter(dead, info))

    def alerts(self, alerts: list[tuple[bytes, dict[str, Any]]], out: list[OutRecord]) -> None:
        for key, alert in alerts:
            out.append((self.topics.alerts, None, key, orjson.dumps(alert), []))
            if self.metrics is not None:
                self.metrics.alerts.labels(alert["alert"]).inc()

    def dead_letter(self, dead: core.DeadLetter, info: BatchInfo) -> OutRecord:
        """The original bytes with the reason and their origin.

        An input record near the broker's size limit would not fit once the headers
        are added, and an undeliverable dead letter would stop the worker on every
        restart: such a value is cut to ``DEAD_LETTER_MAX_VALUE`` bytes, with its
        original length in ``truncated_from`` (the whole record stays in its input
        topic at ``source_offset``).
        """
        record = dead.record
        headers = [
            ("reason", dead.reason.encode("utf-8", "replace")[:4000]),
            ("source_topic", info.topic.encode()),
            ("source_partition", b"%d" % info.partition),
            ("source_offset", b"%d" % record.offset),
        ]
        value = record.value
        if value is not None and len(value) > DEAD_LETTER_MAX_VALUE:
            headers.append(("truncated_from", b"%d" % len(value)))
            value = value[:DEAD_LETTER_MAX_VALUE]
        return (self.topics.dead_letter, None, record.key, value, headers)

    def stuck_alerts(
        self, threshold: int, watermark: int, partitions: Iterable[int]
    ) -> list[OutRecord]:
        """Alerts for parcels silent since before ``threshold``, and the index's deletions."""
        out: list[OutRecord] = []
        changelog = self.topics.stuck_changelog
        for due in self.stuck.take_due(threshold, partitions):
            candidates = []
            for parcel_id in due.members:
                key = parcel_id.encode()
                state = self.load(key).state
                since = core.stuck_since(state)
                # Only from the bucket of its current last event (an older bucket's entry
                # is stale); a parcel put in a later bucket is not silent yet.
                if (
                    state is not None
                    and since is not None
                    and since < threshold
                    and since // BUCKET_MS == due.bucket
                ):
                    candidates.append((key, state))
            self.alerts(core.stuck_alerts(candidates, watermark), out)
            out += [(changelog, due.partition, key, None, []) for key in due.deleted]
        return out
