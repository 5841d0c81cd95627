"""The worker's outputs, handed to the Kafka client as record batches.

``AIOKafkaProducer.send`` costs more per record than the fold costs per event (a
coroutine, a metadata check, a pure-Python murmur2 and a future per record), and a
step emits several records. Here records are appended to one batch builder per
topic-partition and submitted with ``send_batch``: when many are waiting, after a
short linger, and before every Faust offset commit.

The last point is what keeps at-least-once: Faust flushes its producer before it
commits input offsets, and ``install`` makes that flush drain this outbox first, so
no input offset is committed before the records its events produced are in the
client (which the same flush then waits for).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
OnSent = Callable[[RecordMetadata, int], None]
"""Called with the batch's metadata and the number of records in it, once acknowledged."""


class Outbox:
    """Ordered per partition; records of one step go out in the order they were added."""

    def __init__(
        self,
        producer: Callable[[], AIOKafkaProducer],
        *,
        max_pending: int = 2000,
        linger_s: float = 0.005,
    ) -> None:
        self._producer = producer
        self.max_pending = max_pending
        self.linger_s = linger_s
        self._pending: list[tuple[str, bytes | None, bytes | None, Headers, int | None]] = []
        self._on_sent: dict[str, OnSent] = {}
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._round_robin = 0
        self.records_sent = 0
        self.batches_sent = 0

    def __len__(self) -> int:
        return len(self._pending)

    def on_sent(self, topic: str, callback: OnSent) -> None:
        """Run ``callback`` for every acknowledged batch of ``topic`` (changelog offsets)."""
        self._on_sent[topic] = callback

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record; the partition defaults to the producer's (murmur2 of the key)."""
        self._pending.append((topic, key, value, headers or [], partition))
        self._wakeup.set()

    async def drain(self) -> None:
        """Submit everything queued so far to the Kafka client (not: wait for delivery).

        Shielded: a caller cancelled at shutdown must not drop records it had already
        taken from the queue, or the commit that follows would skip them.
        """
        await asyncio.shield(self._drain())

    async def _drain(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, []
            self._wakeup.clear()
            if pending:
                try:
                    await self._submit(pending)
                except BaseException:
                    # Re-queue all of it: records already submitted go out twice, which
                    # at-least-once allows; dropping the rest would let a commit skip them.
                    self._pending[:0] = pending
                    self._wakeup.set()
                    raise

    async def flush_with(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Drain, then run the client's own flush (which waits for delivery)."""
        await self.drain()
        await flush()

    async def run_linger(self) -> None:
        """Background task: nothing waits longer than ``linger_s`` for a bigger batch."""
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self.linger_s)
            try:
                await self.drain()
            except Exception:
                log.exception("outbox: handing records to Kafka failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def maybe_drain(self) -> None:
        if len(self._pending) >= self.max_pending:
            await self.drain()

    async def _submit(
        self, pending: list[tuple[str, bytes | None, bytes | None, Headers, int | None]]
    ) -> None:
        producer = self._producer()
        partitioner = producer._partitioner
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        by_key: dict[tuple[int, bytes], int] = {}
        batches: dict[tuple[str, int], Any] = {}
        order: list[tuple[str, int]] = []
        for topic, key, value, headers, partition in pending:
            if partition is None:
                known = partitions.get(topic)
                if known is None:
                    await producer.client._wait_on_metadata(topic)
                    cluster = producer.client.cluster
                    known = partitions[topic] = (
                        sorted(cluster.partitions_for_topic(topic) or ()),
                        sorted(cluster.available_partitions_for_topic(topic) or ()),
                    )
                all_partitions, available = known
                if key is None:
                    self._round_robin += 1
                    partition = (available or all_partitions)[
                        self._round_robin % len(available or all_partitions)
                    ]
                else:
                    cache_key = (len(all_partitions), key)
                    partition = by_key.get(cache_key)
                    if partition is None:
                        partition = by_key[cache_key] = partitioner(key, all_partitions, available)
            tp = (topic, partition)
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = producer.create_batch()
                order.append(tp)
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                await self._send(producer, tp, batch)
                batch = batches[tp] = producer.create_batch()
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    raise ValueError(f"record too large for one batch on {topic}")
        for tp in order:
            await self._send(producer, tp, batches[tp])

    async def _send(self, producer: AIOKafkaProducer, tp: tuple[str, int], batch: Any) -> None:
        topic, partition = tp
        count = batch.record_count()
        if not count:
            return
        batch.close()
        future = await producer.send_batch(batch, topic, partition=partition)
        self.records_sent += count
        self.batches_sent += 1
        callback = self._on_sent.get(topic)
        if callback is not None:
            future.add_done_callback(lambda fut: _acknowledged(fut, callback, count))


def _acknowledged(future: asyncio.Future[RecordMetadata], callback: OnSent, count: int) -> None:
    if future.cancelled() or future.exception() is not None:
        return  # not stored: recovery reads the changelog from the last stored offset
    try:
        callback(future.result(), count)
    except Exception:
        log.exception("outbox: on_sent callback failed")
