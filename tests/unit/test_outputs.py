"""Outputs: a batch is acknowledged only once it and every batch before it are stored."""

from __future__ import annotations

import asyncio

import pytest

from streams.outputs import OutputError, Outputs


async def test_acks_follow_submission_order_whatever_order_kafka_confirms_in():
    outputs = Outputs("127.0.0.1:1", client_id="test")
    loop = asyncio.get_running_loop()
    first, second, third = (loop.create_future() for _ in range(3))
    acked: list[str] = []
    outputs.ack_when_stored(first, lambda: acked.append("first"))
    outputs.ack_when_stored(second, lambda: acked.append("second"))
    outputs.ack_when_stored(third, lambda: acked.append("third"))
    second.set_result(None)
    await asyncio.sleep(0)  # let done-callbacks run
    assert acked == []  # the second is stored, but the first is still in flight
    first.set_result(None)
    await asyncio.sleep(0)
    assert acked == ["first", "second"]
    third.set_result(None)
    await outputs.settle(0)
    assert acked == ["first", "second", "third"]


async def test_a_failed_batch_is_never_acked_and_holds_back_the_rest():
    outputs = Outputs("127.0.0.1:1", client_id="test")
    loop = asyncio.get_running_loop()
    failed, later = loop.create_future(), loop.create_future()
    acked: list[str] = []
    outputs.ack_when_stored(failed, lambda: acked.append("failed"))
    outputs.ack_when_stored(later, lambda: acked.append("later"))
    later.set_result(None)
    failed.set_exception(RuntimeError("broker gone"))
    with pytest.raises(OutputError, match="broker gone"):
        await outputs.settle(0)
    assert acked == []


async def test_settle_waits_only_beyond_the_in_flight_limit():
    outputs = Outputs("127.0.0.1:1", client_id="test", max_in_flight=1)
    loop = asyncio.get_running_loop()
    pending = loop.create_future()
    outputs.ack_when_stored(pending, lambda: None)
    await asyncio.wait_for(outputs.settle(), timeout=1)  # one in flight is allowed
    second = loop.create_future()
    outputs.ack_when_stored(second, lambda: None)
    waiter = asyncio.ensure_future(outputs.settle())
    await asyncio.sleep(0)
    assert not waiter.done()
    pending.set_result(None)
    await asyncio.wait_for(waiter, timeout=1)


def test_key_partition_is_kafkas_default_partitioner():
    from aiokafka.partitioner import DefaultPartitioner

    from streams.kafka_io import key_partition

    partitions = list(range(8))
    for n in range(500):
        key = f"CN{n:08d}".encode()
        assert key_partition(key, 8) == DefaultPartitioner()(key, partitions, partitions)


class _Builder:
    def __init__(self, capacity: int) -> None:
        self.records: list[bytes | None] = []
        self.capacity = capacity

    def append(self, *, timestamp, key, value, headers):
        if len(self.records) >= self.capacity:
            return None
        self.records.append(value)
        return object()

    def record_count(self) -> int:
        return len(self.records)

    def close(self) -> None:
        pass


class _Producer:
    """Takes one batch per partition at a time, as aiokafka does, when the test says so."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.taken: list[tuple[str, int, list[bytes | None]]] = []
        self.may_take = asyncio.Event()
        self.stored: list[asyncio.Future] = []

    def create_batch(self) -> _Builder:
        return _Builder(self.capacity)

    async def send_batch(self, builder: _Builder, topic: str, partition: int) -> asyncio.Future:
        await self.may_take.wait()
        self.may_take.clear()
        self.taken.append((topic, partition, builder.records))
        future = asyncio.get_running_loop().create_future()
        self.stored.append(future)
        return future


def _outputs(producer: _Producer) -> Outputs:
    outputs = Outputs("127.0.0.1:1", client_id="test")
    outputs._producer = producer  # type: ignore[assignment]  # the test's stand-in
    return outputs


async def test_send_never_waits_for_kafka_and_batches_arriving_meanwhile_share_a_record_batch():
    producer = _Producer()
    producer.may_take.set()
    outputs = _outputs(producer)
    first = await asyncio.wait_for(outputs.send([("out", 0, b"k", b"a", [])]), 1)
    await asyncio.sleep(0)  # the lane hands the first batch over at once
    assert producer.taken == [("out", 0, [b"a"])]
    # While it is in flight, two more input batches go to the lane without waiting.
    second = await asyncio.wait_for(outputs.send([("out", 0, b"k", b"b", [])]), 1)
    third = await asyncio.wait_for(outputs.send([("out", 0, b"k", b"c", [])]), 1)
    producer.may_take.set()
    await asyncio.sleep(0)
    assert len(producer.taken) == 1  # the next one waits until the first is stored
    producer.stored[0].set_result(_Meta(4))
    await asyncio.wait_for(first, 1)
    for _ in range(3):
        await asyncio.sleep(0)
    assert producer.taken[1] == ("out", 0, [b"b", b"c"])  # one record batch for both
    assert not second.done() and not third.done()
    producer.stored[1].set_result(_Meta(5))
    await asyncio.wait_for(asyncio.gather(second, third), 1)


async def test_a_batch_the_producer_refuses_fails_every_batch_queued_behind_it():
    producer = _Producer(capacity=1)
    outputs = _outputs(producer)

    async def refuse(*_args, **_kwargs):
        raise RuntimeError("producer closed")

    producer.send_batch = refuse  # type: ignore[method-assign]
    done = await outputs.send([("out", 0, b"k", b"a", []), ("out", 0, b"k", b"b", [])])
    outputs.ack_when_stored(done, lambda: pytest.fail("acked a batch that was not stored"), 2)
    with pytest.raises(OutputError, match="producer closed"):
        await asyncio.wait_for(outputs.settle(0), 1)


class _Meta:
    def __init__(self, offset: int) -> None:
        self.offset = offset
