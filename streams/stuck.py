"""An index of parcels by last-event time, so a stuck check touches only the silent ones.

The index is a Faust table co-partitioned with the parcel states (so it moves and
recovers with them). Per partition it holds time buckets (a `BUCKET_MS` slice of
event time): a bucket lists the parcels whose last event fell in it, as
``{parcel_id: last_event_time}``, in pages of at most `PAGE_SIZE` parcels, so that a
write and its changelog record stay small however many parcels a bucket holds (one
JSON value per bucket grew with the network: at ~33,000 parcels in one slice of one
partition its changelog record passed the broker's 1 MiB limit, and every batch
rewrote the whole bucket). Keys:

- ``ppp:buckets``: the partition's buckets, a JSON list (taken ones are dropped from it
  the next time a bucket is added);
- ``ppp:bbbbbbbbbbbbb``: a bucket's page count;
- ``ppp:bbbbbbbbbbbbb:kkkkkk``: one page.

The agent appends a parcel to the bucket of its new last event when that leaves the
bucket it was in: each batch writes one new page per bucket it adds to (its own
parcels only) and the bucket's page count, and never rewrites a page. The entry in
the old bucket stays and is skipped by the check, which reads each parcel's own state
anyway. The check takes only the buckets wholly older than the threshold, alerts each
parcel from the bucket of its current last event only, and deletes them. A parcel is
therefore reported once per silence, between `stuck_after` and `stuck_after +
BUCKET_MS` after its last event. The index holds one entry per bucket a parcel passed
through within the stuck window: it grows with the window, not with the parcels ever
seen.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

import orjson

from projections import core
from projections.fold import ParcelState

BUCKET_MS = 15 * 60 * 1000
PAGE_SIZE = 512
"""Parcels per page at most (a page of one batch's parcels, ~20 KB of JSON at most)."""


def bucket_key(partition: int, bucket: int) -> bytes:
    return b"%03d:%013d" % (partition, bucket)


def page_key(partition: int, bucket: int, page: int) -> bytes:
    return b"%03d:%013d:%06d" % (partition, bucket, page)


def buckets_key(partition: int) -> bytes:
    return b"%03d:buckets" % partition


@dataclass(frozen=True, slots=True)
class DueBucket:
    """A bucket the check took: its parcels and the index keys it deleted."""

    partition: int
    bucket: int
    members: dict[str, int]
    deleted: list[bytes]


class StuckIndex:
    """Appends parcels to buckets; takes the buckets due at a threshold."""

    def __init__(self, store: MutableMapping[bytes, bytes]) -> None:
        self.store = store
        self._buckets: dict[int, set[int]] = {}
        """Per partition: its buckets, read from the store once per assignment."""

    def forget(self) -> None:
        """Partitions moved: another worker may have changed their buckets."""
        self._buckets.clear()

    def _known(self, partition: int) -> set[int]:
        known = self._buckets.get(partition)
        if known is None:
            raw = self.store.get(buckets_key(partition))
            known = self._buckets[partition] = set(orjson.loads(raw)) if raw else set()
        return known

    def moves(
        self,
        partition: int,
        changes: Iterable[tuple[bytes, ParcelState | None, ParcelState | None]],
    ) -> list[tuple[bytes, bytes | None]]:
        """Apply (parcel key, before, after) to the index; the written (key, value) pairs.

        Must run while the batch of ``partition`` is the current stream event (Faust's
        RocksDB store picks the partition's database from it).
        """
        additions: dict[int, dict[str, int]] = {}
        for key, before, after in changes:
            new = core.stuck_since(after)
            if new is None:
                continue  # delivered or returned: its old entry is skipped by the check
            old = core.stuck_since(before)
            if old is not None and old // BUCKET_MS == new // BUCKET_MS:
                continue  # same bucket: the check reads the parcel's own state anyway
            additions.setdefault(new // BUCKET_MS, {})[key.decode()] = new
        written: list[tuple[bytes, bytes | None]] = []
        if not additions:
            return written
        known = self._known(partition)
        new_bucket = False
        for bucket, members in sorted(additions.items()):
            written += self._append(partition, bucket, members)
            if bucket not in known:
                known.add(bucket)
                new_bucket = True
        if new_bucket:
            key, value = buckets_key(partition), orjson.dumps(sorted(known))
            self.store[key] = value
            written.append((key, value))
        return written

    def _append(
        self, partition: int, bucket: int, members: dict[str, int]
    ) -> list[tuple[bytes, bytes | None]]:
        """New pages for ``members``: written once, never read back until the check."""
        store = self.store
        count_key = bucket_key(partition, bucket)
        raw = store.get(count_key)
        pages = int(raw) if raw else 0
        written: list[tuple[bytes, bytes | None]] = []
        items = list(members.items())
        for start in range(0, len(items), PAGE_SIZE):
            key = page_key(partition, bucket, pages)
            value = orjson.dumps(dict(items[start : start + PAGE_SIZE]))
            store[key] = value
            written.append((key, value))
            pages += 1
        count = b"%d" % pages
        store[count_key] = count
        written.append((count_key, count))
        return written

    def take_due(self, threshold: int, partitions: Iterable[int]) -> list[DueBucket]:
        """Remove and return the buckets of ``partitions`` wholly before ``threshold``.

        Reads only those buckets (their pages), never the rest of the index. Deletes
        only: a timer has no stream event, and Faust's store needs one to write.
        """
        limit = threshold // BUCKET_MS  # buckets below this end at or before the threshold
        store = self.store
        due: list[DueBucket] = []
        for partition in partitions:
            known = self._known(partition)
            for bucket in sorted(b for b in known if b < limit):
                known.discard(bucket)
                members: dict[str, int] = {}
                deleted: list[bytes] = []
                key = bucket_key(partition, bucket)
                raw = store.get(key)
                for page in range(int(raw) if raw else 0):
                    pkey = page_key(partition, bucket, page)
                    value = store.get(pkey)
                    if value is not None:
                        members.update(orjson.loads(value))
                        del store[pkey]
                        deleted.append(pkey)
                if raw is not None:
                    del store[key]
                    deleted.append(key)
                due.append(DueBucket(partition, bucket, members, deleted))
        return due
