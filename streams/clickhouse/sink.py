"""A batching sink with bounded memory, retries that never drop, and commit tracking.

Shape (after quix-streams' sinks): the base class does batching (by rows and by age),
flushing, backpressure and retries; a backend implements one method, ``write(batch)``.

Guarantees the stream processor relies on:

* ``await sink.add(rows_by_table, offsets)`` returns once the rows are buffered. When
  ``max_pending_batches`` sealed batches are waiting for the writer, it blocks: a slow
  or dead ClickHouse slows consumption down instead of growing memory (at most
  ``max_pending_batches + 2`` batches live: queued, being written, being filled).
* Batches are written one at a time, in order; a failing write is retried with capped
  exponential backoff until it succeeds or the sink is closed. Nothing is dropped.
* ``committable()`` only covers offsets whose rows are all written (batches before it
  included), so committing those Kafka offsets never skips unwritten rows. After a
  crash the uncommitted tail is consumed again; ReplacingMergeTree versions and the
  per-batch dedup tokens make the re-written rows change nothing.

Offsets are the *last processed* offset per partition (inclusive); Kafka's committed
position is that plus one. Partition keys are anything hashable (a TopicPartition).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from clickhouse_connect.driver.client import Client

from streams.clickhouse.rows import COLUMNS, PARCEL_ETA, PARCEL_EVENTS, PARCEL_STATE, Row
from streams.settings import Settings

log = logging.getLogger(__name__)

Offsets = Mapping[Hashable, int]
OnCommitted = Callable[[dict[Hashable, int]], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows for several tables plus the input offsets they cover; immutable once sealed."""

    sequence: int
    rows: Mapping[str, tuple[Row, ...]]
    offsets: Mapping[Hashable, int]

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def token(self, table: str) -> str:
        """Insert dedup token: a hash of the table's rows, identical on every retry."""
        digest = hashlib.blake2b(repr(self.rows.get(table, ())).encode(), digest_size=16)
        return f"{table}-{digest.hexdigest()}"


@dataclass(slots=True)
class _OpenBatch:
    rows: dict[str, list[Row]] = field(default_factory=dict)
    offsets: dict[Hashable, int] = field(default_factory=dict)
    row_count: int = 0
    opened_at: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.row_count and not self.offsets


