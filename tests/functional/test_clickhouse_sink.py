"""The batching sink: batching, backpressure, retries, commit tracking, idempotent ClickHouse."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest

from projections.events import Scan
from streams.clickhouse import migrations
from streams.clickhouse.rows import (
    PARCEL_ETA,
    PARCEL_EVENTS,
    PARCEL_STATE,
    Row,
    eta_row,
    event_row,
    state_tombstone_row,
    status_row,
)
from streams.clickhouse.sink import Batch, ClickHouseSink, MemorySink
from tests.functional.clickhouse_support import (
    HOUR,
    T0,
    ClickHouseTest,
    clickhouse_database,
    scan,
    status,
)

FAST = {"retry_initial_s": 0.001, "retry_max_s": 0.01}


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition until it holds or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)


def row(n: int) -> Row:
    return ("row", n)


# -- in-memory: the base class's guarantees ------------------------------------------


async def test_batches_by_size_and_flush() -> None:
    sink = MemorySink(batch_rows=3, flush_s=60, max_pending_batches=2)
    async with sink:
        for n in range(7):
            await sink.add({"t": [row(n)]}, {"p0": n})
        await sink.flush()
        assert [b.row_count for b in sink.batches] == [3, 3, 1]
        assert sink.rows("t") == [row(n) for n in range(7)]
        assert sink.committable() == {"p0": 6}


async def test_flushes_by_age() -> None:
    sink = MemorySink(batch_rows=1000, flush_s=0.05, max_pending_batches=2)
    async with sink:
        await sink.add({"t": [row(1)]}, {"p0": 10})
        await eventually(lambda: len(sink.batches) == 1)
        assert sink.committable() == {"p0": 10}


async def test_offsets_without_rows_become_committable_in_order() -> None:
    sink = MemorySink(batch_rows=2, flush_s=60, max_pending_batches=2)
    async with sink:
        await sink.add({}, {"p0": 0})
        await sink.add({"t": [row(1)]}, {"p0": 1, "p1": 7})
        assert sink.committable() == {}
        await sink.flush()
        assert sink.committable() == {"p0": 1, "p1": 7}


class FlakySink(MemorySink):
    """Fails the first ``failures`` write attempts, then works."""

    def __init__(self, failures: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.attempts = 0

    async def write(self, batch: Batch) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"ClickHouse down (attempt {self.attempts})")
        await super().write(batch)


async def test_failing_writer_loses_nothing_duplicates_nothing() -> None:
    seen: list[dict[Hashable, int]] = []
    sink = FlakySink(5, batch_rows=4, flush_s=60, max_pending_batches=2, **FAST)

    def committed(offsets: dict[Hashable, int]) -> None:
        # Called only after a batch was accepted: every offset it names is written.
        written = {r[1] for r in sink.rows("t")}
        for tp, offset in offsets.items():
            assert all(n in written for n in range(offset + 1) if n % 2 == (tp == "p1"))
        seen.append(offsets)

    sink.on_committed = committed
    async with sink:
        for n in range(30):
            await sink.add({"t": [row(n)]}, {"p1" if n % 2 else "p0": n})
            assert all(o <= n for o in sink.committable().values())
        await asyncio.wait_for(sink.flush(), 10)
    assert sink.attempts == 5 + len(sink.batches)
    assert sink.rows("t") == [row(n) for n in range(30)]
    assert sink.committable() == {"p0": 28, "p1": 29}
    assert seen[-1] == {"p0": 28, "p1": 29}
    assert sink.consecutive_failures == 0 and isinstance(sink.last_error, ConnectionError)


class StalledSink(MemorySink):
    """Writes only once the gate opens: a ClickHouse that hangs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = asyncio.Event()

    async def write(self, batch: Batch) -> None:
        await self.gate.wait()
        await super().write(batch)


async def test_backpressure_blocks_add_when_pending_is_full() -> None:
    sink = StalledSink(batch_rows=1, flush_s=60, max_pending_batches=2)
    await sink.start()
    # One batch in the (stalled) writer, two queued: the queue is full.
    for n in range(3):
        await asyncio.wait_for(sink.add({"t": [row(n)]}, {"p0": n}), 1)
    await eventually(lambda: sink.pending_batches == 3)
    blocked = asyncio.create_task(sink.add({"t": [row(3)]}, {"p0": 3}))
    done, _ = await asyncio.wait({blocked}, timeout=0.2)
    assert not done, "add() should wait while max_pending_batches are queued"
    # A producer cancelled while its batch waits for room: the batch stays buffered.
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert sink.pending_rows == 4
    later = asyncio.create_task(sink.add({"t": [row(4)]}, {"p0": 4}))
    done, _ = await asyncio.wait({later}, timeout=0.1)
    assert not done
    assert sink.committable() == {}
    sink.gate.set()
    await asyncio.wait_for(later, 5)
    await asyncio.wait_for(sink.flush(), 5)
    assert sorted(r[1] for r in sink.rows("t")) == [0, 1, 2, 3, 4]
    assert sink.committable() == {"p0": 4}
    assert await sink.close(timeout=1) == 0


