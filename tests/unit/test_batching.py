"""The batching transport: one Faust message per fetched topic-partition batch."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiokafka.errors import IllegalStateError
from faust.events import Event
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
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

    ``refusals``: how many commits Kafka refuses first ("already rebalanced"); ``start``:
    each partition's first offset (retention may have removed the ones below it).
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        app: BatchApp,
        consumer: BatchConsumer,
        committed: dict[TP, int | None],
        refusals: int = 0,
        start: int = 0,
    ) -> None:
        self.committed = dict(committed)
        self.commits: list[dict[TP, int]] = []
        self.seeks: list[tuple[TP, int]] = []
        self.refusals = refusals

        async def commit(_: object, offsets: dict[TP, int]) -> bool:
            self.commits.append(dict(offsets))
            if self.refusals:
                self.refusals -= 1
                return False
            self.committed.update(offsets)
            return True

        async def seek(tp: TP, offset: int) -> None:
            self.seeks.append((tp, offset))

        async def nothing_to_flush() -> None:
            pass

        async def seek_to_committed(_: object) -> dict[TP, int | None]:
            return dict(self.committed)

        self.starts_unknown = 0
        """How many earliest-offsets answers leave every partition out first."""

        async def earliest_offsets(*partitions: TP) -> dict[TP, int]:
            if self.starts_unknown:
                self.starts_unknown -= 1
                return {}
            return {tp: start for tp in partitions}

        monkeypatch.setattr(consumer, "assignment", lambda: set(committed))
        monkeypatch.setattr(aiokafka_driver.Consumer, "_commit", commit)
        monkeypatch.setattr(consumer, "_seek", seek)
        monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
        monkeypatch.setattr(app.producer, "flush", nothing_to_flush)
        monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
        monkeypatch.setattr(aiokafka_driver.Consumer, "seek_to_committed", seek_to_committed)


class Delivery:
    """Batches as Faust delivers them: the drain loop's gap note, then folded or skipped."""

    def __init__(self, app: BatchApp, consumer: BatchConsumer, read: int = -1) -> None:
        self.app, self.consumer, self.read = app, consumer, read

    async def __call__(self, *offsets: int, folded: bool = True) -> None:
        consumer = self.consumer
        message = batch_message(
            TOPIC_PARTITION, fetched(*offsets), consumer._seeks.get(TOPIC_PARTITION, 0)
        )
        consumer.track_message(message)
        if self.read >= 0 and message.offset - self.read > 1:
            await consumer._add_gap(message.tp, self.read + 1, message.offset)
        self.read = message.offset
        event = Event(self.app, None, message.value, {}, message)
        if folded:
            consumer.folded(event)
        else:  # Faust's stream acknowledges a batch it skips while a rebalance runs
            event.ack()

    async def seek(self) -> None:
        await self.consumer.perform_seek()
        self.read = -1


async def test_batches_folded_between_two_commits_are_all_committed_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust's gap for a batch message ends at the message's own offset, which the
    # acknowledgement adds again; the duplicate split its run of offsets and each
    # commit moved the partition on one batch only (faust-streaming/faust#606).
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    deliver = Delivery(app, consumer)
    await deliver.seek()
    for first in range(100, 150, 5):  # ten batches of five
        await deliver(*range(first, first + 5))
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 150}]


async def test_a_batch_the_stream_skipped_is_never_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust's stream acknowledges a batch it skips (a rebalance began); counted as
    # done, a skipped batch merged into the next folded one committed records nobody
    # had folded.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(100, 105))
    await deliver(*range(105, 110), folded=False)
    await consumer.commit()
    await deliver.seek()  # the rebalance seeks back to 105
    await deliver(*range(105, 108))  # read again, in a shorter batch
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 105}, {TOPIC_PARTITION: 108}]


async def test_a_batch_missing_before_a_folded_one_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Should a batch delivered since the last seek go unfolded while a later one is
    # folded, the partition would never commit again: it is read again from the gap.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(100, 105))
    await deliver(*range(105, 110), folded=False)
    await deliver(*range(110, 115))
    await deliver(*range(115, 120))  # one seek for the gap, not one per later batch
    await consumer.commit()
    for task in list(consumer._futures):
        await task
    assert broker.seeks[-1:] == [(TOPIC_PARTITION, 105)]
    assert sum(1 for s in broker.seeks if s == (TOPIC_PARTITION, 105)) == 1
    assert broker.commits == [{TOPIC_PARTITION: 105}]
    deliver.read = 104
    await deliver(*range(105, 120))  # read again from 105
    await consumer.commit()
    assert broker.commits[-1] == {TOPIC_PARTITION: 120}


async def test_a_partition_that_moves_away_and_back_commits_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The join/leave fault: a batch skipped (and acknowledged) just after its partition
    # was revoked, then the partition back from the other worker, which committed 20.
    # The run starts at 20 and takes only what is folded from there.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 10})
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await consumer.on_partitions_revoked({TOPIC_PARTITION})
    await deliver(*range(10, 27), folded=False)  # in the stream's buffer: skipped
    broker.committed[TOPIC_PARTITION] = 20  # the other worker folded 10..19
    await deliver.seek()  # assigned back
    await deliver(*range(20, 27))
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 27}]