class BatchingSink(ABC):
    """Base class: subclasses implement ``write``; everything else lives here."""

    def __init__(
        self,
        *,
        batch_rows: int = 5000,
        flush_s: float = 0.5,
        max_pending_batches: int = 4,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        on_committed: OnCommitted | None = None,
    ) -> None:
        if batch_rows < 1 or max_pending_batches < 1 or flush_s <= 0:
            raise ValueError("batch_rows and max_pending_batches must be >= 1, flush_s > 0")
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.max_pending_batches = max_pending_batches
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.on_committed = on_committed
        self._open = _OpenBatch()
        self._sequence = 0
        self._queue: asyncio.Queue[Batch] | None = None
        self._lock: asyncio.Lock | None = None
        self._has_rows: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._written: dict[Hashable, int] = {}
        self._writing: Batch | None = None
        self._sealed_rows = 0
        self.rows_written = 0
        self.rows_by_table: dict[str, int] = {}
        self.batches_written = 0
        self.write_failures = 0
        self.consecutive_failures = 0
        self.last_error: BaseException | None = None
        self._closed = False

    @abstractmethod
    async def write(self, batch: Batch) -> None:
        """Store the batch durably or raise; it is retried (same Batch) until it succeeds."""

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer and the age-based flusher (``add`` starts them if needed)."""
        if self._tasks:
            return
        if self._closed:
            raise RuntimeError("sink is closed")
        self._queue = asyncio.Queue(maxsize=self.max_pending_batches)
        self._lock = asyncio.Lock()
        self._has_rows = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._write_batches(), name=f"{type(self).__name__}.writer"),
            asyncio.create_task(self._flush_by_age(), name=f"{type(self).__name__}.flusher"),
        ]

    async def close(self, timeout: float | None = None) -> int:
        """Flush and stop; return rows left unwritten (0 unless ``timeout`` ran out).

        Unwritten rows were never committable, so Kafka will deliver them again.
        """
        left = 0
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), timeout)
            left = self.pending_rows
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks = []
            if left:
                log.warning("sink closed with %d rows unwritten (not committed)", left)
        self._closed = True
        return left

    async def __aenter__(self) -> BatchingSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- producer side -----------------------------------------------------------

    async def add(self, rows_by_table: Mapping[str, Sequence[Row]], offsets: Offsets) -> None:
        """Buffer rows and the offsets they cover; blocks while the writer is behind.

        Cancelled while its batch waits for room, the rows stay buffered (written with
        the next batch); cancelled while waiting for another add(), nothing was buffered.
        Either way re-adding them is harmless: rows are idempotent.
        """
        await self.start()
        assert self._lock is not None and self._has_rows is not None
        async with self._lock:
            batch = self._open
            if batch.empty:
                batch.opened_at = asyncio.get_running_loop().time()
            for table, rows in rows_by_table.items():
                if rows:
                    batch.rows.setdefault(table, []).extend(rows)
                    batch.row_count += len(rows)
            for tp, offset in offsets.items():
                if offset > batch.offsets.get(tp, -1):
                    batch.offsets[tp] = offset
            if batch.row_count >= self.batch_rows:
                await self._seal_locked()
            elif not batch.empty:
                self._has_rows.set()

    async def flush(self) -> None:
        """Seal the open batch and wait until everything added so far is written."""
        await self.start()
        assert self._lock is not None and self._queue is not None
        async with self._lock:
            await self._seal_locked()
        await self._queue.join()

    def committable(self) -> dict[Hashable, int]:
        """Last offset per partition whose rows (and all before them) are written."""
        return dict(self._written)

    @property
    def pending_batches(self) -> int:
        """Sealed batches not yet written (including the one being written)."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return queued + (1 if self._writing is not None else 0)

    @property
    def pending_rows(self) -> int:
        return self._sealed_rows + self._open.row_count

    def status(self) -> dict[str, Any]:
        """Health numbers for the sink's status endpoint."""
        return {
            "rows_written": self.rows_written,
            "rows_by_table": dict(self.rows_by_table),
            "batches_written": self.batches_written,
            "write_failures": self.write_failures,
            "pending_batches": self.pending_batches,
            "pending_rows": self.pending_rows,
            "consecutive_failures": self.consecutive_failures,
            "last_error": None if self.last_error is None else repr(self.last_error),
        }

    # -- internals ---------------------------------------------------------------

    async def _seal_locked(self) -> None:
        """Move the open batch to the queue; waits for room (this is the backpressure)."""
        assert self._queue is not None and self._has_rows is not None
        batch = self._open
        if batch.empty:
            return
        self._open = _OpenBatch()
        self._has_rows.clear()
        self._sequence += 1
        sealed = Batch(
            sequence=self._sequence,
            rows=MappingProxyType({t: tuple(r) for t, r in batch.rows.items()}),
            offsets=MappingProxyType(dict(batch.offsets)),
        )
        self._sealed_rows += sealed.row_count
        try:
            await self._queue.put(sealed)
        except asyncio.CancelledError:
            # A cancelled add()/flush() must not lose the batch: reopen it (the lock is
            # held, so nothing was added meanwhile); its rows go out with the next seal.
            self._open = batch
            self._sequence -= 1
            self._sealed_rows -= sealed.row_count
            self._has_rows.set()
            raise

    async def _flush_by_age(self) -> None:
        assert self._lock is not None and self._has_rows is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._has_rows.wait()
            due = self._open.opened_at + self.flush_s - loop.time()
            if due > 0:
                await asyncio.sleep(due)
                continue
            async with self._lock:
                if not self._open.empty and self._open.opened_at + self.flush_s <= loop.time():
                    await self._seal_locked()

    async def _write_batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._queue.get()
            self._writing = batch
            try:
                await self._write_with_retry(batch)
            finally:
                self._writing = None
                self._queue.task_done()
            self._sealed_rows -= batch.row_count
            for tp, offset in batch.offsets.items():
                if offset > self._written.get(tp, -1):
                    self._written[tp] = offset
            self.rows_written += batch.row_count
            for table, rows in batch.rows.items():
                self.rows_by_table[table] = self.rows_by_table.get(table, 0) + len(rows)
            self.batches_written += 1
            if self.on_committed is not None and batch.offsets:
                await self._notify(self.committable())

    async def _write_with_retry(self, batch: Batch) -> None:
        attempt = 0
        while True:
            try:
                if batch.row_count:
                    await self.write(batch)
                self.consecutive_failures = 0
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                self.write_failures += 1
                self.consecutive_failures = attempt
                self.last_error = exc
                delay = min(self.retry_max_s, self.retry_initial_s * 2 ** (attempt - 1))
                log.warning(
                    "sink write of batch %d (%d rows) failed (attempt %d), retrying in %.2fs: %r",
                    batch.sequence,
                    batch.row_count,
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)

    async def _notify(self, offsets: dict[Hashable, int]) -> None:
        assert self.on_committed is not None
        try:
            result = self.on_committed(offsets)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The rows are written; the next batch's callback carries these offsets too.
            log.exception("on_committed callback failed")


class MemorySink(BatchingSink):
    """Keeps written batches in memory: for tests and for running without ClickHouse."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches: list[Batch] = []

    async def write(self, batch: Batch) -> None:
        self.batches.append(batch)

    def rows(self, table: str) -> list[Row]:
        return [row for b in self.batches for row in b.rows.get(table, ())]


class ClickHouseSink(BatchingSink):
    """Inserts batches with clickhouse-connect, from a worker thread, one at a time.

    Tables are written events first, state last; a batch retried after a partial
    failure re-sends the tables already written with the same dedup token, which the
    table setting ``non_replicated_deduplication_window`` (or replication) turns into
    a no-op. Without dedup the re-sent rows are identical (same key and version) and
    ``FINAL`` still shows each once.
    """

    TABLE_ORDER: tuple[str, ...] = (PARCEL_EVENTS, PARCEL_ETA, PARCEL_STATE)

    def __init__(self, client: Client, *, database: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.database = database
        self._thread_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, client: Client, *, database: str, **kwargs: Any
    ) -> ClickHouseSink:
        return cls(
            client,
            database=database,
            batch_rows=settings.sink_batch_rows,
            flush_s=settings.sink_flush_s,
            max_pending_batches=settings.sink_max_pending_batches,
            **kwargs,
        )

    async def write(self, batch: Batch) -> None:
        await asyncio.to_thread(self._insert, batch)

    def _insert(self, batch: Batch) -> None:
        tables = [t for t in self.TABLE_ORDER if batch.rows.get(t)]
        tables += sorted(t for t in batch.rows if t not in self.TABLE_ORDER and batch.rows[t])
        with self._thread_lock:
            for table in tables:
                self.client.insert(
                    table,
                    batch.rows[table],
                    database=self.database,
                    column_names=list(COLUMNS[table]),
                    settings={"insert_deduplication_token": batch.token(table)},
                )
