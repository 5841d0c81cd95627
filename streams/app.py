"""The Faust application: thin agents around the pure fold.

One agent consumes the five contract input topics (all keyed by ``parcel_id``, so
a parcel lives on one partition) and, per message: decodes (the codec enforces the
contract), ``step``s the stored state, stores it, and emits outputs. Everything that
is neither applied nor a duplicate ends in the dead-letter topic with a reason, so
every input is accounted for: ``events_in = applied + duplicates + dead_lettered``.

Delivery is at-least-once with ``concurrency=1``. Faust flushes the producer
(changelog and outputs) before it commits an offset. A crash between writing and
committing re-delivers events the state already holds; such a re-delivered
duplicate (its offset is not above the parcel's stored high-water mark for its
topic) re-writes the state and re-emits the outputs, which are idempotent
downstream (compacted status keyed by parcel, versioned ClickHouse rows).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from aiokafka.structs import RecordMetadata
from faust.types.stores import StoreT
from faust.web import Request, Response, View

from projections import fold as fold_
from projections.events import Event
from projections.jsonform import PARCEL_ID_RE, event_to_json, format_time
from streams import avro, faust_fixes
from streams.eta_stream import LANE_OBSERVATIONS_BASE, EtaWiring, observation_messages
from streams.kafka_io import ensure_contract_topics, ensure_topics
from streams.metrics import Metrics
from streams.outbox import Outbox
from streams.settings import Settings
from streams.sink_runner import SinkRunner

log = logging.getLogger(__name__)

PARCEL_EVENTS_BASE = "tracking.parcel-events"
"""Internal topic: deltas of each parcel's effective event set, for the ClickHouse sink."""

_TERMINAL = {fold_.Milestone.DELIVERED, fold_.Milestone.RETURNED}
_NO_OFFSET = -1
_HW = struct.Struct("<5q")


@dataclass(slots=True)
class Stored:
    """A table value: per-input-topic high-water offsets, then the encoded fold state."""

    state: fold_.ParcelState | None
    high_water: list[int]
    on_time_probability: float | None = None
    """Of the last status sent (memory only): makes the at-risk alert edge-triggered."""

    def encode(self) -> bytes:
        assert self.state is not None
        return _HW.pack(*self.high_water) + fold_.encode_state(self.state)

    @classmethod
    def decode(cls, data: bytes | None) -> Stored:
        if not data:
            return cls(None, [_NO_OFFSET] * 5)
        return cls(fold_.decode_state(data[_HW.size :]), list(_HW.unpack_from(data)))


@dataclass(slots=True)
class Outputs:
    """What one step emits; built by pure code, sent by the agent."""

    status: dict[str, Any] | None = None
    tombstone: bool = False
    observations: list[tuple[bytes, bytes]] = field(default_factory=list)
    milestone: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    added: tuple[Event, ...] = ()
    removed: tuple[Event, ...] = ()


def _breached(state: fold_.ParcelState | None) -> bool:
    if state is None or state.promised_at is None:
        return False
    if state.delivered_at is not None:
        return state.delivered_at > state.promised_at
    if state.milestone is fold_.Milestone.RETURNED:
        return False
    return state.last_event_time is not None and state.last_event_time > state.promised_at


def alerts_for(
    before: fold_.ParcelState | None, after: fold_.ParcelState, at: int
) -> list[dict[str, Any]]:
    """Alerts raised by a state change (edge-triggered, so replays do not repeat them)."""
    alerts: list[dict[str, Any]] = []
    held_before = before is not None and "CUSTOMS_HOLD" in before.holds
    if "CUSTOMS_HOLD" in after.holds and not held_before:
        alerts.append(_alert("CUSTOMS_HOLD_STARTED", after, at))
    if _breached(after) and not _breached(before):
        alerts.append(_alert("PROMISE_BREACHED", after, at, promised_at=after.promised_at))
    return alerts


