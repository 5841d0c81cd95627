"""The worker's outputs: a batch's records handed to Kafka as record batches, then acked.

This is the one place that says how a batch ends (the checkpoint): the batch's
changelog and output records are appended to one Kafka record batch per
topic-partition and submitted with ``send_batch`` (``AIOKafkaProducer.send`` per
record costs more than the fold of the event), and only once Kafka has acknowledged
all of them is the input batch acknowledged to Faust, which then commits its
offsets. A crash in between re-delivers the batch, which the fold treats as
duplicates (and re-sends their outputs). Batches overlap: the next one is folded
while the previous one's records are in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata
from mode import Service

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
OutRecord = tuple[str, int | None, bytes | None, bytes | None, Headers]
"""(topic, partition or None for the key's, key, value, headers)."""
OnSent = Callable[[int, int], None]
"""Called with (partition, last offset) of an acknowledged record batch of a topic."""

MAX_BATCH_BYTES = 1 << 20


class OutputError(RuntimeError):
    """A batch's outputs could not be delivered: its input is not acknowledged."""


class Outputs(Service):
    """One Kafka producer for a worker's changelog and output records (started with the app)."""

    def __init__(self, bootstrap: str, *, client_id: str, max_in_flight: int = 4) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.max_in_flight = max_in_flight
        self.partitioner = DefaultPartitioner()
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._on_sent: dict[str, OnSent] = {}
        self._in_flight: list[tuple[asyncio.Future[Any], Callable[[], Any]]] = []
        self._acked = 0
        """How many batches at the head of ``_in_flight`` have been acknowledged."""
        self._round_robin = 0
        self.records_sent = 0
        self.batches_sent = 0

    async def on_start(self) -> None:
        await self.open()

    async def on_stop(self) -> None:
        await self.close()

    async def open(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                partitioner=self.partitioner,
                max_batch_size=MAX_BATCH_BYTES,
                max_request_size=MAX_BATCH_BYTES + 65536,
                linger_ms=0,
            )
            await producer.start()
            self._producer = producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await self.settle(0)
            finally:
                await producer.stop()

    def on_sent(self, topic: str, callback: OnSent) -> None:
        """Run ``callback`` for every acknowledged batch of ``topic`` (changelog offsets)."""
        self._on_sent[topic] = callback

    async def partitions(self, topic: str) -> list[int]:
        known = self._partitions.get(topic)
        if known is None:
            assert self._producer is not None
            known = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        return known

    async def send(self, records: list[OutRecord]) -> asyncio.Future[Any]:
        """Hand ``records`` to the client, in order per partition; resolves when all are stored."""
        await self.open()
        producer = self._producer
        assert producer is not None
        partitioner = self.partitioner
        by_key: dict[tuple[str, bytes], int] = {}
        batches: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[RecordMetadata]] = []
        for topic, partition, key, value, headers in records:
            if partition is None:
                if key is None:
                    all_partitions = await self.partitions(topic)
                    self._round_robin += 1
                    partition = all_partitions[self._round_robin % len(all_partitions)]
                else:
                    known = by_key.get((topic, key))
                    if known is None:
                        all_partitions = await self.partitions(topic)
                        known = by_key[(topic, key)] = partitioner(
                            key, all_partitions, all_partitions
                        )
                    partition = known
            tp = (topic, partition)
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                futures.append(await self._submit(producer, tp, batch))
                batch = batches[tp] = producer.create_batch()
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    raise OutputError(f"a record for {topic} is larger than one batch")
        for tp, batch in batches.items():
            if batch.record_count():
                futures.append(await self._submit(producer, tp, batch))
        done: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*futures))
        return done

    async def _submit(
        self, producer: AIOKafkaProducer, tp: tuple[str, int], batch: Any
    ) -> asyncio.Future[RecordMetadata]:
        topic, partition = tp
        count = batch.record_count()
        batch.close()
        future = await producer.send_batch(batch, topic, partition=partition)
        self.records_sent += count
        self.batches_sent += 1
        callback = self._on_sent.get(topic)
        if callback is not None:
            future.add_done_callback(lambda fut: _acknowledged(fut, callback, partition, count))
        return future

    def ack_when_stored(self, done: asyncio.Future[Any], ack: Callable[[], Any]) -> None:
        """Acknowledge the input (``ack``) once its outputs are stored, never before.

        Acknowledgements go out in submission order, whatever order Kafka confirms
        the batches in: Faust treats the offsets between two batch messages of a
        partition as committable once the later one is acknowledged, so an early
        acknowledgement of a later batch would commit an earlier one still in flight.
        """
        self._in_flight.append((done, ack))
        done.add_done_callback(self._release)

    def _release(self, _done: asyncio.Future[Any] | None = None) -> None:
        in_flight = self._in_flight
        while self._acked < len(in_flight):
            done, ack = in_flight[self._acked]
            if not done.done() or done.cancelled() or done.exception() is not None:
                return  # a failed batch holds back every later one: settle() raises
            ack()
            self._acked += 1

    async def settle(self, allowed: int | None = None) -> None:
        """Wait until at most ``allowed`` batches are in flight; raise if one failed."""
        limit = self.max_in_flight if allowed is None else allowed
        in_flight = self._in_flight
        while in_flight and (len(in_flight) > limit or in_flight[0][0].done()):
            done, _ack = in_flight[0]
            try:
                await done
            except Exception as exc:
                raise OutputError(f"outputs of a batch were not stored: {exc!r}") from exc
            self._release()  # its done-callback may not have run yet
            in_flight.pop(0)
            self._acked -= 1


def _acknowledged(
    future: asyncio.Future[RecordMetadata], callback: OnSent, partition: int, count: int
) -> None:
    if future.cancelled() or future.exception() is not None:
        return  # not stored: recovery reads the changelog from the last stored offset
    try:
        callback(partition, future.result().offset + count - 1)
    except Exception:
        log.exception("outputs: on_sent callback failed")
