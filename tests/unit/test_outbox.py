"""Outbox failure handling without a broker: a failed hand-over loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.outbox import Outbox


class FakeBatch:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, *, timestamp: Any, key: Any, value: bytes | None, headers: Any) -> object:
        self.values.append(value)
        return object()

    def record_count(self) -> int:
        return len(self.values)

    def close(self) -> None:
        pass


class FlakyProducer:
    """Refuses the first ``failures`` batches, then accepts."""

    client = None
    _partitioner = None

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, int, list[bytes | None]]] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker went away")
        self.sent.append((topic, partition, batch.values))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_a_failed_drain_requeues_everything_in_order() -> None:
    producer = FlakyProducer(failures=1)
    outbox = Outbox(lambda: producer)  # type: ignore[arg-type, return-value]
    for i in range(3):
        outbox.add("t", b"k", str(i).encode(), partition=0)
    with pytest.raises(ConnectionError):
        await outbox.drain()
    assert len(outbox) == 3
    outbox.add("t", b"k", b"3", partition=0)
    await outbox.drain()
    assert len(outbox) == 0
    assert producer.sent == [("t", 0, [b"0", b"1", b"2", b"3"])]


async def test_linger_task_retries_after_a_failure() -> None:
    producer = FlakyProducer(failures=1)
    outbox = Outbox(lambda: producer, linger_s=0.001)  # type: ignore[arg-type, return-value]
    outbox.add("t", None, b"x", partition=1)
    task = asyncio.create_task(outbox.run_linger())
    try:
        async with asyncio.timeout(10):
            while not producer.sent:
                await asyncio.sleep(0.01)  # poll interval, not a synchronisation
    finally:
        task.cancel()
    assert producer.sent == [("t", 1, [b"x"])]