def _alert(kind: str, state: fold_.ParcelState, at: int, **detail: Any) -> dict[str, Any]:
    return {
        "alert": kind,
        "parcel_id": state.parcel_id,
        "at": format_time(at),
        "milestone": state.milestone.value,
        "version": state.version,
        **{k: format_time(v) if k.endswith("_at") else v for k, v in detail.items()},
    }


class TrackboneApp:
    """Builds the Faust app, its topics, table, agents, timers and web views."""

    def __init__(self, settings: Settings, bootstrap: str, *, sink: bool = True) -> None:
        faust_fixes.apply()
        self.settings = settings
        self.metrics = Metrics()
        self.stream_time = 0
        self.partition_time: dict[int, int] = {}
        self._stuck_alerted: dict[str, int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        topics = settings.topics
        self.status_name = topics.parcel_status
        self.milestones_name = topics.milestones
        self.alerts_name = topics.alerts
        self.dead_letter_name = topics.dead_letter
        self.parcel_events_name = topics.name(PARCEL_EVENTS_BASE)
        self.observations_name = topics.name(LANE_OBSERVATIONS_BASE)
        self._cache: dict[bytes, Stored] = {}
        self.cache_size = settings.state_cache_size
        topics = settings.topics
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{bootstrap}",
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
            table_standby_replicas=0,
            broker_commit_every=2000,
            broker_commit_interval=0.5,
            stream_buffer_maxsize=8192,
            producer_linger_ms=5,
            producer_max_batch_size=1 << 20,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            logging_config=None,
        )
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
        self.inputs = self.app.topic(*topics.inputs, **raw)
        self.topic_index = {name: i for i, name in enumerate(topics.inputs)}
        self.states = self.app.Table(
            "parcel-state",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.changelog_name = self.states.changelog_topic.get_topic_name()
        self.outbox = Outbox(
            lambda: self.app.producer._ensure_producer(),  # type: ignore[attr-defined]
            linger_s=settings.output_linger_s,
        )
        self.outbox.on_sent(self.changelog_name, self._changelog_stored)
        self.app.task(self.outbox.run_linger)
        self.app.agent(self.inputs, name="fold_parcel_events", concurrency=1)(
            self.fold_parcel_events
        )
        self.app.on_partitions_revoked.connect(self._forget_cached)
        self.app.on_partitions_assigned.connect(self._forget_cached)
        self.eta = EtaWiring(self.app, settings)
        self.app.timer(settings.stuck_check_interval_s, name="detect_stuck_parcels")(
            self.detect_stuck_parcels
        )
        self.sink_enabled = sink
        self.sink_runner: SinkRunner | None = None
        if sink:
            self.sink_runner = SinkRunner(
                settings, bootstrap, self.metrics, topics.name(PARCEL_EVENTS_BASE)
            )
            self.app.task(self.run_sink)
        self._register_views()

    async def run_sink(self) -> None:
        """The ClickHouse sink, restarted with backoff if it fails (it never drops rows)."""
        assert self.sink_runner is not None
        delay = 1.0
        while True:
            try:
                await self.sink_runner.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ClickHouse sink failed; restarting in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # --- the agent -------------------------------------------------------------

    async def fold_parcel_events(self, stream: faust.StreamT) -> None:
        """Decode, fold, store, emit: one input message at a time."""
        self._install_outbox()
        async for event in stream.events():
            message = event.message
            try:
                self.handle(
                    message.key,
                    message.value,
                    message.topic,
                    message.partition,
                    message.offset,
                    message.timestamp,
                )
            except Exception as exc:
                log.exception(
                    "internal error on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                self.dead_letter(
                    message.key,
                    message.value,
                    f"internal: {exc!r}",
                    message.topic,
                    message.partition,
                    message.offset,
                )
            await self.outbox.maybe_drain()

    def _install_outbox(self) -> None:
        """Faust flushes its producer before committing offsets: drain the outbox first."""
        producer = self.app.producer
        if getattr(producer, "_trackbone_outbox", None) is self.outbox:
            return
        original = producer.flush
        producer.flush = functools.partial(self.outbox.flush_with, original)  # type: ignore[method-assign]
        producer._trackbone_outbox = self.outbox  # type: ignore[attr-defined]

    def _changelog_stored(self, metadata: RecordMetadata, count: int) -> None:
        """What Faust's own changelog callback does: recovery starts after this offset."""
        last = metadata.offset + count - 1
        store: StoreT = self.states.data  # type: ignore[assignment]
        store.set_persisted_offset(metadata.topic_partition, last)

    def handle(
        self,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        timestamp: float | None,
    ) -> None:
        metrics = self.metrics
        metrics.events_in.inc()
        self.positions[(topic, partition)] = offset
        try:
            # The codec also enforces what Avro cannot (id alphabet, ranges, countries).
            decoded = avro.decode_event(value or b"")
        except avro.DecodeError as exc:
            self.dead_letter(key, value, f"invalid: {exc}", topic, partition, offset)
            return
        if key is None or key.decode("utf-8", "replace") != decoded.parcel_id:
            self.dead_letter(
                key,
                value,
                f"invalid: message key {key!r} is not the event's parcel_id",
                topic,
                partition,
                offset,
            )
            return
        self.stream_time = max(self.stream_time, decoded.event_time)
        if decoded.event_time > self.partition_time.get(partition, 0):
            self.partition_time[partition] = decoded.event_time
        source_ts = int(timestamp * 1000) if timestamp else 0
        stored = self.load(key)
        result = fold_.step(stored.state, decoded, max_events=self.settings.max_events_per_parcel)
        index = self.topic_index.get(topic, 0)
        if result.outcome is fold_.Outcome.DUPLICATE:
            metrics.duplicates.inc()
            if offset <= stored.high_water[index] and stored.state is not None:
                # Re-delivered after a crash: make sure what it wrote reached Kafka.
                self.store(key, stored, partition)
                if stored.state.event_count > 0:
                    self.emit(
                        key, stored.state, Outputs(status=self.status_of(stored.state)), source_ts
                    )
            return
        if result.outcome is not fold_.Outcome.APPLIED:
            self.dead_letter(
                key,
                value,
                f"{result.outcome.value.lower()}: {result.reason}",
                topic,
                partition,
                offset,
            )
            return
        metrics.applied.inc()
        state = result.state
        assert state is not None
        stored.high_water[index] = max(stored.high_water[index], offset)
        updated = Stored(state, stored.high_water)
        self.store(key, updated, partition)
        before = stored.state
        outputs = Outputs(added=result.added, removed=result.removed)
        if result.changed and state.event_count > 0:
            outputs.status = self.status_of(state)
            if before is None or before.milestone is not state.milestone:
                outputs.milestone = {
                    "parcel_id": state.parcel_id,
                    "milestone": state.milestone.value,
                    "previous": None if before is None else before.milestone.value,
                    "at": format_time(state.last_event_time),
                    "version": state.version,
                }
            outputs.alerts = alerts_for(before, state, decoded.event_time)
            updated.on_time_probability = outputs.status["on_time_probability"]
            if self.at_risk(stored, outputs.status):
                outputs.alerts.append(
                    _alert(
                        "PROMISE_AT_RISK",
                        state,
                        decoded.event_time,
                        promised_at=state.promised_at,
                        on_time_probability=outputs.status["on_time_probability"],
                        eta_p50_at=outputs.status["eta_p50"],
                    )
                )
            if self.settings.eta_enabled:
                outputs.observations = observation_messages(before, state)
        elif result.changed and before is not None and before.event_count > 0:
            outputs.tombstone = True  # every event voided: the parcel leaves the outputs
        self.emit(key, state, outputs, source_ts)
        if timestamp:
            metrics.latency.observe(max(0.0, time.time() - timestamp))

    def load(self, key: bytes) -> Stored:
        """Decoded state from the cache, else the table (decoding costs ~40 us a parcel)."""
        stored = self._cache.get(key)
        if stored is None:
            stored = Stored.decode(self.states.get(key))
        return stored

    def store(self, key: bytes, stored: Stored, partition: int) -> None:
        """Write through: the table (and its changelog) always holds what the cache holds.

        The changelog record goes through the outbox, not Faust's per-record send
        (which costs more than the whole fold); same topic, partition and bytes.
        """
        encoded = stored.encode()
        self.states.data[key] = encoded
        self.outbox.add(self.changelog_name, key, encoded, partition=partition)
        cache = self._cache
        cache.pop(key, None)
        cache[key] = stored
        if len(cache) > self.cache_size:
            del cache[next(iter(cache))]  # evict the least recently written

    async def _forget_cached(self, *args: Any, **kwargs: Any) -> None:
        # Partitions moved: another worker may have changed what this one cached.
        self._cache.clear()
        self.partition_time.clear()

    def at_risk(self, stored: Stored, status: dict[str, Any]) -> bool:
        """Edge-triggered: the chance of meeting the promise just fell below the threshold."""
        threshold = self.settings.promise_risk_threshold
        probability = status.get("on_time_probability")
        if probability is None or probability >= threshold:
            return False
        before = stored.state
        if before is None or before.event_count == 0:
            return True
        previous = stored.on_time_probability
        if previous is None:  # not in memory (restart, rebalance): estimate it again
            estimate = self.eta.estimate(before)
            previous = None if estimate is None else estimate.on_time_probability
        return previous is None or previous >= threshold

    def status_of(self, state: fold_.ParcelState) -> dict[str, Any]:
        estimate = self.eta.estimate(state) if self.settings.eta_enabled else None
        return avro.status_from_state(state, None if estimate is None else estimate.status_fields())

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.outbox.add(topic, key, value, headers)

    def emit(self, key: bytes, state: fold_.ParcelState, outputs: Outputs, source_ts: int) -> None:
        """Send a step's outputs; ``source_ts`` (the input's Kafka time) measures latency."""
        stamp = ("source_ts", str(source_ts).encode())
        version = str(state.version).encode()
        if outputs.status is not None:
            self._send(
                self.status_name, key=key, value=avro.encode_status(outputs.status), headers=[stamp]
            )
        elif outputs.tombstone:
            self._send(
                self.status_name,
                key=key,
                value=None,
                headers=[
                    stamp,
                    ("version", version),
                    ("updated_at", str(state.last_event_time or 0).encode()),
                ],
            )
        if outputs.milestone is not None:
            self._send(self.milestones_name, key=key, value=orjson.dumps(outputs.milestone))
        for obs_key, obs_value in outputs.observations:
            self._send(self.observations_name, key=obs_key, value=obs_value)
        for alert in outputs.alerts:
            self._send(self.alerts_name, key=key, value=orjson.dumps(alert))
            self.metrics.alerts.labels(alert["alert"]).inc()
        if self.sink_enabled:
            for op, events in ((b"add", outputs.added), (b"remove", outputs.removed)):
                for ev in events:
                    self._send(
                        self.parcel_events_name,
                        key=key,
                        value=avro.encode_event(ev),
                        headers=[("op", op), ("version", version), stamp],
                    )

    def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        """Park the original bytes with the reason and their origin; never raise."""
        self.metrics.dead_lettered.labels(reason.split(":", 1)[0]).inc()
        self._send(
            self.dead_letter_name,
            key=key,
            value=value,
            headers=[
                ("reason", reason.encode("utf-8", "replace")[:4000]),
                ("source_topic", topic.encode()),
                ("source_partition", str(partition).encode()),
                ("source_offset", str(offset).encode()),
            ],
        )

    # --- stuck parcels -----------------------------------------------------------

    async def detect_stuck_parcels(self) -> None:
        """Alert on parcels silent for too long, in stream time; emits, never writes tables."""
        if not self.partition_time:
            return
        # The slowest partition's time: a backlog on one partition must not make the
        # parcels of the others look silent.
        watermark = min(self.partition_time.values())
        threshold = watermark - int(self.settings.stuck_after_hours * 3_600_000)
        for key, value in list(self.states.items()):
            cached = self._cache.get(key)
            state = (cached if cached is not None else Stored.decode(value)).state
            if state is None or state.event_count == 0 or state.milestone in _TERMINAL:
                continue
            last = state.last_event_time or 0
            if last >= threshold or self._stuck_alerted.get(state.parcel_id) == last:
                continue
            self._stuck_alerted[state.parcel_id] = last
            alert = _alert(
                "PARCEL_STUCK",
                state,
                watermark,
                last_event_at=last,
            )
            self._send(self.alerts_name, key, orjson.dumps(alert))
            self.metrics.alerts.labels("PARCEL_STUCK").inc()
        await self.outbox.drain()

    # --- web -------------------------------------------------------------------------

    def _register_views(self) -> None:
        owner = self

        class ParcelView(View):
            @self.app.table_route(table=self.states, match_info="parcel_id")  # type: ignore[arg-type]
            async def get(self, request: Request, **kwargs: Any) -> Response:
                return owner.parcel_response(self, kwargs["parcel_id"])

        class HealthView(View):
            async def get(self, request: Request) -> Response:
                return self.json({"status": "ok", "stream_time": format_time(owner.stream_time)})

        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                owner.update_lag()
                body, content_type = owner.metrics.render()
                return self.bytes(body, content_type=content_type)

        class StatsView(View):
            async def get(self, request: Request) -> Response:
                body: dict[str, Any] = {"stream_time": format_time(owner.stream_time)}
                if owner.sink_runner is not None:
                    body |= owner.sink_runner.stats()
                return self.json(body)

        class QueryView(View):
            async def post(self, request: Request) -> Response:
                if owner.sink_runner is None:
                    return self.json({"error": "this worker runs no ClickHouse sink"}, status=503)
                try:
                    body = await request.json()
                except ValueError:
                    return self.json({"error": 'body must be JSON: {"sql": ...}'}, status=400)
                status, answer = await asyncio.to_thread(owner.readonly_query, body)
                return self.json(answer, status=status)

        self.app.page("/stats")(StatsView)
        self.app.page("/query")(QueryView)
        self.app.page("/parcels/{parcel_id}")(ParcelView)
        self.app.page("/health")(HealthView)
        self.app.page("/metrics")(MetricsView)

    def parcel_response(self, view: View, parcel_id: str) -> Response:
        if PARCEL_ID_RE.fullmatch(parcel_id) is None:
            return view.json(
                {"error": "malformed parcel id: must be 1..64 characters of [A-Za-z0-9_-]"},
                status=400,
            )
        stored = Stored.decode(self.states.get(parcel_id.encode()))
        state = stored.state
        if state is None or state.event_count == 0:
            return view.json({"error": f"unknown parcel {parcel_id}"}, status=404)
        body = fold_.state_to_json(state)
        body |= {k: v for k, v in self.status_of(state).items() if k.startswith("eta_")}
        body["version"] = state.version
        body["timeline"] = [event_to_json(ev) for ev in state.timeline()]
        return view.json(body)

    def readonly_query(self, body: object) -> tuple[int, dict[str, Any]]:
        """Analysts' SELECTs while this worker owns the embedded engine (one process per dir)."""
        from streams.clickhouse.client import connect
        from streams.clickhouse.readonly import handle_query_request

        return handle_query_request(connect(self.settings, readonly=True), body)

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
