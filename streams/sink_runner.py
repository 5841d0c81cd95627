"""The worker's ClickHouse sink loop: Kafka outputs -> batched inserts -> offset commits.

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
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from streams import avro
from streams.clickhouse.client import connect, database_name
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
from streams.metrics import Metrics
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


class SinkRunner:
    """Runs inside the worker's event loop as a Faust task."""

    def __init__(
        self, settings: Settings, bootstrap: str, metrics: Metrics, events_topic: str
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.metrics = metrics
        self.status_topic = settings.topics.parcel_status
        self.events_topic = events_topic
        self.visible_ms: collections.deque[float] = collections.deque(maxlen=VISIBLE_SAMPLES)
        self._source_ts: dict[Hashable, collections.deque[tuple[int, int]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self.sink: ClickHouseSink | None = None

    async def run(self) -> None:
        settings = self.settings
        client = await asyncio.to_thread(connect, settings)
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
        )
        await consumer.start()
        try:
            async with self.sink:
                while True:
                    batch = await consumer.getmany(
                        timeout_ms=int(settings.sink_flush_s * 1000) or 100,
                        max_records=settings.sink_batch_rows,
                    )
                    for tp, records in batch.items():
                        await self._add(tp, records)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

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
        now_ms = time.time() * 1000
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

    def stats(self) -> dict[str, Any]:
        status: dict[str, Any] = self.sink.status() if self.sink is not None else {}
        return {"clickhouse_visible_ms": list(self.visible_ms), "sink": status}
