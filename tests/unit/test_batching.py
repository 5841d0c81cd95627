"""The batching transport: one Faust message per fetched topic-partition batch."""

from __future__ import annotations

from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.batching import RecordBatch, batch_messages

TOPIC_PARTITION = TP("t.tracking.scans", 3)


def fetched(*offsets: int) -> list[ConsumerMessage]:
    return [
        ConsumerMessage(
            TOPIC_PARTITION.topic,
            TOPIC_PARTITION.partition,
            offset,
            1_700_000_000.5 + offset,
            0,
            [],
            b"P%d" % offset,
            b"v%d" % offset,
            None,
            tp=TOPIC_PARTITION,
            generation_id=7,
        )
        for offset in offsets
    ]


def test_a_batch_message_carries_its_records_and_the_last_offset():
    (message,) = batch_messages(TOPIC_PARTITION, fetched(10, 11, 12))
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


def test_a_batch_from_offset_one_sends_its_first_record_alone():
    # Faust skips its gap bookkeeping after a message at offset 0: offsets 1..n-1 of a
    # following batch would never become committable.
    first, rest = batch_messages(TOPIC_PARTITION, fetched(1, 2, 3))
    assert (first.offset, [r.offset for r in first.value.records]) == (1, [1])
    assert (rest.offset, [r.offset for r in rest.value.records]) == (3, [2, 3])
    (alone,) = batch_messages(TOPIC_PARTITION, fetched(0, 1, 2))
    assert alone.offset == 2