async def test_close_reports_unwritten_rows_and_never_commits_them() -> None:
    sink = StalledSink(batch_rows=2, flush_s=60, max_pending_batches=1)
    await sink.add({"t": [row(1), row(2)]}, {"p0": 2})
    await sink.add({"t": [row(3)]}, {"p0": 3})
    assert await sink.close(timeout=0.1) == 3
    assert sink.committable() == {}


# -- ClickHouse (chdb): idempotent writes ------------------------------------------


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[ClickHouseTest]:
    with clickhouse_database(tmp_path) as ctx:
        migrations.migrate(ctx.client, ctx.database)
        yield ctx


class RecordingSink(ClickHouseSink):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[Batch] = []

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        self.batches.append(batch)


def history(parcels: int = 40) -> list[tuple[dict[str, list[Row]], dict[Hashable, int]]]:
    """A stream of (rows, offsets): each parcel gets 3 scans, one voided, statuses, ETAs."""
    out: list[tuple[dict[str, list[Row]], dict[Hashable, int]]] = []
    offset = 0
    kinds = (Scan.PICKED_UP, Scan.ORIGIN_HUB_ARRIVED, Scan.ORIGIN_HUB_DEPARTED)
    for p in range(parcels):
        pid = f"P{p:04d}"
        events = [
            scan(pid, f"{pid}-e{k}", T0 + k * HOUR, kind, "HUB1") for k, kind in enumerate(kinds)
        ]
        for version, event in enumerate(events, start=1):
            st = status(
                pid,
                version,
                event_count=version,
                milestone="AT_ORIGIN_HUB",
                eta_p50=T0 + 40 * HOUR + version,
                on_time_probability=0.9,
            )
            eta = eta_row(st)
            assert eta is not None
            rows = {
                PARCEL_EVENTS: [event_row(event, version=version, deleted=False)],
                PARCEL_STATE: [status_row(st)],
                PARCEL_ETA: [eta],
            }
            out.append((rows, {("tracking.scans", p % 3): offset}))
            offset += 1
        # version 4: the second scan is voided
        st = status(pid, 4, event_count=2, milestone="AT_ORIGIN_HUB")
        rows = {
            PARCEL_EVENTS: [event_row(events[1], version=4, deleted=True)],
            PARCEL_STATE: [status_row(st)],
        }
        out.append((rows, {("tracking.corrections", p % 2): offset}))
        offset += 1
    return out


def snapshot(ch: ClickHouseTest) -> dict[str, Any]:
    db = ch.database
    return {
        "events": ch.rows(
            f"SELECT parcel_id, event_id, version FROM {db}.parcel_events FINAL ORDER BY ALL"
        ),
        "state": ch.rows(f"SELECT * FROM {db}.parcel_state FINAL ORDER BY parcel_id"),
        "eta": ch.rows(f"SELECT * FROM {db}.parcel_eta FINAL ORDER BY parcel_id, version"),
    }


def stop_merges(ch: ClickHouseTest) -> None:
    """Keep background merges from shrinking raw row counts while a test compares them."""
    for table in (PARCEL_EVENTS, PARCEL_STATE, PARCEL_ETA):
        ch.client.command(f"SYSTEM STOP MERGES {ch.database}.{table}")


def raw_counts(ch: ClickHouseTest) -> tuple[int, ...]:
    db = ch.database
    return tuple(
        ch.scalar(f"SELECT count() FROM {db}.{t}")
        for t in (PARCEL_EVENTS, PARCEL_STATE, PARCEL_ETA)
    )


async def feed(
    sink: ClickHouseSink, stream: list[tuple[dict[str, list[Row]], dict[Hashable, int]]]
) -> None:
    async with sink:
        for rows, offsets in stream:
            await sink.add(rows, offsets)
        await asyncio.wait_for(sink.flush(), 60)


async def test_same_batch_twice_and_full_replay_change_nothing(ch: ClickHouseTest) -> None:
    stop_merges(ch)
    stream = history()
    sink = RecordingSink(ch.client, database=ch.database, batch_rows=50, flush_s=60)
    await feed(sink, stream)
    first = snapshot(ch)
    assert len(first["state"]) == 40 and len(first["events"]) == 80  # one scan voided each
    assert {r[1].rsplit("-", 1)[1] for r in first["events"]} == {"e0", "e2"}
    assert {
        (r[0], r[1])
        for r in ch.rows(f"SELECT version, event_count FROM {ch.database}.parcel_state FINAL")
    } == {(4, 2)}
    assert len(first["eta"]) == 120
    counts = raw_counts(ch)
    expected: dict[Hashable, int] = {}
    for _, offsets in stream:
        for tp, offset in offsets.items():
            expected[tp] = max(expected.get(tp, -1), offset)
    assert sink.committable() == expected

    # The same batches again (a retry after a lost acknowledgement): dedup tokens
    # make ClickHouse skip them, so not even unmerged copies appear.
    for batch in list(sink.batches):
        await sink.write(batch)
    assert raw_counts(ch) == counts
    assert snapshot(ch) == first

    # A full replay with different batching (after a crash: other tokens).
    await feed(ClickHouseSink(ch.client, database=ch.database, batch_rows=37, flush_s=60), stream)
    assert snapshot(ch) == first


