"""The batching transport: one Faust message per fetched topic-partition batch."""

from __future__ import annotations

import pytest
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage

from streams.batching import SCHEME, BatchApp, BatchConsumer, RecordBatch, batch_message

TOPIC_PARTITION = TP("t.tracking.scans", 3)


def fetched(*offsets: int, tp: TP = TOPIC_PARTITION) -> list[ConsumerMessage]:
    return [
        ConsumerMessage(
            tp.topic,
            tp.partition,
            offset,
            1_700_000_000.5 + offset,
            0,
            [],
            b"P%d" % offset,
            b"v%d" % offset,
            None,
            tp=tp,
            generation_id=7,
        )
        for offset in offsets
    ]


def batch_consumer(*topics: str) -> tuple[BatchApp, BatchConsumer]:
    app = BatchApp("t-unit", broker=f"{SCHEME}://127.0.0.1:1")
    app.batch_topics = frozenset(topics or {TOPIC_PARTITION.topic})
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    return app, consumer


def test_a_batch_message_carries_its_records_and_the_last_offset():
    message = batch_message(TOPIC_PARTITION, fetched(10, 11, 12))
    batch = message.value
    assert isinstance(batch, RecordBatch)
    assert message.offset == batch.last_offset == 12
    assert message.tp == TOPIC_PARTITION and message.generation_id == 7
    assert [(r.key, r.value, r.offset) for r in batch.records] == [
        (b"P10", b"v10", 10),
        (b"P11", b"v11", 11),
        (b"P12", b"v12", 12),
    ]
    assert batch.records[0].timestamp_ms == 1_700_000_010_500


async def test_a_rebalance_during_a_fetch_drops_the_batch_and_survives_a_failed_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The seek back races the rebalance: aiokafka raises IllegalStateError for a
    # partition revoked under it. Raised out of getmany, that crashed Faust's fetcher
    # and the worker consumed nothing more while it stayed up.
    app, consumer = batch_consumer()

    async def fetch(self: object, timeout: float):  # the rebalance starts mid-fetch
        for message in fetched(5, 6):
            yield TOPIC_PARTITION, message
        app.consumer_generation_id += 1

    seeks: list[str] = []

    async def revoked_under_the_seek() -> None:
        seeks.append("seek")
        raise IllegalStateError(f"No current assignment for partition {TOPIC_PARTITION}")

    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", fetch)
    monkeypatch.setattr(consumer, "perform_seek", revoked_under_the_seek)
    delivered = [message async for _, message in consumer.getmany(timeout=0.1)]
    assert delivered == [] and seeks == ["seek"]


async def test_batches_are_delivered_when_no_rebalance_interrupts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, consumer = batch_consumer()

    async def fetch(self: object, timeout: float):
        for message in fetched(5, 6, 7):
            yield TOPIC_PARTITION, message

    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", fetch)
    delivered = [message async for _, message in consumer.getmany(timeout=0.1)]
    assert [m.offset for m in delivered] == [7]
    assert [r.offset for r in delivered[0].value.records] == [5, 6, 7]


async def test_a_rebalance_while_faust_takes_a_batch_stops_the_rest_of_the_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust's drain loop awaits between two batches (its callback waits on a full
    # stream buffer). A batch fetched before a rebalance and yielded after it would
    # move Faust's read offset past the committed offset it seeked back to.
    other = TP("t.tracking.handoffs", 3)
    app, consumer = batch_consumer(TOPIC_PARTITION.topic, other.topic)

    async def fetch(self: object, timeout: float):
        for message in fetched(5, 6):
            yield TOPIC_PARTITION, message
        for message in fetched(8, tp=other):
            yield other, message

    seeks: list[str] = []

    async def seek_back() -> None:
        seeks.append("seek")

    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", fetch)
    monkeypatch.setattr(consumer, "perform_seek", seek_back)
    delivered = []
    async for _, message in consumer.getmany(timeout=0.1):
        delivered.append(message)
        app.consumer_generation_id += 1  # the rebalance, while Faust took this batch
    assert [m.offset for m in delivered] == [6] and seeks == ["seek"]


