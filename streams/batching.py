"""Record batches through Faust: one stream event per fetched topic-partition batch.

Faust's consumer pipeline costs a fixed amount of asyncio machinery per message
(about 250 us here: a `wait_first` with two tasks in `_drain_messages`, the
conductor, the channel queue, the stream's per-event bookkeeping), which alone caps
a worker near 4,000 events/s whatever it does per event. This transport keeps
everything else of Faust (consumer group, assignment, tables and their changelog
recovery, table routing, timers, web) and changes only what a message is for the
topics an app names as batch topics: `BatchConsumer.getmany` (the transport's
public fetch method) groups the records Faust fetched into one message per
topic-partition whose value is the `RecordBatch`.

Offsets stay Faust's: a batch message carries the offset of its last record, and
Faust's consumer counts the offsets between two messages of a partition as a gap
that is safe to commit once the later message is acknowledged. So acknowledging a
batch (after its outputs are in Kafka) lets Faust commit everything up to it.

Registered as the ``trackbone-batch://`` broker scheme through Faust's documented
``faust.transports`` entry-point group (see pyproject.toml).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import IllegalStateError, KafkaError
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, Message
from faust.types.tuples import ConsumerMessage
from faust.utils.functional import consecutive_numbers

from projections.core import Record

SCHEME = "trackbone-batch"


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Consecutive records of one topic-partition, in offset order."""

    topic: str
    partition: int
    records: Sequence[Record]

    @property
    def last_offset(self) -> int:
        return self.records[-1].offset


def _record(message: Message) -> Record:
    timestamp = message.timestamp
    return Record(
        message.key,
        message.value,
        message.offset,
        round(timestamp * 1000) if timestamp else 0,
        message.headers or None,
    )


def batch_messages(tp: TP, messages: Sequence[Message]) -> list[Message]:
    """One message per batch, valued by the batch; split so Faust sees every gap.

    Faust's consumer skips the gap bookkeeping when the previous message's offset is
    0 (it tests the offset for truth), which would leave offsets 1..n-1 forever
    uncommitted after a batch made of offset 0 alone. A batch that starts at offset
    1 therefore sends its first record as a batch of its own.
    """
    records = [_record(m) for m in messages]
    parts = [records]
    if len(records) > 1 and records[0].offset == 1:
        parts = [records[:1], records[1:]]
    batches: list[Message] = []
    for part in parts:
        last = messages[len(records) - 1] if part is parts[-1] else messages[0]
        batches.append(
            ConsumerMessage(
                tp.topic,
                tp.partition,
                part[-1].offset,
                last.timestamp,
                last.timestamp_type,
                [],
                None,
                RecordBatch(tp.topic, tp.partition, part),  # type: ignore[arg-type]
                None,
                0,
                0,
                tp,
                generation_id=last.generation_id,
            )
        )
    return batches


class BatchConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, yielding one message per batch for the app's batch topics."""

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        batch_topics: frozenset[str] = getattr(self.app, "batch_topics", frozenset())
        generation = self.app.consumer_generation_id
        pending: dict[TP, list[Message]] = {}
        async for tp, message in super().getmany(timeout):
            if tp.topic in batch_topics:
                pending.setdefault(tp, []).append(message)
            else:
                yield tp, message
        for tp, messages in pending.items():
            for batch in batch_messages(tp, messages):
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    # A rebalance began during the fetch, or while Faust took the
                    # previous batch (its callback waits when the stream's buffer is
                    # full): deliver nothing more of it. Yielded now, a batch fetched
                    # before the seek back would set Faust's read offset and gap past
                    # the committed offset it seeks back to, and the records fetched
                    # again below it would be dropped as read. As Faust's own getmany
                    # does, seek back so they are fetched again.
                    await self._seek_back_during_rebalance()
                    return
                yield tp, batch

    async def _seek_back_during_rebalance(self) -> None:
        """Seek back to the committed offsets; a partition already gone is the rebalance's.

        The seek races the rebalance that stopped the flow: when a partition is revoked
        under it, aiokafka raises ``IllegalStateError``. Raised out of ``getmany`` that
        crashed Faust's fetcher for good: the worker stayed up, healthy to its web
        view, and consumed nothing more (the fault suite's join/leave and restart runs
        stalled so). The rebalance seeks every partition it assigns once its recovery
        completes, so the failed seek loses nothing. Faust's own ``getmany`` likewise
        only logs a failed seek.
        """
        try:
            await self.perform_seek()
        except KafkaError as exc:
            self.log.info("seek back skipped while the assignment changes: %r", exc)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek to the committed offsets, and batch-topic partitions without one to 0.

        Faust drops records it fetched while a rebalance runs (those of partitions not
        active yet, or fetched as the flow stops) and seeks back to the committed
        offsets afterwards. aiokafka's ``seek_to_committed`` leaves a partition with no
        committed offset (or 0) where it is, so such a partition's dropped records
        would never be fetched again and the next commit would pass over them (seen
        here: a worker taking over a dead worker's partitions skipped their first
        records). Such a partition has not been processed by anyone, so it starts at
        its beginning, as ``auto_offset_reset=earliest`` means.

        Such a partition is reported as committed at 0, not as without a commit:
        Faust's ``perform_seek`` then resets its own committed offset for it, which
        may be ahead of the broker's. Faust 0.15.3 records a commit as done even when
        Kafka refused it during a rebalance (faust-streaming/faust#316, fixed upstream
        by #692, not released), and a commit may land while this seek runs. A stale
        committed offset above the records read again from 0 made Faust wait for
        offsets that never come (its gap list starts at the read offset): the
        partition was folded and stored but never committed again.
        """
        committed = dict(await super().seek_to_committed())
        batch_topics: frozenset[str] = getattr(self.app, "batch_topics", frozenset())
        for tp in self.assignment():
            if tp.topic in batch_topics:
                # Everything past the committed offset is read again and noted again.
                # A gap noted before this seek may cover a batch Faust's stream then
                # skipped (it drops events while a rebalance runs), never processed:
                # merged into a later acknowledgement, it committed records nobody had
                # folded (seen here: a restarted worker lost conflict dead letters and
                # the last events of 42 parcels).
                self._gap.pop(tp, None)
            if tp.topic in batch_topics and not committed.get(tp):
                try:
                    await self.seek(tp, 0)
                except IllegalStateError:  # revoked meanwhile: its new owner seeks it
                    continue
                committed[tp] = 0
        return committed

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's next commit offset for ``tp``, counting each offset once.

        Faust 0.15.3 marks the offsets between two messages of a partition as a gap
        that ends at the later message's own offset, which its acknowledgement adds
        again. The duplicate ends Faust's "consecutive run", so each commit moved a
        partition on by one batch message only (faust-streaming/faust#606: gaps break
        its commits). Batches pending after partitions moved then took minutes to
        commit, a run of restarts or rebalances could leave them so for good, and
        every restart re-delivered them. This is Faust's own computation (gaps merged
        into the acknowledged offsets up to the highest, a run that does not start
        right after the committed offset waits) on the offsets without duplicates.
        """
        acked = self._acked[tp]
        if not acked:
            return None
        highest = max(acked)
        gaps = self._gap[tp]
        if gaps:
            covered = sorted(gaps.overlap(0, highest), key=lambda interval: interval.begin)
            if covered:
                offsets = [o for interval in covered for o in range(interval.begin, interval.end)]
                acked.extend(offsets)
                gaps.chop(0, max(offsets[-1], highest + 1))
        acked[:] = sorted(set(acked))
        committed = self._committed_offset[tp]
        if committed and acked[0] - committed > 1:
            return None  # the offsets right after the committed one are not done yet
        run = next(consecutive_numbers(acked))
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return run[-1] + 1


class Transport(aiokafka_driver.Transport):
    """The aiokafka transport with the batching consumer."""

    Consumer = BatchConsumer


class BatchSchema(faust.Schema):
    """Hands the `RecordBatch` to the stream as the event's value, untouched."""

    def loads_key(self, app: AppT, message: Message, **kwargs: Any) -> Any:
        return None

    def loads_value(self, app: AppT, message: Message, **kwargs: Any) -> Any:
        return message.value


class BatchApp(faust.App):
    """A Faust app that knows which of its topics arrive as record batches."""

    batch_topics: frozenset[str] = frozenset()
