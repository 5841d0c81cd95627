"""The worker's outputs: a batch's records handed to Kafka as record batches, then acked.

This is the one place that says how a batch ends (the checkpoint): the batch's
changelog and output records are appended to Kafka record batches, one open batch
per output topic-partition, and only once Kafka has acknowledged every record of an
input batch is that batch acknowledged to Faust, which then commits its offsets. A
crash in between re-delivers the batch, which the fold treats as duplicates (and
re-sends their outputs).

Why one *open* batch per topic-partition, filled by as many input batches as arrive
meanwhile: aiokafka holds at most one undrained batch per topic-partition
(``send_batch`` waits until the previous one has gone into a request) and one
request in flight per broker. Submitting one record batch per input batch made the
agent wait a produce round trip for almost every small input batch: at 1,000 events/s
(many partitions with two or three records each) the worker fell seconds behind while
half its CPU was idle. Here the agent never waits for the producer: a lane per
topic-partition hands its open batch over as soon as the producer can take one, and
records that arrive meanwhile fill the next. That is the "linger" Kafka clients have,
set by the round trip instead of a clock: low load sends at once, high load sends
fuller batches.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from mode import Service

from streams.kafka_io import key_partition, security_options
from streams.settings import Settings

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
OutRecord = tuple[str, int | None, bytes | None, bytes | None, Headers]
"""(topic, partition or None for the key's, key, value, headers)."""
OnSent = Callable[[int, int], None]
"""Called with (partition, last offset) of an acknowledged record batch of a topic."""

MAX_BATCH_BYTES = 1 << 20
DEFAULT_RECORDS_IN_FLIGHT = 50_000


class OutputError(RuntimeError):
    """A batch's outputs could not be delivered: its input is not acknowledged."""


class _Lane:
    """One output topic-partition: record batches not yet taken by the producer, in order.

    The last queued batch is the open one: records are appended to it until the lane's
    drain task hands it to the producer. Each batch has a future of its own that
    resolves once Kafka stored it.
    """

    __slots__ = ("partition", "queue", "task", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.queue: collections.deque[tuple[Any, asyncio.Future[Any]]] = collections.deque()
        self.task: asyncio.Future[None] | None = None
        """The drain task while one runs."""


class Outputs(Service):
    """One Kafka producer for a worker's changelog and output records (started with the app)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        max_in_flight: int = DEFAULT_RECORDS_IN_FLIGHT,
        settings: Settings | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.max_in_flight = max_in_flight
        """Output records handed over and not yet stored, at most (``settle`` waits)."""
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._on_sent: dict[str, OnSent] = {}
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._in_flight: collections.deque[tuple[asyncio.Future[Any], Callable[[], Any], int]] = (
            collections.deque()
        )
        self._in_flight_size = 0
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
                max_batch_size=MAX_BATCH_BYTES,
                max_request_size=MAX_BATCH_BYTES + 65536,
                linger_ms=0,
                **security_options(self.settings),
            )
            await producer.start()
            self._producer = producer

    async def close(self) -> None:
        producer = self._producer
        if producer is not None:
            try:
                await self.settle(0)  # the lanes drain into the producer meanwhile
            finally:
                self._producer = None
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
        """Hand ``records`` to their lanes, in order per partition; resolves when all are stored.

        Waits only to learn a topic's partitions (once per topic), never for Kafka.
        """
        await self.open()
        producer = self._producer
        assert producer is not None
        lanes = self._lanes
        new_future = asyncio.get_running_loop().create_future
        touched: dict[int, asyncio.Future[Any]] = {}
        for topic, partition, key, value, headers in records:
            if partition is None:
                if key is None:
                    all_partitions = await self.partitions(topic)
                    self._round_robin += 1
                    partition = all_partitions[self._round_robin % len(all_partitions)]
                else:
                    all_partitions = self._partitions.get(topic) or await self.partitions(topic)
                    partition = all_partitions[key_partition(key, len(all_partitions))]
            lane = lanes.get((topic, partition))
            if lane is None:
                lane = lanes[(topic, partition)] = _Lane(topic, partition)
            queue = lane.queue
            if not queue:
                queue.append((producer.create_batch(), new_future()))
            builder, stored = queue[-1]
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                builder, stored = producer.create_batch(), new_future()
                queue.append((builder, stored))
                if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    raise OutputError(f"a record for {topic} is larger than one batch")
            touched[id(stored)] = stored
            if lane.task is None:
                lane.task = asyncio.ensure_future(self._drain(lane))
        return asyncio.ensure_future(asyncio.gather(*touched.values()))

    async def _drain(self, lane: _Lane) -> None:
        """Hand the lane's batches over one at a time, each once the one before is stored.

        Records that arrive while a batch is in flight fill the next one, so a busy
        partition sends one full batch per round trip instead of one per input batch.
        """
        queue = lane.queue
        stored: asyncio.Future[Any] | None = None
        try:
            while queue:
                producer = self._producer
                if producer is None:
                    raise OutputError("the outputs producer is closed")
                builder, stored = queue.popleft()  # closed to appends from here on
                count = builder.record_count()
                builder.close()
                sent = await producer.send_batch(builder, lane.topic, partition=lane.partition)
                self.records_sent += count
                self.batches_sent += 1
                sent.add_done_callback(self._stored_callback(lane, count, stored))
                await asyncio.wait([sent])
                if sent.cancelled() or sent.exception() is not None:
                    raise OutputError(f"a record batch for {lane.topic} was not stored")
                stored = None
        except Exception as exc:
            failed = [stored] if stored is not None else []
            failed += [future for _, future in queue]
            queue.clear()
            for future in failed:
                if not future.done():
                    future.set_exception(exc)
        finally:
            lane.task = None

    def _stored_callback(
        self, lane: _Lane, count: int, stored: asyncio.Future[Any]
    ) -> Callable[[asyncio.Future[RecordMetadata]], None]:
        callback = self._on_sent.get(lane.topic)
        partition = lane.partition

        def done(sent: asyncio.Future[RecordMetadata]) -> None:
            if stored.done():
                return
            if sent.cancelled():
                stored.set_exception(OutputError("the record batch send was cancelled"))
                return
            error = sent.exception()
            if error is not None:
                stored.set_exception(error)
                return
            stored.set_result(None)
            if callback is not None:
                _acknowledged(sent, callback, partition, count)

        return done

    def ack_when_stored(
        self, done: asyncio.Future[Any], ack: Callable[[], Any], size: int = 1
    ) -> None:
        """Acknowledge the input (``ack``) once its outputs are stored, never before.

        Acknowledgements go out in submission order, whatever order Kafka confirms
        the batches in: the consumer commits a partition's unbroken run of folded batches
        (`streams.batching.BatchConsumer.folded`), and a later batch reported before an
        earlier one is stored would look like a gap and have the partition read again.
        ``size`` (the batch's output records) counts against ``max_in_flight``.
        """
        self._in_flight.append((done, ack, size))
        self._in_flight_size += size
        done.add_done_callback(self._release)

    def _release(self, _done: asyncio.Future[Any] | None = None) -> None:
        in_flight = self._in_flight
        while self._acked < len(in_flight):
            done, ack, _size = in_flight[self._acked]
            if not done.done() or done.cancelled() or done.exception() is not None:
                return  # a failed batch holds back every later one: settle() raises
            ack()
            self._acked += 1

    async def settle(self, allowed: int | None = None) -> None:
        """Wait until at most ``allowed`` records are in flight; raise if a batch failed."""
        limit = self.max_in_flight if allowed is None else allowed
        in_flight = self._in_flight
        while in_flight and (self._in_flight_size > limit or in_flight[0][0].done()):
            done, _ack, size = in_flight[0]
            try:
                await done
            except Exception as exc:
                raise OutputError(f"outputs of a batch were not stored: {exc!r}") from exc
            self._release()  # its done-callback may not have run yet
            in_flight.popleft()
            self._in_flight_size -= size
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
