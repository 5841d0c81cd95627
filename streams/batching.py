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

Commits stay Faust's (its commit timer, its consumer group), but what is done is the
consumer's: acknowledging a batch (after its outputs are in Kafka) acknowledges every
one of its offsets, and a partition commits up to the end of the unbroken run of
done offsets from where it is read. Faust's own gap bookkeeping, which marks offsets
as it delivers them, is not used for batch topics (`BatchConsumer.ack`).

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


def batch_message(tp: TP, messages: Sequence[Message]) -> Message:
    """One message for a partition's fetched records, valued by their `RecordBatch`."""
    last = messages[-1]
    return ConsumerMessage(
        tp.topic,
        tp.partition,
        last.offset,
        last.timestamp,
        last.timestamp_type,
        [],
        None,
        RecordBatch(tp.topic, tp.partition, [_record(m) for m in messages]),  # type: ignore[arg-type]
        None,
        0,
        0,
        tp,
        generation_id=last.generation_id,
    )


class BatchConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, yielding one message per batch for the app's batch topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_from: dict[TP, int] = {}
        """Per batch-topic partition: the first offset delivered since its last seek."""

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
            if not self.flow_active or self.app.consumer_generation_id != generation:
                # A rebalance began during the fetch, or while Faust took the previous
                # batch (its callback waits when the stream's buffer is full): deliver
                # nothing more of it. Yielded now, a batch fetched before the seek back
                # would set Faust's read offset past the committed offset it seeks back
                # to, and the records fetched again below it would be dropped as read.
                # As Faust's own getmany does, seek back so they are fetched again.
                await self._seek_back_during_rebalance()
                return
            self._read_from.setdefault(tp, messages[0].offset)
            yield tp, batch_message(tp, messages)

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
        committed offset above the records read again from 0 made the partition wait
        for offsets below it that were never acknowledged again: folded and stored,
        never committed again.
        """
        committed = dict(await super().seek_to_committed())
        batch_topics: frozenset[str] = getattr(self.app, "batch_topics", frozenset())
        for tp in self.assignment():
            if tp.topic in batch_topics:
                self._read_from.pop(tp, None)  # read again from the seek
            if tp.topic in batch_topics and not committed.get(tp):
                try:
                    await self.seek(tp, 0)
                except IllegalStateError:  # revoked meanwhile: its new owner seeks it
                    continue
                committed[tp] = 0
        return committed

    def ack(self, message: Message) -> bool:
        """Acknowledge a batch as every one of its offsets, once its outputs are stored.

        Faust's own bookkeeping for a batch message is its last offset plus a gap (the
        offsets since the partition's previous message) that its drain loop notes when
        it *delivers* the message. Faust's stream then skips events while a rebalance
        runs, so a gap may cover a batch nobody folded; merged into a later
        acknowledgement, it committed those records (seen here: a restarted worker
        lost two conflict dead letters and 42 parcels' last events). So for batch
        topics the acknowledged offsets alone say what is done.
        """
        accepted = super().ack(message)
        batch = message.value
        if accepted and isinstance(batch, RecordBatch) and len(batch.records) > 1:
            committed = self._committed_offset[message.tp]
            first = batch.records[0].offset
            if committed is not None:
                first = max(first, committed)
            self._acked[message.tp].extend(range(first, batch.last_offset))
        return accepted

    def _new_offset(self, tp: TP) -> int | None:
        """The next commit offset for ``tp``: the end of the unbroken run of done offsets.

        For batch topics the run is of acknowledged offsets only (see ``ack``), and it
        must start where the partition is read from: its committed offset, or the
        first offset delivered since the seek when it has none (a partition without a
        commit is read from its beginning, which retention may have moved past 0).
        Faust's own computation merges the gaps its drain loop noted and, for a
        partition without a commit, accepts a run that starts anywhere; it also counts
        a batch's last offset twice (in the gap and in the acknowledgement), which
        ended its run at every batch: each commit moved a partition on one batch only
        (its gap handling: faust-streaming/faust#606, open). Other topics keep Faust's
        computation.
        """
        batch_topics: frozenset[str] = getattr(self.app, "batch_topics", frozenset())
        if tp.topic not in batch_topics:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        if not acked:
            return None
        committed = self._committed_offset[tp]
        self._gap.pop(tp, None)  # delivered is not done
        start = self._read_from.get(tp)
        base = max((b for b in (committed, start) if b is not None), default=None)
        done = sorted({o for o in acked if committed is None or o >= committed})
        if not done or (base is not None and done[0] > base):
            acked[:] = done
            return None  # the records the partition is read from are not done yet
        run = next(consecutive_numbers(done))
        acked[:] = done[len(run) :]
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