async def test_a_batch_folded_after_a_seek_counts_when_it_joins_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Delivered before a seek back and folded after it: its outputs are stored, so it
    # extends the run it joins; one beyond the run is not committed, and is no gap
    # to read again (the seek reads it again anyway).
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    await consumer.perform_seek()
    early = [
        batch_message(TOPIC_PARTITION, fetched(*r), 1) for r in (range(100, 105), range(110, 115))
    ]
    await consumer.perform_seek()  # a seek back while they were in the stream's buffer
    for message in early:
        consumer.track_message(message)
        consumer.folded(Event(app, None, message.value, {}, message))
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 105}] and broker.seeks == []


async def test_a_partition_read_again_from_its_start_is_committed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust 0.15.3 books a commit refused during a rebalance as done
    # (faust-streaming/faust#316). The broker still has no commit, so the partition is
    # read again from its start; with Faust's stale committed offset above the batch
    # read again, Faust never committed the partition again (folded and stored, verify
    # behind). The seek reports the partition committed at 0, which resets Faust's.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: None}, refusals=1)
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(0, 6))
    await consumer.commit()  # refused: a rebalance began
    await deliver.seek()
    await deliver(*range(0, 10))  # read again from 0
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 6}, {TOPIC_PARTITION: 10}]


async def test_a_partition_without_a_commit_commits_only_from_its_first_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without a commit Faust accepted a run of acknowledged offsets starting anywhere:
    # a first batch the stream skipped, then a folded one, committed both.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: None}, start=40)
    deliver = Delivery(app, consumer)
    await deliver.seek()
    assert broker.seeks == [(TOPIC_PARTITION, 0)]  # read from its start
    await deliver(*range(40, 50), folded=False)  # retention removed offsets below 40
    await deliver(*range(50, 60))
    await consumer.commit()
    assert [c[TOPIC_PARTITION] for c in broker.commits] in ([], [40])  # 40..49 not folded
    await deliver.seek()
    await deliver(*range(40, 60))
    await consumer.commit()
    assert broker.commits[-1] == {TOPIC_PARTITION: 60}


async def test_a_batch_fetched_before_a_seek_is_marked_as_read_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Yielded after a seek, records fetched before it are stale: folded, they may
    # extend the run they join, but a gap before them is no reason to read again.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    await consumer.perform_seek()

    async def fetch(self: object, timeout: float):
        for message in fetched(110, 111):
            yield TOPIC_PARTITION, message
        await consumer.perform_seek()  # the recovery's seek, while Faust took them

    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", fetch)
    (stale,) = [message async for _, message in consumer.getmany(timeout=0.1)]
    consumer.track_message(stale)
    consumer.folded(Event(app, None, stale.value, {}, stale))
    await consumer.commit()
    for task in list(consumer._futures):  # a seek to read again would be one of these
        await task
    assert broker.seeks == [] and broker.commits == []


async def test_a_batch_folded_while_the_seek_runs_stays_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The recovery seeks while batches still arrive: one folded meanwhile is below the
    # committed offset the seek read only because its commit had not landed yet.
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(100, 105))
    await deliver.seek()  # read committed 100: the fold of 100..104 is not committed yet
    deliver.read = 104
    await deliver(*range(105, 110))
    await consumer.commit()
    for task in list(consumer._futures):
        await task
    assert broker.seeks == [] and broker.commits == [{TOPIC_PARTITION: 110}]


async def test_a_seek_runs_on_the_consumer_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Faust seeks straight from the app's thread while the consumer thread iterates the
    # fetcher's buffered records, which the seek deletes (robinhood/aiokafka#19): a
    # KeyError crashed the fetcher and the worker.
    _, consumer = batch_consumer()
    calls: list[str] = []

    class ConsumerThread:
        def seek(self, tp: TP, offset: int) -> None:
            calls.append(f"seek {tp.partition}@{offset} in {threading.current_thread().name}")

        async def call_thread(self, fun, *args):
            calls.append("enqueued")
            result: list = []
            worker = threading.Thread(
                target=lambda: result.append(asyncio.run(fun(*args))), name="consumer-thread"
            )
            worker.start()
            worker.join()
            return result[0]

    monkeypatch.setattr(consumer, "_thread", ConsumerThread())
    await consumer.seek(TOPIC_PARTITION, 42)
    assert calls == ["enqueued", "seek 3@42 in consumer-thread"]


async def test_a_refused_commit_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Faust books a refused commit as done (faust-streaming/faust#316): the last batch of
    # a quiet partition, refused once after the final seek of a takeover, was never
    # committed again (folded and stored; verify behind for good).
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100}, refusals=1)
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(100, 101))  # the partition's last record
    await consumer.commit()  # refused
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 101}, {TOPIC_PARTITION: 101}]
    assert broker.committed[TOPIC_PARTITION] == 101
    await consumer.commit()  # confirmed: nothing more to send
    assert len(broker.commits) == 2


