"""The ClickHouse sink loop: Kafka outputs -> batched inserts -> offset commits.

Run by the sink service (``trackbone sink``, ``streams/sink_service.py``), a process of
its own that owns the embedded engine.

A consumer group of its own (``<app id>-clickhouse-sink``) reads the status topic
(-> ``parcel_state``, ``parcel_eta``) and the internal effective-event topic
(-> ``parcel_events``). Offsets are committed only after ClickHouse accepted the
batch that holds their rows (``BatchingSink.committable``); a slow or failing
ClickHouse stalls ``sink.add`` and so the consumption (backpressure), never memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from streams import avro
from streams.clickhouse.client import connect, database_name, is_embedded
from streams.clickhouse.rows import (
    PARCEL_ETA,
    PARCEL_EVENTS,
    PARCEL_STATE,
    Row,
    eta_row,
    event_row,
    state_tombstone_row,
    status_row,
)
from streams.clickhouse.sink import ClickHouseSink
from streams.kafka_io import security_options
from streams.settings import Settings

log = logging.getLogger(__name__)

VISIBLE_SAMPLES = 200_000


def header(record: ConsumerRecord, name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None


def rows_for(record: ConsumerRecord, status_topic: str) -> dict[str, list[Row]]:
    """ClickHouse rows carried by one output record (status, tombstone or event delta)."""
    if record.topic == status_topic:
        if record.value is None:
            version = int(header(record, "version") or b"0")
            updated_at = int(header(record, "updated_at") or b"0")
            parcel_id = record.key.decode()
            return {
                PARCEL_STATE: [
                    state_tombstone_row(parcel_id, version=version, updated_at=updated_at)
                ]
            }
        status = avro.decode_status(record.value)
        rows: dict[str, list[Row]] = {PARCEL_STATE: [status_row(status)]}
        eta = eta_row(status)
        if eta is not None:
            rows[PARCEL_ETA] = [eta]
        return rows
    event = avro.decode_event(record.value)
    version = int(header(record, "version") or b"0")
    deleted = header(record, "op") == b"remove"
    return {PARCEL_EVENTS: [event_row(event, version=version, deleted=deleted)]}


@dataclass(slots=True)
class SinkTotals:
    """What every run of the loop so far has written (a restart starts a new sink)."""

    rows_by_table: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    write_failures: int = 0

    def add(self, sink: ClickHouseSink) -> None:
        for table, rows in sink.rows_by_table.items():
            self.rows_by_table[table] = self.rows_by_table.get(table, 0) + rows
        self.batches += sink.batches_written
        self.write_failures += sink.write_failures


class SinkRunner:
    """One consumer + batching sink; ``run()`` until cancelled or failed (caller restarts)."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        events_topic: str | None = None,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.status_topic = settings.topics.parcel_status
        self.events_topic = events_topic or settings.topics.parcel_events
        self.group_id = f"{settings.app_id}-clickhouse-sink"
        self.visible_ms: collections.deque[float] = collections.deque(maxlen=VISIBLE_SAMPLES)
        self._source_ts: dict[Hashable, collections.deque[tuple[int, int]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self.sink: ClickHouseSink | None = None
        self.retired = SinkTotals()
        """Totals of the sinks of earlier runs (before a restart)."""
        self.ready = False
        """True while the schema is migrated and the consumer runs."""
        self.first_fetch_at: float | None = None
        """Epoch seconds of the first non-empty fetch (draining-rate measurements)."""
        self.last_write_at: float | None = None
        """Epoch seconds when ClickHouse last accepted a batch."""

    async def run(self) -> None:
        """Migrate the schema, then consume, insert and commit until cancelled."""
        from streams.clickhouse.migrations import migrate

        settings = self.settings
        self._source_ts.clear()  # a new consumer re-reads from the committed offsets
        client = await asyncio.to_thread(connect, settings)
        server = not is_embedded(settings.clickhouse_url)
        await asyncio.to_thread(migrate, client, database_name(settings), server=server)
        self.sink = ClickHouseSink.from_settings(
            settings, client, database=database_name(settings), on_committed=self._committed
        )
        consumer = self._consumer = AIOKafkaConsumer(
            self.status_topic,
            self.events_topic,
            bootstrap_servers=self.bootstrap,
            group_id=f"{settings.app_id}-clickhouse-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 << 20,
            **security_options(settings),
        )
        try:
            await consumer.start()
            async with self.sink:
                self.ready = True
                while True:
                    batch = await consumer.getmany(
                        timeout_ms=int(settings.sink_flush_s * 1000) or 100,
                        max_records=settings.sink_batch_rows,
                    )
                    if batch and self.first_fetch_at is None:
                        self.first_fetch_at = time.time()
                    for tp, records in batch.items():
                        await self._add(tp, records)
        finally:
            self.ready = False
            self.retired.add(self.sink)
            self.sink = None
            with contextlib.suppress(Exception):
                await consumer.stop()
            self._consumer = None

    async def _add(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        assert self.sink is not None
        rows: dict[str, list[Row]] = {}
        stamps = self._source_ts.setdefault(tp, collections.deque())
        for record in records:
            try:
                produced = rows_for(record, self.status_topic)
            except (ValueError, avro.DecodeError):
                log.exception("sink: skipping undecodable record %s@%s", tp, record.offset)
                continue
            for table, table_rows in produced.items():
                rows.setdefault(table, []).extend(table_rows)
            source = header(record, "source_ts")
            if source is not None and record.topic == self.status_topic:
                stamps.append((record.offset, int(source)))
        await self.sink.add(rows, {tp: records[-1].offset})

    async def _committed(self, offsets: dict[Hashable, int]) -> None:
        """Rows up to these offsets are in ClickHouse: commit, and record visibility."""
        self.last_write_at = time.time()
        now_ms = self.last_write_at * 1000
        for tp, offset in offsets.items():
            stamps = self._source_ts.get(tp)
            while stamps and stamps[0][0] <= offset:
                _, source = stamps.popleft()
                self.visible_ms.append(now_ms - source)
        if self._consumer is None:
            return
        commit = {
            tp: off + 1
            for tp, off in offsets.items()
            if isinstance(tp, TopicPartition) and tp in self._consumer.assignment()
        }
        if not commit:
            return
        try:
            await self._consumer.commit(commit)
        except KafkaError as exc:
            # Rebalanced away: the new owner re-reads the tail; the rows are idempotent.
            log.warning("sink: commit failed (%s); rows will be re-written, harmlessly", exc)

    def totals(self) -> SinkTotals:
        """Cumulative over restarts: the retired sinks plus the running one."""
        retired = self.retired
        totals = SinkTotals(dict(retired.rows_by_table), retired.batches, retired.write_failures)
        if self.sink is not None:
            totals.add(self.sink)
        return totals

    async def lag(self) -> dict[TopicPartition, int]:
        """Records per assigned partition the sink has not consumed yet (high water - position)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lags: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await consumer.position(tp)
            except KafkaError:
                continue
            lags[tp] = max(0, high - position)
        return lags

    def stats(self, lag: dict[TopicPartition, int] | None = None) -> dict[str, Any]:
        """ClickHouse-visible latency samples (ms) and the sink's state (cumulative counts)."""
        status: dict[str, Any] = self.sink.status() if self.sink is not None else {}
        totals = self.totals()
        status |= {
            "rows_written": sum(totals.rows_by_table.values()),
            "rows_by_table": totals.rows_by_table,
            "batches_written": totals.batches,
            "write_failures": totals.write_failures,
            "ready": self.ready,
            "first_fetch_at": self.first_fetch_at,
            "last_write_at": self.last_write_at,
        }
        if lag is not None:
            status["consumer_lag"] = sum(lag.values())
        return {"clickhouse_visible_ms": list(self.visible_ms), "sink": status}