class Broker:
    """The Kafka side of a consumer in commit tests: its committed offsets, the commits sent.

    ``refusals``: how many commits Kafka refuses first ("already rebalanced").
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        app: BatchApp,
        consumer: BatchConsumer,
        committed: dict[TP, int | None],
        refusals: int = 0,
    ) -> None:
        self.committed = dict(committed)
        self.commits: list[dict[TP, int]] = []
        self.refusals = refusals

        async def commit(offsets: dict[TP, int]) -> bool:
            self.commits.append(dict(offsets))
            if self.refusals:
                self.refusals -= 1
                return False
            self.committed.update(offsets)
            return True

        async def seek(tp: TP, offset: int) -> None:
            pass

        async def nothing_to_flush() -> None:
            pass

        async def seek_to_committed(_: object) -> dict[TP, int | None]:
            return dict(self.committed)

        monkeypatch.setattr(consumer, "assignment", lambda: set(committed))
        monkeypatch.setattr(consumer, "_commit", commit)
        monkeypatch.setattr(consumer, "_seek", seek)
        monkeypatch.setattr(app.producer, "flush", nothing_to_flush)
        monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
        monkeypatch.setattr(aiokafka_driver.Consumer, "seek_to_committed", seek_to_committed)


async def drained(consumer: BatchConsumer, message: Message, read: int) -> int:
    """What Faust's drain loop does on delivery (notes the gap since ``read``); the new read."""
    consumer.track_message(message)
    if message.offset - read > 1:
        await consumer._add_gap(message.tp, read + 1, message.offset)
    return message.offset


async def test_a_partition_read_again_from_0_is_committed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust 0.15.3 books a commit refused during a rebalance as done
    # (faust-streaming/faust#316). The broker still has no commit, so the partition is
    # read again from 0; with Faust's stale committed offset above the batch it read
    # again, Faust never committed the partition again (folded and stored, verify
    # behind). The seek reports the partition committed at 0, which resets Faust's.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: None}, refusals=1)

    def deliver(*offsets: int) -> None:
        message = batch_message(TOPIC_PARTITION, fetched(*offsets))
        consumer.track_message(message)
        consumer.ack(message)

    deliver(*range(2, 6))  # read from 0 while the flow resumed; the commit is refused
    await consumer.commit()
    await consumer.perform_seek()  # the rebalance seeks back: nothing committed
    deliver(*range(0, 10))  # read again from 0
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 6}, {TOPIC_PARTITION: 10}]


async def test_batches_acknowledged_between_two_commits_are_all_committed_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust's gap for a batch message ends at the message's own offset, which the
    # acknowledgement adds again; the duplicate split its run of offsets and each
    # commit moved the partition on one batch only (faust-streaming/faust#606).
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    await consumer.perform_seek()
    read = 100
    for first in range(100, 150, 5):  # ten batches of five, as Faust's drain loop sees them
        message = batch_message(TOPIC_PARTITION, fetched(*range(first, first + 5)))
        read = await drained(consumer, message, read)
        consumer.ack(message)
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 150}]


async def test_a_batch_the_stream_skipped_is_not_committed_after_the_seek_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust notes a batch's offsets as a gap when its drain loop delivers it; the stream
    # then skips the batch if a rebalance began. The gap noted before the seek back,
    # merged into the acknowledgement of a shorter batch read again, committed records
    # nobody had folded.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    read = [100]

    async def deliver(*offsets: int, processed: bool = True) -> None:
        message = batch_message(TOPIC_PARTITION, fetched(*offsets))
        read[0] = await drained(consumer, message, read[0])
        if processed:
            consumer.ack(message)

    await consumer.perform_seek()
    await deliver(*range(100, 105))
    await deliver(*range(105, 110), processed=False)  # skipped: a rebalance began
    await consumer.commit()
    await consumer.perform_seek()  # the rebalance seeks back to 105
    read[0] = 105
    await deliver(*range(105, 108))  # read again, in a shorter batch
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 105}, {TOPIC_PARTITION: 108}]


async def test_a_partition_without_a_commit_commits_only_from_where_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without a commit Faust accepted a run of acknowledged offsets starting anywhere:
    # a first batch the stream skipped, then a processed one, committed both.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: None})

    async def fetch(self: object, timeout: float):
        for message in fetched(*range(40, 50)):  # retention removed offsets below 40
            yield TOPIC_PARTITION, message

    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", fetch)
    await consumer.perform_seek()
    (skipped,) = [message async for _, message in consumer.getmany(timeout=0.1)]
    consumer.track_message(skipped)  # delivered, then skipped by the stream: never acked
    later = batch_message(TOPIC_PARTITION, fetched(*range(50, 60)))
    consumer.track_message(later)
    consumer.ack(later)
    await consumer.commit()
    assert broker.commits == []  # 40..49 are not done
    consumer.ack(skipped)  # read again after the rebalance's seek back, and folded
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 60}]