async def test_a_partition_whose_first_offset_is_unknown_at_the_seek_commits_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker's answer left the partitions without a commit out: they had no run and
    # stayed uncommitted (a restart run: 34 partitions behind, the 6 with a commit done).
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: None})
    broker.starts_unknown = 2
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(0, 5))  # folded before the first offset is known
    await consumer.commit()
    assert all(c[TOPIC_PARTITION] == 0 for c in broker.commits)
    for task in list(consumer._futures):  # asking again (twice), then the run starts at 0
        await task
    await consumer.commit()
    assert broker.commits[-1] == {TOPIC_PARTITION: 5}
    assert broker.seeks == [(TOPIC_PARTITION, 0), (TOPIC_PARTITION, 5)]  # the seek, then on


async def test_a_batch_skipped_before_the_first_offset_is_known_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Delivered and skipped (a rebalance) while the partition had no run: without a
    # read from the run's start a quiet partition would never come again. (The old code
    # read again from the start; reading again was dropped for one commit, and a takeover
    # run then ended with scans[7] never committed, cause not traced.)
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: None})
    broker.starts_unknown = 1
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(0, 5), folded=False)
    for task in list(consumer._futures):
        await task
    assert broker.seeks == [(TOPIC_PARTITION, 0), (TOPIC_PARTITION, 0)]  # the seek, the read
    deliver.read = -1
    await deliver(*range(0, 5))
    await consumer.commit()
    assert broker.commits[-1] == {TOPIC_PARTITION: 5}


async def test_a_batch_folded_before_the_seek_sets_the_run_is_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust resumes a restarted worker's partitions before it seeks them, and aiokafka's
    # seek asks for each partition's commit in turn: a quiet partition's records, fetched
    # from the commit aiokafka had already set, were folded before the seek had started
    # its run. Not counted, they were never committed (a restart left 29 of 40 partitions
    # at the first worker's commits, verify behind, /health stalled).
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 66})
    message = batch_message(TOPIC_PARTITION, fetched(*range(66, 303)), 0)
    consumer.track_message(message)
    consumer.folded(Event(app, None, message.value, {}, message))  # no run yet
    await consumer.perform_seek()
    await consumer.commit()
    for task in list(consumer._futures):
        await task
    assert broker.commits == [{TOPIC_PARTITION: 303}] and broker.seeks == []


async def test_a_batch_folded_beyond_a_gap_counts_once_the_gap_is_folded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: 100})
    deliver = Delivery(app, consumer)
    await deliver.seek()
    await deliver(*range(110, 120))  # its gap is read again ...
    await deliver(*range(130, 140))
    await consumer.commit()
    assert broker.commits == []
    deliver.read = 99
    await deliver(*range(100, 110))  # ... and folded: the run takes 110..119 with it
    await consumer.commit()
    assert broker.commits == [{TOPIC_PARTITION: 120}]
    deliver.read = 119
    await deliver(*range(120, 135))
    await consumer.commit()
    assert broker.commits[-1] == {TOPIC_PARTITION: 140}


async def test_batches_dropped_as_the_flow_resumes_are_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust's recovery resumes the partitions, seeks them, then resumes its flow control,
    # which empties the streams' queues: a batch delivered in between was never folded nor
    # skipped, and a quiet partition never sent it again (a takeover: scans[5] delivered
    # to its end, never committed).
    app, consumer = batch_consumer()
    broker = Broker(monkeypatch, app, consumer, {TOPIC_PARTITION: None})

    async def fetch(self: object, timeout: float):
        for message in fetched(*range(0, 270)):
            yield TOPIC_PARTITION, message

    await consumer.perform_seek()
    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", fetch)
    (dropped,) = [message async for _, message in consumer.getmany(timeout=0.1)]
    consumer.track_message(dropped)  # into the stream's queue, which the resume empties
    app.in_recovery = True
    consumer.resume_flow()  # the changelogs' recovery starts: nothing is read again yet
    assert broker.seeks == [(TOPIC_PARTITION, 0)]
    app.in_recovery = False
    consumer.resume_flow()
    for task in list(consumer._futures):
        await task
    assert broker.seeks == [(TOPIC_PARTITION, 0), (TOPIC_PARTITION, 0)]  # the seek, the read
    again = batch_message(
        TOPIC_PARTITION, fetched(*range(0, 270)), consumer._seeks[TOPIC_PARTITION]
    )
    consumer.track_message(again)
    consumer.folded(Event(app, None, again.value, {}, again))
    await consumer.commit()
    assert broker.commits[-1] == {TOPIC_PARTITION: 270}
    consumer.resume_flow()  # nothing delivered past the run: nothing to read again
    assert len(broker.seeks) == 2