async def test_void_removes_event_even_if_replayed_afterwards(ch: ClickHouseTest) -> None:
    event = scan("PV", "PV-e1", T0, Scan.PICKED_UP, "HUB1")
    other = scan("PV", "PV-e2", T0 + HOUR, Scan.ORIGIN_HUB_ARRIVED, "HUB1")
    sink = ClickHouseSink(ch.client, database=ch.database, batch_rows=10, flush_s=60)
    added = {
        PARCEL_EVENTS: [
            event_row(event, version=1, deleted=False),
            event_row(other, version=2, deleted=False),
        ]
    }
    voided = {PARCEL_EVENTS: [event_row(event, version=3, deleted=True)]}
    query = f"SELECT event_id FROM {ch.database}.parcel_events FINAL ORDER BY event_id"
    async with sink:
        await sink.add(added, {})
        await sink.flush()
        assert ch.rows(query) == [("PV-e1",), ("PV-e2",)]
        await sink.add(voided, {})
        await sink.flush()
        assert ch.rows(query) == [("PV-e2",)]
        await sink.add({PARCEL_EVENTS: [event_row(event, version=1, deleted=False)]}, {})
        await sink.flush()
        assert ch.rows(query) == [("PV-e2",)]
        ch.client.command(f"OPTIMIZE TABLE {ch.database}.parcel_events FINAL")
        assert ch.rows(query) == [("PV-e2",)]


async def test_parcel_with_no_events_left_leaves_parcel_state(ch: ClickHouseTest) -> None:
    sink = ClickHouseSink(ch.client, database=ch.database, batch_rows=10, flush_s=60)
    async with sink:
        await sink.add(
            {PARCEL_STATE: [status_row(status("PX", 1)), status_row(status("PY", 1))]}, {}
        )
        await sink.add({PARCEL_STATE: [state_tombstone_row("PX", version=2, updated_at=T0)]}, {})
        await sink.flush()
    assert ch.rows(f"SELECT parcel_id FROM {ch.database}.parcel_state FINAL") == [("PY",)]


class LostAckSink(ClickHouseSink):
    """ClickHouse down for ``down`` attempts, then a few inserts whose reply is lost."""

    def __init__(self, *args: Any, down: int, lost_acks: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down, self.lost_acks, self.attempts = down, lost_acks, 0

    async def write(self, batch: Batch) -> None:
        self.attempts += 1
        if self.attempts <= self.down:
            raise ConnectionError("connection refused")
        await super().write(batch)
        if self.attempts <= self.down + self.lost_acks:
            raise TimeoutError("read timed out after the insert")


async def test_failure_injection_against_chdb(ch: ClickHouseTest) -> None:
    db = ch.database
    stop_merges(ch)
    checked: list[int] = []

    def committed(offsets: dict[Hashable, int]) -> None:
        # Kafka offset n carries event P<n % 7>-e<n>: all up to the committed one exist.
        upto = offsets["scans-0"]
        present = ch.scalar(
            f"SELECT count() FROM {db}.parcel_events"
            " WHERE toUInt32(splitByChar('e', event_id)[2]) <= {u:UInt32}",
            u=upto,
        )
        assert present == upto + 1
        checked.append(upto)

    sink = LostAckSink(
        ch.client,
        database=db,
        down=3,
        lost_acks=2,
        batch_rows=8,
        flush_s=60,
        max_pending_batches=2,
        on_committed=committed,
        **FAST,
    )
    async with sink:
        for n in range(60):
            ev = scan(f"P{n % 7}", f"P{n % 7}-e{n}", T0 + n, Scan.PICKED_UP)
            await sink.add(
                {PARCEL_EVENTS: [event_row(ev, version=n + 1, deleted=False)]}, {"scans-0": n}
            )
        await asyncio.wait_for(sink.flush(), 30)
    assert checked == sorted(checked) and checked[-1] == 59
    assert ch.scalar(f"SELECT count() FROM {db}.parcel_events FINAL") == 60
    # Re-sent batches were deduplicated by their token: no stored copies at all.
    assert ch.scalar(f"SELECT count() FROM {db}.parcel_events") == 60


def test_shared_client_from_threads(ch: ClickHouseTest) -> None:
    client = ch.client
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for j in range(10):
                ev = scan(f"T{k}", f"T{k}-e{j}", T0 + j, Scan.PICKED_UP)
                client.insert(
                    PARCEL_EVENTS,
                    [event_row(ev, version=j + 1, deleted=False)],
                    column_names=list(
                        __import__("streams.clickhouse.rows", fromlist=["x"]).EVENT_COLUMNS
                    ),
                    database=ch.database,
                )
                client.query(f"SELECT count() FROM {ch.database}.parcel_events")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert ch.scalar(f"SELECT count() FROM {ch.database}.parcel_events FINAL") == 40
