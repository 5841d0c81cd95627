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

import asyncio
import logging
import signal
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import faust
from faust.types import TP

from projections import core
from projections import fold as fold_
from streams import avro, carrier_auth
from streams.batching import SCHEME, BatchApp, BatchSchema, RecordBatch, folded_callback
from streams.eta_stream import LANE_OBSERVATIONS_BASE, EtaWiring
from streams.kafka_io import ensure_deployment_topics, faust_credentials
from streams.liveness import Liveness
from streams.metrics import Metrics
from streams.outputs import Outputs
from streams.processor import BatchInfo, BatchProcessor, OutputTopics
from streams.settings import Settings
from streams.stuck import StuckIndex
from streams.table_options import rocksdb_options
from streams.views import register_views

log = logging.getLogger(__name__)


class TrackboneApp:
    """Builds the Faust app, its topics, tables, agents, timers and web views."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.liveness = Liveness(settings.stall_after_s)
        self.stall: dict[str, Any] | None = None
        """The last liveness check's finding (None: folding, or nothing to fold)."""
        topics = settings.topics
        self.app = BatchApp(
            settings.app_id,
            broker=f"{SCHEME}://{bootstrap}",
            broker_credentials=faust_credentials(settings),
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
            broker_max_poll_records=settings.max_batch_records,
            table_standby_replicas=0,
            broker_commit_every=50,
            # Faust's commit and livelock timers yield to the loop once per partition, and
            # each yield waits for a whole record batch to fold: under load a commit took
            # longer than the old 0.5 s interval ("Timer commit is overlapping", and the
            # livelock check at 2.5x the interval likewise). A crash redelivers at most this
            # much input as duplicates.
            broker_commit_interval=4.0,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            logging_config=None,
        )
        self.app.batch_topics = frozenset(topics.inputs)  # and the ETA learner's topic
        self.inputs = self.app.topic(*topics.inputs, schema=BatchSchema())
        self.topic_index = {name: i for i, name in enumerate(topics.inputs)}
        self.states = self.app.Table(
            "parcel-state",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            options=rocksdb_options(settings),
        )
        self.stuck_table = self.app.Table(
            "stuck-index",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            options=rocksdb_options(settings, small=True),
        )
        self.eta = EtaWiring(self.app, settings)
        self.processor = BatchProcessor(
            worker_topics(settings, self.states, self.stuck_table),
            core.Rules(
                max_events=settings.max_events_per_parcel,
                max_future_ms=settings.max_future_ms,
                risk_threshold=settings.promise_risk_threshold,
                estimate=self.eta.estimate if settings.eta_enabled else None,
                authorize=carrier_auth.authorizer(settings),
            ),
            self.states.data,
            StuckIndex(self.stuck_table.data),
            self.metrics,
            settings.state_cache_size,
        )
        self.outputs = Outputs(
            bootstrap,
            client_id=f"{settings.app_id}-outputs",
            max_in_flight=settings.records_in_flight,
            settings=settings,
        )
        for table in (self.states, self.stuck_table):
            self.outputs.on_sent(table.changelog_topic.get_topic_name(), _persisted(table))
        self.app.add_dependency(self.outputs)
        self.app.agent(self.inputs, name="fold_parcel_events", concurrency=1)(
            self.fold_parcel_events
        )
        self.app.on_partitions_revoked.connect(self._forget_cached)
        self.app.on_partitions_assigned.connect(self._forget_cached)
        self.app.timer(settings.stuck_check_interval_s, name="detect_stuck_parcels")(
            self.detect_stuck_parcels
        )
        self.app.timer(max(1.0, settings.stall_after_s / 4), name="check_liveness")(
            self.check_liveness
        )
        self.app.task(self._install_task_dump)
        register_views(self)

    async def _install_task_dump(self) -> None:
        """``kill -USR2 <pid>`` logs every asyncio task's stack: what a stuck worker waits on."""

        def dump() -> None:
            for task in asyncio.all_tasks():
                chain: list[str] = []
                awaited: Any = task.get_coro()
                while awaited is not None and len(chain) < 40:
                    frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
                    if frame is not None:
                        code = frame.f_code
                        chain.append(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
                    awaited = getattr(awaited, "cr_await", None) or getattr(
                        awaited, "ag_await", None
                    )
                log.warning("task %s awaits:\n  %s", task.get_name(), "\n  ".join(chain))

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump)

    @property
    def stream_time(self) -> int:
        return self.processor.stream_time

    async def fold_parcel_events(self, stream: faust.StreamT) -> None:
        """Fold, store, emit a record batch at a time; ack it once Kafka holds its outputs."""
        outputs = self.outputs
        process = self.processor.process
        folded = folded_callback(self.app)
        async for event in cast(faust.Stream, stream).noack().events():
            batch: RecordBatch = event.value
            try:
                records = process(
                    BatchInfo(batch.topic, batch.partition, batch.last_offset), batch.records
                )
                stored = await outputs.send(records)
                outputs.ack_when_stored(stored, partial(folded, event), len(records))
                await outputs.settle()
                self.liveness.progressed()
            except Exception as exc:
                # Unacknowledged, the batch would hold back every later commit of its
                # partition: stop the worker instead, so that a restart re-delivers it.
                log.exception(
                    "batch %s[%s]@%s failed", batch.topic, batch.partition, batch.last_offset
                )
                await self.app.crash(exc)
                raise

    async def _forget_cached(self, *args: Any, **kwargs: Any) -> None:
        self.processor.forget()
        self.liveness.moved()  # every wait starts again with the new assignment

    async def check_liveness(self) -> None:
        """Input waiting (per the broker's end offsets) and nothing folded: a stall."""
        consumer = self.app.consumer
        positions = self.processor.positions
        try:
            partitions = [tp for tp in consumer.assignment() if tp.topic in self.topic_index]
            ends = await consumer.highwaters(*partitions) if partitions else {}
            waiting = 0
            for tp in partitions:
                folded = positions.get((tp.topic, tp.partition))
                # Not folded here yet: count from where the consumer reads (committed).
                done = folded + 1 if folded is not None else (await consumer.position(tp) or 0)
                waiting += max(0, ends.get(tp, 0) - done)
        except Exception as exc:  # a rebalance under way: the next check decides
            log.debug("liveness check skipped: %r", exc)
            return
        idle = self.liveness.stalled_s(waiting)
        self.stall = (
            None if idle is None else {"stalled_s": round(idle), "records_waiting": waiting}
        )
        if self.stall is not None:
            log.error(
                "stalled: %(records_waiting)s input records wait and no batch was folded "
                "for %(stalled_s)s s (GET /health answers 503; restart the worker)",
                self.stall,
            )
            return
        committed = self.app.monitor.tp_committed_offsets  # Faust's sensor: last commits
        uncommitted = self.liveness.uncommitted_s(
            {tp: (positions.get((tp.topic, tp.partition)), committed.get(tp)) for tp in partitions}
        )
        if uncommitted is not None:
            self.stall = {
                "uncommitted_s": round(uncommitted[0]),
                "records_uncommitted": uncommitted[1],
            }
            log.error(
                "stalled: %(records_uncommitted)s folded input records of a partition "
                "were not committed for %(uncommitted_s)s s (GET /health answers 503; a "
                "restart commits them again, re-delivering them as duplicates)",
                self.stall,
            )

    async def detect_stuck_parcels(self) -> None:
        """Alert on parcels silent for too long, in stream time; reads only due index buckets."""
        partition_time = self.processor.partition_time
        if not partition_time:
            return
        # The slowest partition's time: a backlog on one partition must not make the
        # parcels of the others look silent.
        watermark = min(partition_time.values())
        threshold = watermark - int(self.settings.stuck_after_hours * 3_600_000)
        try:
            inputs = self.topic_index
            assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic in inputs}
        except Exception as exc:  # a rebalance under way: the next check decides
            log.debug("stuck check skipped: %r", exc)
            return
        records = self.processor.stuck_alerts(threshold, watermark, sorted(assigned))
        if records:
            await (await self.outputs.send(records))

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
        positions = self.processor.positions
        for tp in assignment:
            if tp.topic not in self.topic_index:
                continue
            high = consumer.highwater(tp) or 0
            position = positions.get((tp.topic, tp.partition))
            lag = high - (position + 1 if position is not None else 0)
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))


def worker_topics(settings: Settings, states: Any, stuck: Any) -> OutputTopics:
    topics = settings.topics
    return OutputTopics(
        inputs=topics.inputs,
        changelog=states.changelog_topic.get_topic_name(),
        stuck_changelog=stuck.changelog_topic.get_topic_name(),
        status=topics.parcel_status,
        milestones=topics.milestones,
        alerts=topics.alerts,
        dead_letter=topics.dead_letter,
        parcel_events=topics.parcel_events,
        observations=topics.name(LANE_OBSERVATIONS_BASE),
    )


def _persisted(table: Any) -> Callable[[int, int], None]:
    """What Faust's own changelog callback does: recovery starts after this offset."""
    topic = table.changelog_topic.get_topic_name()

    def persisted(partition: int, offset: int) -> None:
        table.data.set_persisted_offset(TP(topic, partition), offset)

    return persisted


async def ensure_worker_topics(settings: Settings, bootstrap: str) -> None:
    """The contract's topics, plus the internal ones this app reads and writes."""
    await ensure_deployment_topics(settings, bootstrap)
