"""The stuck index: parcels by bucket of their last event, in small pages, checked by bucket."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

from projections import core
from projections.events import Event, Scan
from streams import avro
from streams.processor import BatchInfo, BatchProcessor, OutputTopics
from streams.stuck import BUCKET_MS, PAGE_SIZE, StuckIndex, buckets_key
from tests.unit.test_core import KEY, PID, run
from tests.unit.test_fold_rules import reg, scan

HOUR_MIN = 60


class CountingStore(MutableMapping[bytes, bytes]):
    """A dict that counts reads, as a check must not read the buckets it does not take."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.reads = 0

    def __getitem__(self, key: bytes) -> bytes:
        self.reads += 1
        return self.data[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def state_after(*events):  # type: ignore[no-untyped-def]
    return run(list(events)).changes[KEY].stored.state


def test_a_parcel_is_listed_in_the_bucket_of_its_last_event_and_taken_when_due() -> None:
    store: dict[bytes, bytes] = {}
    index = StuckIndex(store)
    registered = state_after(reg("r1", 0))
    moved = state_after(reg("r1", 0), scan("s1", 24 * HOUR_MIN, Scan.PICKED_UP))
    index.moves(3, [(KEY, None, registered)])
    index.moves(3, [(KEY, registered, moved)])  # a new bucket; the old entry stays
    assert index.take_due(moved.last_event_time, [3])[0].members == {
        PID: registered.last_event_time
    }
    due = index.take_due(moved.last_event_time + BUCKET_MS, [3])
    assert [(d.partition, d.bucket, d.members) for d in due] == [
        (3, moved.last_event_time // BUCKET_MS, {PID: moved.last_event_time})
    ]
    assert set(store) == {buckets_key(3)}  # pages and counts deleted
    delivered = state_after(reg("r1", 0), scan("s1", 60 * 30, Scan.DELIVERED))
    assert index.moves(3, [(KEY, moved, delivered)]) == []  # delivered parcels cannot be stuck


def test_a_later_event_in_the_same_bucket_leaves_the_stuck_index_alone() -> None:
    index = StuckIndex({})
    registered = state_after(reg("r1", 0))
    later = state_after(reg("r1", 0), scan("s1", 5, Scan.PICKED_UP))
    assert registered.last_event_time // BUCKET_MS == later.last_event_time // BUCKET_MS
    index.moves(3, [(KEY, None, registered)])
    assert index.moves(3, [(KEY, registered, later)]) == []


def test_a_crowded_bucket_is_written_in_small_pages_never_rewritten() -> None:
    # One JSON value per bucket grew with the parcels in it: ~33,000 parcels in one
    # slice of one partition passed the broker's 1 MiB record limit, and every batch
    # rewrote the whole bucket.
    index = StuckIndex({})
    registered = state_after(reg("r1", 0))
    since = registered.last_event_time
    batches = [[(b"P%07d" % (b * 300 + i), None, registered) for i in range(300)] for b in range(9)]
    batches.append([(b"Q%07d" % i, None, registered) for i in range(1300)])
    largest = 0
    for batch in batches:
        written = index.moves(0, batch)
        pages = [v for k, v in written if k.count(b":") == 2]
        assert all(v is not None and len(orjson.loads(v)) <= PAGE_SIZE for v in pages)
        assert len(pages) == -(-len(batch) // PAGE_SIZE)  # only this batch's parcels
        largest = max(largest, *(len(v or b"") for _, v in written))
    assert largest < 64 * 1024
    (due,) = index.take_due(since + BUCKET_MS, [0])
    assert len(due.members) == 9 * 300 + 1300


def test_a_check_reads_only_the_buckets_it_takes() -> None:
    store = CountingStore()
    index = StuckIndex(store)
    states = [state_after(reg("r1", 0), scan("s1", q * 15, Scan.PICKED_UP)) for q in range(192)]
    first = states[0].last_event_time // BUCKET_MS
    assert [s.last_event_time // BUCKET_MS - first for s in states] == list(range(192))
    for q, state in enumerate(states):  # 192 buckets (48 hours) of 20 parcels
        index.moves(1, [(b"H%03d-%02d" % (q, i), None, state) for i in range(20)])
    index.forget()  # a fresh assignment reads the bucket list once
    store.reads = 0
    due = index.take_due((first + 2) * BUCKET_MS, [1])  # only the first two are due
    assert [(d.bucket - first, len(d.members)) for d in due] == [(0, 20), (1, 20)]
    assert store.reads == 1 + 2 * 2  # the list, then a count and a page per due bucket
    assert len(store) == 1 + 190 * 2  # the list, and a count and a page per bucket left


def processor() -> BatchProcessor:
    topics = OutputTopics(
        inputs=("scans", "registrations"),
        changelog="state-changelog",
        stuck_changelog="stuck-changelog",
        status="status",
        milestones="milestones",
        alerts="alerts",
        dead_letter="dead-letter",
        parcel_events="parcel-events",
        observations="observations",
    )
    return BatchProcessor(topics, core.Rules(), {}, StuckIndex({}), None)


def folded_twice() -> tuple[BatchProcessor, int]:
    """A processor that folded a registration, then a scan three hours later (two buckets)."""
    work = processor()
    events: list[Event] = [reg("r1", 0), scan("s1", 3 * HOUR_MIN, Scan.PICKED_UP)]
    for offset, event in enumerate(events):
        record = core.Record(KEY, avro.encode_event(event), offset)
        work.process(BatchInfo("scans", 0, offset), [record])
    last = work.load(KEY).state
    assert last is not None and last.last_event_time is not None
    return work, last.last_event_time


def alerts_in(out: list[Any]) -> list[tuple[str, str]]:
    return [
        (a["alert"], a["parcel_id"]) for a in (orjson.loads(r[3]) for r in out if r[0] == "alerts")
    ]


def test_a_parcel_in_two_due_buckets_is_alerted_once_from_its_current_one() -> None:
    work, last = folded_twice()
    later = last + 50 * 3_600_000
    out = work.stuck_alerts(later, later, [0])  # both buckets are due
    assert alerts_in(out) == [("PARCEL_STUCK", PID)]
    assert {r[0] for r in out} == {"alerts", "stuck-changelog"}  # and the index's deletions
    assert work.stuck_alerts(later, later, [0]) == []  # once per silence


def test_a_parcel_whose_old_bucket_is_due_is_not_alerted_from_it() -> None:
    work, last = folded_twice()
    early = last - 1  # its first bucket is due, its last event is not silent long enough
    assert alerts_in(work.stuck_alerts(early, early, [0])) == []
