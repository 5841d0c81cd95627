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
consumer's: the app tells it a batch is folded once its outputs are in Kafka
(`BatchConsumer.folded`), and a partition commits up to the end of the unbroken run of
folded offsets from where it is read. Faust's own bookkeeping, which counts what its
drain loop delivered and what its stream acknowledged (skipped batches included), is
not used for batch topics.

Registered as the ``trackbone-batch://`` broker scheme through Faust's documented
``faust.transports`` entry-point group (see pyproject.toml).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import IllegalStateError, KafkaError
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, EventT, Message
from faust.types.tuples import ConsumerMessage

from projections.core import Record

SCHEME = "trackbone-batch"
MAX_RANGES_AHEAD = 1024
"""Folded ranges kept beyond a partition's run at most; past that it is read again."""


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Consecutive records of one topic-partition, in offset order."""

    topic: str
    partition: int
    records: Sequence[Record]
    seek: int = 0
    """How many times the consumer had positioned the partition before fetching these."""

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


def batch_message(tp: TP, messages: Sequence[Message], seek: int = 0) -> Message:
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
        RecordBatch(tp.topic, tp.partition, [_record(m) for m in messages], seek),  # type: ignore[arg-type]
        None,
        0,
        0,
        tp,
        generation_id=last.generation_id,
    )


class BatchConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, yielding one message per batch for the app's batch topics.

    For batch topics it also keeps what may be committed: per partition, the end of the
    unbroken run of *folded* offsets from where the partition is read (``_done_to``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._done_to: dict[TP, int] = {}
        """Per batch-topic partition: every offset below this one is folded and stored."""
        self._seeks: dict[TP, int] = {}
        """Per batch-topic partition: how many times it was positioned (tags its batches)."""
        self._reading_again: dict[TP, int] = {}
        """Per batch-topic partition: the offset a pending seek reads it again from."""
        self._confirmed: dict[TP, int | None] = {}
        """Per batch-topic partition: its committed offset as Kafka last confirmed it."""
        self._delivered: dict[TP, int] = {}
        """Per batch-topic partition: the offset after the last batch handed to Faust."""
        self._ahead: dict[TP, list[tuple[int, int]]] = {}
        """Per batch-topic partition: folded offset ranges [first, after) not joined to
        the run yet (beyond a gap, or folded before the partition's run was known)."""

    def _batch_topics(self) -> frozenset[str]:
        return getattr(self.app, "batch_topics", frozenset())

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        batch_topics = self._batch_topics()
        generation = self.app.consumer_generation_id
        seeks = dict(self._seeks)  # before the fetch: a seek during it makes its batches stale
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
                # nothing more of it, and seek back so that it is fetched again, as
                # Faust's own getmany does when the flow stops.
                await self._seek_back_during_rebalance()
                return
            self._delivered[tp] = messages[-1].offset + 1
            yield tp, batch_message(tp, messages, seeks.get(tp, 0))

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
        """Seek to the committed offsets (batch-topic partitions without one: their start).

        aiokafka's ``seek_to_committed`` leaves a partition with no committed offset
        where it is; records Faust dropped during the rebalance would never be fetched
        again (seen here: a worker taking over a dead worker's partitions skipped their
        first records). Such a partition has not been processed by anyone, so it is
        read from its first offset (``auto_offset_reset=earliest``), which is where its
        run of folded offsets starts.

        Such a partition is reported as committed at 0, not as without a commit:
        Faust's ``perform_seek`` then resets its own committed offset for it, which may
        be ahead of the broker's. Faust 0.15.3 books a commit as done even when Kafka
        refused it during a rebalance (faust-streaming/faust#316, fixed upstream by
        #692, not released); above the records read again, that stale offset refused
        every later commit of the partition.
        """
        committed = dict(await super().seek_to_committed())
        batch_topics = self._batch_topics()
        partitions = [tp for tp in self.assignment() if tp.topic in batch_topics]
        fresh = [tp for tp in partitions if not committed.get(tp)]
        starts = await self._earliest(fresh)
        unknown: list[TP] = []
        for tp in partitions:
            self._seeks[tp] = self._seeks.get(tp, 0) + 1
            self._reading_again.pop(tp, None)
            start = committed.get(tp)
            self._confirmed[tp] = start or None
            if tp in fresh:
                try:
                    await self.seek(tp, 0)
                except IllegalStateError:  # revoked meanwhile: its new owner seeks it
                    self._done_to.pop(tp, None)
                    continue
                committed[tp] = 0
                start = starts.get(tp)
            if start is None:
                self._done_to.pop(tp, None)
                unknown.append(tp)
                continue
            # Batches keep arriving while the seek runs; one folded meanwhile extended a
            # run that started at or below the committed offset read here (a partition
            # only this worker commits, since a move revokes it), so the run stands.
            self._start_run(tp, max(start, self._done_to.get(tp, start)))
        if unknown:
            seeks = {tp: self._seeks[tp] for tp in unknown}
            self.add_future(self._learn_starts(seeks))
        return committed

    async def _earliest(self, partitions: Sequence[TP]) -> Mapping[TP, int]:
        if not partitions:
            return {}
        try:
            return await self.earliest_offsets(*partitions)
        except KafkaError as exc:
            self.log.info("earliest offsets unknown for now: %r", exc)
            return {}

    async def _learn_starts(self, seeks: Mapping[TP, int], attempts: int = 8) -> None:
        """Ask again for the first offsets the seek could not learn; a run starts there.

        Without its first offset a partition without a commit has no run, so it was
        never committed until its next seek: in a restart run the 34 partitions without
        a commit stayed uncommitted while the 6 with one committed to their end. The
        broker's answer may leave partitions out while the group settles (Faust met
        the same in its recovery, faust-streaming/faust#289). Batches folded meanwhile
        join the run as it starts, and the partition is read again from its end.
        """
        delay = 0.2
        for _ in range(attempts):
            await asyncio.sleep(delay)  # a backoff between two broker requests
            delay = min(delay * 2, 5.0)
            assigned = self.assignment()
            pending = [
                tp
                for tp, seek in seeks.items()
                if self._seeks.get(tp) == seek and tp not in self._done_to and tp in assigned
            ]
            if not pending:
                return
            for tp, start in (await self._earliest(pending)).items():
                if tp in pending:
                    self._start_run(tp, start)
                    # A batch delivered meanwhile and not folded (skipped in a rebalance)
                    # would never come again: read the partition again from the run's end.
                    self._read_again(tp, self._done_to[tp])
        self.log.warning("first offsets still unknown; they commit after the next seek")

    async def _seek(self, partition: TP, offset: int) -> None:
        """Seek in the consumer's own thread, as Faust's other consumer calls do.

        Faust 0.15.3 calls aiokafka's ``seek`` straight from the app's thread (for the
        table recovery's seeks and the ones here) while the consumer thread may be inside
        ``fetched_records``, which iterates the fetcher's buffered records that ``seek``
        deletes: ``KeyError`` in ``fetched_records``, the fetcher crashed and the worker
        with it (seen here in the failover test; reported as robinhood/aiokafka#19).
        """
        thread = self._thread

        async def seek() -> None:  # runs on the consumer thread's loop
            thread.seek(partition, offset)

        await thread.call_thread(seek)

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit; remember what Kafka took (Faust books every offset it asked for)."""
        done = await super()._commit(offsets)
        if done:
            assigned = self.assignment()  # the consumer thread commits only these
            for tp, offset in offsets.items():
                if tp in self._done_to and tp in assigned:
                    self._confirmed[tp] = offset
        return done

    def resume_flow(self) -> None:
        """Resume; read again what Faust's flow control dropped as it resumed.

        Faust's recovery resumes a new assignment's partitions, seeks them, and only then
        resumes its flow control, which empties the streams' queues (mode's
        ``FlowControlEvent.resume``): batches fetched and delivered in between are gone,
        neither folded nor skipped, and a quiet partition never sent them again (a
        takeover ended with ``scans[5]`` delivered to its end and never committed).
        faust-streaming/faust#253 reordered some of these calls for the same reason; the
        no-recovery path of 0.15.3 still resumes flow control before the seek and again
        after it. Every partition delivered past its run is read again from the run's end
        (the fold dedupes what the agent had already taken).
        """
        super().resume_flow()
        if self.app.in_recovery:
            return  # the changelogs' turn: the seek and the last resume come after it
        behind = [
            (tp, end)
            for tp, delivered in self._delivered.items()
            if (end := self._done_to.get(tp)) is not None and delivered > end
        ]
        if behind:
            self.log.info("flow resumed: reading %d partitions again from their runs", len(behind))
        for tp, end in behind:
            self._read_again(tp, end, quiet=True)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._delivered.pop(tp, None)
            self._confirmed.pop(tp, None)
            self._done_to.pop(tp, None)
            self._reading_again.pop(tp, None)
            self._ahead.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def folded(self, event: EventT) -> None:
        """Acknowledge a batch the app has folded and whose outputs Kafka holds.

        Faust's stream also acknowledges the batches it *skips* while a rebalance runs,
        and its own bookkeeping counts every acknowledged offset as done: a skipped
        batch could be committed unfolded; and after partitions moved back and forth, that
        bookkeeping left some of them never committed again (the join/leave fault). So
        what may be committed is only what this method was told, as one unbroken run from
        where the partition is read, started afresh whenever it is assigned. A batch
        folded beyond the run's end, or before the run is known, waits in ``_ahead``
        until the run reaches it.
        """
        message = event.message
        batch = message.value
        tp = message.tp
        self._acked[tp]  # a defaultdict: Faust asks _new_offset for the partitions in it
        if isinstance(batch, RecordBatch):
            first, after = batch.records[0].offset, batch.last_offset + 1
            end = self._done_to.get(tp)
            if end is None or first > end:
                # Not joined (yet): a run not known yet (folded between aiokafka's seek
                # and the run's start: a restart left 29 partitions uncommitted so), or
                # a gap before it. Kept, so that the run takes it once it gets there.
                self._keep_ahead(tp, first, after)
                if end is not None and batch.seek == self._seeks.get(tp):
                    # A batch delivered since the last seek is missing before this one:
                    # read the partition again from the end of the run (the fold dedupes).
                    self._read_again(tp, end)
            elif end < after:
                self._done_to[tp] = self._joined(tp, after)
                self._reading_again.pop(tp, None)
        event.ack()

    def _start_run(self, tp: TP, start: int) -> None:
        self._done_to[tp] = self._joined(tp, start)

    def _keep_ahead(self, tp: TP, first: int, after: int) -> None:
        ahead = self._ahead.setdefault(tp, [])
        bisect.insort(ahead, (first, after))
        merged: list[tuple[int, int]] = []
        for low, high in ahead:
            if merged and low <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        end = self._done_to.get(tp)
        if end is not None and len(merged) > MAX_RANGES_AHEAD:
            merged.clear()  # gaps on gaps: forget them and read it all again
            self._read_again(tp, end)
        self._ahead[tp] = merged

    def _joined(self, tp: TP, end: int) -> int:
        """The run's end once it reaches ``end``, with the ranges ahead it now touches."""
        ahead = self._ahead.get(tp)
        while ahead and ahead[0][0] <= end:
            end = max(end, ahead.pop(0)[1])
        return end

    def _read_again(self, tp: TP, offset: int, *, quiet: bool = False) -> None:
        if self._reading_again.get(tp) == offset:
            return
        self._reading_again[tp] = offset
        if not quiet:
            self.log.warning("%s: offsets from %s delivered, not folded: reading again", tp, offset)

        async def seek() -> None:
            try:
                await self.seek(tp, offset)
            except (IllegalStateError, KafkaError) as exc:  # revoked: its new owner reads it
                self.log.info("reading %s again skipped: %r", tp, exc)

        self.add_future(seek())

    def _new_offset(self, tp: TP) -> int | None:
        """The next commit offset for ``tp``: for batch topics, the end of the folded run.

        Faust's own computation (kept for other topics) merges what its drain loop
        delivered and what its stream acknowledged, skipped batches included (see
        ``folded``); and a batch's last offset, in both, split its run at every batch
        (faust-streaming/faust#606, open).
        """
        if tp.topic not in self._batch_topics():
            return super()._new_offset(tp)
        self._gap.pop(tp, None)
        self._acked[tp].clear()
        self._acked_index[tp].clear()
        end = self._done_to.get(tp)
        # Faust books a commit as done even when Kafka refused it (faust#316): above
        # the partition's real commit, that booking refused every later commit, and the
        # last batch of a quiet partition stayed uncommitted for good (the takeover
        # fault, once). Faust's view is set back to what Kafka confirmed.
        committed = self._committed_offset[tp] = self._confirmed.get(tp)
        if end is None or (committed is not None and end <= committed):
            return None
        return end


def folded_callback(app: AppT) -> Callable[[EventT], None]:
    """What an agent of ``app`` calls once it has folded a batch (`BatchConsumer.folded`)."""
    consumer = app.consumer
    if isinstance(consumer, BatchConsumer):
        return consumer.folded

    def ack(event: EventT) -> None:
        event.ack()

    return ack


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
