"""ETA wiring: learn lane statistics from delivered parcels, estimate on every event.

Observations of a delivered parcel are repartitioned by lane level (the topic's key
is the level key) and folded by ``learn_lane_statistics`` into the ``lane-stats``
global table, so a parcel on any partition of any worker gets estimates learned from
all partitions. Sketch merges are exact count additions, so the table does not
depend on the order in which observations arrive. Observations are batched (up to
``BATCH`` or ``WITHIN_S``) because one table value holds every milestone's sketch of a
level and re-encoding it per delivery would cost more than the delivery's whole fold.

The agent reads back what it wrote from its own map (``written``), not from the
table: a global table also applies its changelog as it reads it, and an older value
read back after a newer local write made a later retraction "never added" (seen in
every demo: the agent crashed and lost its batch). The map is dropped on a rebalance,
when another worker may have written.

Known limit: at-least-once delivery of observations means a crash between a batch's
table write and its offset commit can count that batch twice; a few duplicated
observations shift quantiles negligibly, and a rebuild from the topic is exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import faust
import orjson

from projections import eta
from projections.core import Record
from projections.fold import ParcelState
from streams.batching import BatchApp, BatchSchema, RecordBatch, folded_callback
from streams.settings import Settings
from streams.table_options import rocksdb_options

log = logging.getLogger(__name__)

LANE_OBSERVATIONS_BASE = "tracking.lane-observations"
BATCH = 2000
WITHIN_S = 1.0
TICK = b"tick"


def _observations(value: bytes) -> tuple[bytes, int, list[eta.Observation]]:
    doc = orjson.loads(value)
    lane = eta.Lane(*doc["l"])
    observations = [eta.Observation(lane, m, int(d)) for m, d in doc["o"]]
    return doc["k"].encode(), int(doc["s"]), observations


class TableIndex:
    """An ``eta.StatsSource`` over the global table, re-read at most every ``ttl_s``.

    The table changes once per learning batch (``WITHIN_S``), while every parcel event
    asks for up to four levels: reading the store each time cost more than estimating.
    """

    def __init__(self, table: Any, ttl_s: float = WITHIN_S) -> None:
        self.table = table
        self.ttl_s = ttl_s
        self._stats: dict[eta.LevelKey, tuple[float, eta.LaneStats | None]] = {}

    def sketch(self, level: eta.LevelKey, milestone: str) -> eta.Sketch | None:
        now = time.monotonic()
        cached = self._stats.get(level)
        if cached is None or cached[0] < now:
            data = self.table.get(eta.encode_level_key(level).encode())
            cached = (now + self.ttl_s, eta.from_bytes_cached(data) if data else None)
            self._stats[level] = cached
        stats = cached[1]
        return None if stats is None else stats.sketches.get((level, milestone))


class EtaWiring:
    """The lane-statistics topic, global table and learning agent of one app."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        # A batch topic (`streams.batching`): a delivered parcel sends an observation
        # per lane level, and each paid Faust's per-message pipeline (the learner was
        # 8 % of a paced worker's profile; batched, status p50 at 3,000/s fell a third).
        self.topic = app.topic(
            settings.topics.name(LANE_OBSERVATIONS_BASE),
            schema=BatchSchema(),
            partitions=1,
        )
        if isinstance(app, BatchApp):
            app.batch_topics |= {self.topic.get_topic_name()}
        self.table = app.GlobalTable(
            "lane-stats",
            partitions=1,
            key_type=bytes,
            value_type=bytes,
            recovery_buffer_size=1,
            options=rocksdb_options(settings, small=True),
        )
        self.index = TableIndex(self.table)
        self.pending: dict[bytes, tuple[list[eta.Observation], list[eta.Observation]]] = {}
        self.pending_count = 0
        self.last_flush = time.monotonic()
        self.written: dict[bytes, bytes] = {}
        self.unmatched_retractions = 0
        app.on_partitions_revoked.connect(self._forget_written)
        app.on_partitions_assigned.connect(self._forget_written)
        app.timer(WITHIN_S, name="tick_lane_statistics")(self.tick)
        app.agent(self.topic, name="learn_lane_statistics", concurrency=1)(
            self.learn_lane_statistics
        )

    def estimate(self, state: ParcelState) -> eta.Estimate | None:
        """Estimate in stream time (the parcel's last event), so replays agree."""
        return eta.estimate_for(self.index, state, now_ms=state.last_event_time)

    async def learn_lane_statistics(self, stream: faust.StreamT) -> None:
        """Fold observations into the per-level sketches, a batch at a time.

        Table writes need a current stream event (Faust #497), so an idle batch is
        flushed by a TICK message that ``tick`` emits, not by a timer writing the table.
        """
        folded = folded_callback(self.app)
        async for event in cast(faust.Stream, stream).noack().events():
            self.learn(cast(RecordBatch, event.value).records)
            folded(event)

    def learn(self, records: Sequence[Record]) -> None:
        """Take a batch of observation records; flush on a tick, a full batch or time."""
        ticked = False
        pending = self.pending
        for record in records:
            value = record.value
            if value == TICK:
                ticked = True
            elif value:
                key, sign, observations = _observations(value)
                plus, minus = pending.setdefault(key, ([], []))
                (plus if sign > 0 else minus).extend(observations)
                self.pending_count += 1
        if self.pending and (
            ticked or self.pending_count >= BATCH or time.monotonic() - self.last_flush >= WITHIN_S
        ):
            self.flush()

    async def tick(self) -> None:
        if self.pending:
            await self.topic.send(key=b"tick", value=TICK)

    async def _forget_written(self, *args: Any, **kwargs: Any) -> None:
        self.written.clear()

    def flush(self) -> None:
        pending, self.pending, self.pending_count = self.pending, {}, 0
        self.last_flush = time.monotonic()
        for key, (plus, minus) in pending.items():
            level = eta.decode_level_key(key)
            current = self.written.get(key) or self.table.get(key)
            stats = eta.from_bytes(current) if current else eta.empty_stats()
            if plus:
                stats = eta.add(stats, plus, level=level)
            if minus:
                try:
                    stats = eta.retract(stats, minus, level=level)
                except ValueError:
                    # A retraction whose addition this table never saw (an observation
                    # counted before a crash, re-sent after): keep the rest of the batch.
                    self.unmatched_retractions += len(minus)
                    log.warning(
                        "lane statistics: %d retraction(s) for %r never added; kept the rest",
                        len(minus),
                        key,
                    )
            encoded = eta.to_bytes(stats)
            self.table[key] = encoded
            self.written[key] = encoded
