"""The Faust application: the wiring around the processing core.

One agent, ``fold_parcel_events``, consumes the five contract input topics (all keyed
by ``parcel_id``, so a parcel lives on one partition of each) as record batches
(`streams.batching`), and per batch: runs the core (`projections.core`), stores each
touched parcel once (table and changelog), sends the outputs, and acknowledges the
batch once Kafka holds all of it (`streams.outputs`), after which Faust commits its
offsets. Everything that is neither applied nor a duplicate ends in the dead-letter
topic with a reason, so ``events_in = applied + duplicates + dead_lettered``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import faust
import orjson
from faust.types import TP

from projections import core
from projections import fold as fold_
from streams import avro
from streams.batching import SCHEME, BatchApp, BatchSchema, RecordBatch
from streams.eta_stream import LANE_OBSERVATIONS_BASE, EtaWiring
from streams.kafka_io import ensure_contract_topics, ensure_topics
from streams.metrics import Metrics
from streams.outputs import Outputs, OutRecord
from streams.settings import Settings
from streams.stuck import StuckIndex
from streams.views import register_views

log = logging.getLogger(__name__)

PARCEL_EVENTS_BASE = "tracking.parcel-events"
"""Internal topic: deltas of each parcel's effective event set, for the ClickHouse sink."""

MAX_BATCH_RECORDS = 2000


