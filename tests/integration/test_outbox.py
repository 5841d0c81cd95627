"""The worker's outbox against a real broker: partitions, order, offsets, flush-before-commit."""

from __future__ import annotations

from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from streams.kafka_io import ensure_topics
from streams.outbox import Outbox
from tests.harness import read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4


async def test_outbox_keeps_key_partitioning_order_and_reports_offsets(
    kafka_bootstrap: str, unique_name
) -> None:
    topic = unique_name("outbox")
    await ensure_topics(kafka_bootstrap, [topic], PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=4096)
    await producer.start()
    acknowledged: dict[int, int] = {}

    def on_sent(metadata: RecordMetadata, count: int) -> None:
        last = metadata.offset + count - 1
        acknowledged[metadata.partition] = max(acknowledged.get(metadata.partition, -1), last)

    # A small max_pending drains mid-way; 4 KiB batches force several batches per partition.
    outbox = Outbox(lambda: producer, max_pending=500)
    outbox.on_sent(topic, on_sent)
    sent = 0
    try:
        for i in range(1200):
            key = f"P{i % 50:04d}".encode()
            outbox.add(topic, key, f"{i}".encode() * 10, [("n", str(i).encode())])
            sent += 1
            await outbox.maybe_drain()
        outbox.add(topic, None, b"keyless")
        outbox.add(topic, b"pinned", b"to-partition-2", partition=2)
        sent += 2
        await outbox.flush_with(producer.flush)
        assert len(outbox) == 0
        assert outbox.records_sent == sent
        assert outbox.batches_sent > 2 * PARTITIONS
    finally:
        await producer.stop()

    records = await read_topic(
        kafka_bootstrap, topic, done=lambda recs: len(recs) >= sent, timeout=60
    )
    assert len(records) == sent
    partitioner = DefaultPartitioner()
    all_partitions = list(range(PARTITIONS))
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for rec in records:
        if rec.key is None or rec.key == b"pinned":
            continue
        # Same partition the producer's own send() would have chosen.
        assert rec.partition == partitioner(rec.key, all_partitions, all_partitions)
        by_key[rec.key].append(int(dict(rec.headers)["n"]))
    assert all(seq == sorted(seq) and len(seq) == 24 for seq in by_key.values())
    (pinned,) = [r for r in records if r.key == b"pinned"]
    assert pinned.partition == 2
    last_offsets = defaultdict(lambda: -1)
    for rec in records:
        last_offsets[rec.partition] = max(last_offsets[rec.partition], rec.offset)
    assert acknowledged == dict(last_offsets)


async def test_flush_drains_the_outbox_before_the_client_flush(
    kafka_bootstrap: str, unique_name
) -> None:
    topic = unique_name("outbox-flush")
    await ensure_topics(kafka_bootstrap, [topic], PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    outbox = Outbox(lambda: producer, linger_s=3600)  # only a flush sends anything
    seen_at_flush: list[int] = []

    async def client_flush() -> None:
        seen_at_flush.append(len(outbox))
        await producer.flush()

    try:
        for i in range(10):
            outbox.add(topic, b"k", str(i).encode())
        assert len(outbox) == 10
        await outbox.flush_with(client_flush)
    finally:
        await producer.stop()
    assert seen_at_flush == [0]
    records = await read_topic(
        kafka_bootstrap, topic, done=lambda recs: len(recs) >= 10, timeout=30
    )
    assert [r.value for r in records] == [str(i).encode() for i in range(10)]
