"""An index of parcels by last-event time, so a stuck check touches only the silent ones.

The index is a Faust table co-partitioned with the parcel states (so it moves and
recovers with them): key ``partition:bucket`` (a `BUCKET_MS` slice of event time),
value the parcels whose last event falls in that slice and that could still become
stuck (visible, not delivered nor returned), as ``{parcel_id: last_event_time}``
(the time it entered the bucket: a later event in the same slice leaves the bucket
alone, since the check reads each parcel's own state anyway). The agent moves
parcels between buckets as it stores their states (one write per touched bucket per
batch); the check reads only buckets wholly older than the
threshold, alerts their parcels and deletes those buckets. A parcel is therefore
reported once per silence, between `stuck_after` and `stuck_after + BUCKET_MS`
after its last event, and the index never holds more than the live parcels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, MutableMapping

import orjson

from projections import core
from projections.fold import ParcelState

BUCKET_MS = 15 * 60 * 1000


def bucket_key(partition: int, since: int) -> bytes:
    return b"%03d:%013d" % (partition, since // BUCKET_MS)


def parse_key(key: bytes) -> tuple[int, int]:
    partition, bucket = key.split(b":")
    return int(partition), int(bucket)


class StuckIndex:
    """Moves parcels between buckets; finds the buckets due at a watermark."""

    def __init__(self, store: MutableMapping[bytes, bytes]) -> None:
        self.store = store

    def moves(
        self,
        partition: int,
        changes: Iterable[tuple[bytes, ParcelState | None, ParcelState | None]],
    ) -> list[tuple[bytes, bytes | None]]:
        """Apply (parcel key, before, after) to the index; the written (key, value) pairs.

        Must run while the batch of ``partition`` is the current stream event (Faust's
        RocksDB store picks the partition's database from it).
        """
        edits: dict[bytes, list[tuple[str, int | None]]] = defaultdict(list)
        for key, before, after in changes:
            old = core.stuck_since(before)
            new = core.stuck_since(after)
            if old == new or (
                old is not None and new is not None and old // BUCKET_MS == new // BUCKET_MS
            ):
                continue  # same bucket: rewriting it would change nothing the check reads
            parcel_id = key.decode()
            if old is not None:
                edits[bucket_key(partition, old)].append((parcel_id, None))
            if new is not None:
                edits[bucket_key(partition, new)].append((parcel_id, new))
        written: list[tuple[bytes, bytes | None]] = []
        store = self.store
        for bucket, bucket_edits in edits.items():
            raw = store.get(bucket)
            members: dict[str, int] = orjson.loads(raw) if raw else {}
            for parcel_id, since in bucket_edits:
                if since is None:
                    members.pop(parcel_id, None)
                else:
                    members[parcel_id] = since
            if members:
                value = orjson.dumps(members)
                store[bucket] = value
                written.append((bucket, value))
            elif raw is not None:
                del store[bucket]
                written.append((bucket, None))
        return written

    def take_due(self, threshold: int) -> list[tuple[int, bytes, dict[str, int]]]:
        """Remove and return (partition, key, members) of buckets wholly before ``threshold``."""
        due: list[tuple[int, bytes, dict[str, int]]] = []
        limit = threshold // BUCKET_MS  # buckets below this end at or before the threshold
        store = self.store
        for key in list(store.keys()):
            partition, bucket = parse_key(key)
            if bucket >= limit:
                continue
            raw = store.get(key)
            del store[key]
            if raw:
                due.append((partition, key, orjson.loads(raw)))
        return due