class TrackboneApp:
    """Builds the Faust app, its topics, tables, agents, timers and web views."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.stream_time = 0
        self.partition_time: dict[int, int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        topics = settings.topics
        self.status_name = topics.parcel_status
        self.milestones_name = topics.milestones
        self.alerts_name = topics.alerts
        self.dead_letter_name = topics.dead_letter
        self.parcel_events_name = topics.name(PARCEL_EVENTS_BASE)
        self.observations_name = topics.name(LANE_OBSERVATIONS_BASE)
        self._cache: dict[bytes, core.Stored] = {}
        self.cache_size = settings.state_cache_size
        self.app = BatchApp(
            settings.app_id,
            broker=f"{SCHEME}://{bootstrap}",
            store=settings.table_store,
            datadir=str(settings.data_dir / "faust"),
            web_host=settings.web_host,
            web_port=settings.web_port,
            web_in_thread=False,
            canonical_url=f"http://{settings.web_host}:{settings.web_port}",
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            topic_allow_declare=True,
            processing_guarantee="at_least_once",
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
            broker_max_poll_records=MAX_BATCH_RECORDS,
            table_standby_replicas=0,
            broker_commit_every=50,
            broker_commit_interval=0.5,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            logging_config=None,
        )
        self.app.batch_topics = frozenset(topics.inputs)
        self.inputs = self.app.topic(*topics.inputs, schema=BatchSchema())
        self.topic_index = {name: i for i, name in enumerate(topics.inputs)}
        self.states = self.app.Table(
            "parcel-state", partitions=settings.partitions, key_type=bytes, value_type=bytes
        )
        self.stuck_table = self.app.Table(
            "stuck-index", partitions=settings.partitions, key_type=bytes, value_type=bytes
        )
        self.stuck = StuckIndex(self.stuck_table)
        self.changelog_name = self.states.changelog_topic.get_topic_name()
        self.outputs = Outputs(bootstrap, client_id=f"{settings.app_id}-outputs")
        self.outputs.on_sent(self.changelog_name, self._persisted(self.states))
        self.outputs.on_sent(self.stuck.changelog, self._persisted(self.stuck_table))
        self.app.agent(self.inputs, name="fold_parcel_events", concurrency=1)(
            self.fold_parcel_events
        )
        self.app.on_partitions_revoked.connect(self._forget_cached)
        self.app.on_partitions_assigned.connect(self._forget_cached)
        self.eta = EtaWiring(self.app, settings)
        self.rules = core.Rules(
            max_events=settings.max_events_per_parcel,
            risk_threshold=settings.promise_risk_threshold,
            estimate=self.eta.estimate if settings.eta_enabled else None,
        )
        self.app.timer(settings.stuck_check_interval_s, name="detect_stuck_parcels")(
            self.detect_stuck_parcels
        )
        self.app.add_dependency(self.outputs)
        register_views(self)

    # --- the agent -------------------------------------------------------------

    async def fold_parcel_events(self, stream: faust.StreamT) -> None:
        """Decode, fold, store, emit: one record batch at a time, acked once stored."""
        outputs = self.outputs
        async for event in cast(faust.Stream, stream).noack().events():
            batch: RecordBatch = event.value
            records = self.process(batch)
            done = await outputs.send(records)
            outputs.ack_when_stored(done, event.ack)
            await outputs.settle()

    def process(self, batch: RecordBatch) -> list[OutRecord]:
        """The core over one batch, then the table writes; the records to send."""
        metrics = self.metrics
        source = self.topic_index[batch.topic]
        partition = batch.partition
        result = core.process(batch.records, source, self.load, avro.decode_event, self.rules)
        core.finish(result, self.rules)
        self.positions[(batch.topic, partition)] = batch.last_offset
        if result.event_time > self.stream_time:
            self.stream_time = result.event_time
        if result.event_time > self.partition_time.get(partition, 0):
            self.partition_time[partition] = result.event_time
        out: list[OutRecord] = []
        self.store(result, partition, out)
        self.emit(result, batch, out)
        metrics.events_in.inc(result.records)
        metrics.applied.inc(result.applied)
        metrics.duplicates.inc(result.duplicates)
        for kind, count in result.dead_reasons().items():
            metrics.dead_lettered.labels(kind).inc(count)
        now = time.time()
        observe = metrics.latency.observe
        for record in batch.records[:: max(1, len(batch.records) // 64)]:
            if record.timestamp_ms:
                observe(max(0.0, now - record.timestamp_ms / 1000))
        return out

    def load(self, key: bytes) -> core.Stored:
        """Decoded state from the cache, else the table."""
        stored = self._cache.get(key)
        if stored is None:
            stored = core.Stored.decode(self.states.data.get(key))
        return stored

    def store(self, result: core.Batch, partition: int, out: list[OutRecord]) -> None:
        """Write through: one table write and one changelog record per touched parcel."""
        data = self.states.data
        changelog = self.changelog_name
        cache = self._cache
        moves = []
        for key, change in result.changes.items():
            stored = change.stored
            if stored is change.before and not change.status:
                continue
            encoded = stored.encode()
            data[key] = encoded
            out.append((changelog, partition, key, encoded, []))
            cache.pop(key, None)
            cache[key] = stored
            if stored is not change.before:
                moves.append((key, change.before.state, stored.state))
        while len(cache) > self.cache_size:
            del cache[next(iter(cache))]  # evict the least recently written
        for key, value in self.stuck.moves(partition, moves):
            out.append((self.stuck.changelog, partition, key, value, []))

    def emit(self, result: core.Batch, batch: RecordBatch, out: list[OutRecord]) -> None:
        """The batch's outputs: statuses (one per parcel), milestones, alerts, deltas."""
        status_name = self.status_name
        events_name = self.parcel_events_name
        for key, change in result.changes.items():
            state = change.stored.state
            if state is None:
                continue
            stamp = ("source_ts", b"%d" % change.source_ts)
            if change.status:
                eta_fields = None if change.estimate is None else change.estimate.status_fields()
                status = avro.encode_status(avro.status_from_state(state, eta_fields))
                out.append((status_name, None, key, status, [stamp]))
            elif change.tombstone:
                headers = [
                    stamp,
                    ("version", b"%d" % state.version),
                    ("updated_at", b"%d" % (state.last_event_time or 0)),
                ]
                out.append((status_name, None, key, None, headers))
            for delta in change.deltas:
                value = delta.raw if delta.raw is not None else avro.encode_event(delta.event)
                headers = [
                    ("op", b"add" if delta.added else b"remove"),
                    ("version", b"%d" % delta.version),
                    stamp,
                ]
                out.append((events_name, None, key, value, headers))
        for key, milestone in result.milestones:
            out.append((self.milestones_name, None, key, orjson.dumps(milestone), []))
        self._alerts(result.alerts, out)
        for obs_key, obs_value in result.observations:
            out.append((self.observations_name, None, obs_key, obs_value, []))
        for dead in result.dead_letters:
            out.append(self._dead_letter(dead, batch))

    def _alerts(self, alerts: list[tuple[bytes, dict[str, Any]]], out: list[OutRecord]) -> None:
        for key, alert in alerts:
            out.append((self.alerts_name, None, key, orjson.dumps(alert), []))
            self.metrics.alerts.labels(alert["alert"]).inc()

    def _dead_letter(self, dead: core.DeadLetter, batch: RecordBatch) -> OutRecord:
        """The original bytes with the reason and their origin."""
        record = dead.record
        headers = [
            ("reason", dead.reason.encode("utf-8", "replace")[:4000]),
            ("source_topic", batch.topic.encode()),
            ("source_partition", b"%d" % batch.partition),
            ("source_offset", b"%d" % record.offset),
        ]
        return (self.dead_letter_name, None, record.key, record.value, headers)

    def _persisted(self, table: Any) -> Any:
        """What Faust's own changelog callback does: recovery starts after this offset."""
        topic = table.changelog_topic.get_topic_name()

        def persisted(partition: int, offset: int) -> None:
            table.data.set_persisted_offset(TP(topic, partition), offset)

        return persisted

    async def _forget_cached(self, *args: Any, **kwargs: Any) -> None:
        # Partitions moved: another worker may have changed what this one cached.
        self._cache.clear()
        self.partition_time.clear()

    # --- stuck parcels -----------------------------------------------------------

    async def detect_stuck_parcels(self) -> None:
        """Alert on parcels silent for too long, in stream time; reads only due index buckets."""
        if not self.partition_time:
            return
        # The slowest partition's time: a backlog on one partition must not make the
        # parcels of the others look silent.
        watermark = min(self.partition_time.values())
        threshold = watermark - int(self.settings.stuck_after_hours * 3_600_000)
        due = self.stuck.take_due(threshold)
        if not due:
            return
        out: list[OutRecord] = []
        for partition, bucket, members in due:
            candidates = []
            for parcel_id in members:
                key = parcel_id.encode()
                state = self.load(key).state
                since = core.stuck_since(state)
                if state is not None and since is not None and since < threshold:
                    candidates.append((key, state))
            self._alerts(core.stuck_alerts(candidates, watermark), out)
            out.append((self.stuck.changelog, partition, bucket, None, []))
        done = await self.outputs.send(out)
        await done

    def status_of(self, state: fold_.ParcelState) -> dict[str, Any]:
        estimate = self.eta.estimate(state) if self.settings.eta_enabled else None
        return avro.status_from_state(state, None if estimate is None else estimate.status_fields())

    def update_lag(self) -> None:
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:
            return
        self.metrics.lag.clear()  # partitions move between workers
        for tp in assignment:
            if tp.topic not in self.topic_index:
                continue
            high = consumer.highwater(tp) or 0
            position = self.positions.get((tp.topic, tp.partition))
            lag = high - (position + 1 if position is not None else 0)
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))


async def ensure_worker_topics(settings: Settings, bootstrap: str) -> None:
    """The contract's topics, plus the internal ones this app reads and writes."""
    await ensure_contract_topics(settings, bootstrap)
    await ensure_topics(bootstrap, [settings.topics.name(PARCEL_EVENTS_BASE)], settings.partitions)
    # Lane statistics live in one partition: a global table read by every worker.
    lane_changelog = f"{settings.app_id}-lane-stats-changelog"
    await ensure_topics(
        bootstrap,
        [settings.topics.name(LANE_OBSERVATIONS_BASE), lane_changelog],
        1,
        compacted=[lane_changelog],
    )
