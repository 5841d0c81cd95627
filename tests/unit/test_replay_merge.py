"""Replay's merge order does not depend on how the topic partitions are fetched in chunks."""

from __future__ import annotations

from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.replay import PartitionMerge


class Rec(NamedTuple):
    offset: int
    timestamp: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


logs = st.lists(st.lists(st.integers(0, 30), max_size=25), min_size=1, max_size=5)


def expected_order(timestamps: list[list[int]]) -> list[tuple[int, int]]:
    items = []
    for topic, stamps in enumerate(timestamps):
        running = -1
        for offset, ts in enumerate(stamps):
            running = max(running, ts)
            items.append((running, topic, offset))
    return [(topic, offset) for _, topic, offset in sorted(items)]


@settings(max_examples=100, deadline=None)
@given(logs, st.data())
def test_any_chunking_releases_the_same_order(timestamps: list[list[int]], data) -> None:
    merge = PartitionMerge(len(timestamps))
    positions = [0] * len(timestamps)
    released: list[tuple[int, int]] = []
    for topic, stamps in enumerate(timestamps):
        if not stamps:
            merge.finish(topic)
    while any(p < len(s) for p, s in zip(positions, timestamps, strict=True)):
        open_topics = [t for t, s in enumerate(timestamps) if positions[t] < len(s)]
        topic = data.draw(st.sampled_from(open_topics))
        size = data.draw(st.integers(1, 6))
        start = positions[topic]
        chunk = [
            Rec(o, timestamps[topic][o], b"k", b"v")
            for o in range(start, min(start + size, len(timestamps[topic])))
        ]
        end = len(timestamps[topic])
        merge.add(topic, chunk, end)
        positions[topic] += len(chunk)
        if positions[topic] == end:
            merge.finish(topic)
        released += [(item[1], item[2]) for item in merge.release()]
    released += [(item[1], item[2]) for item in merge.release()]
    assert released == expected_order(timestamps)
    assert merge.pending == 0


def test_records_at_or_past_the_end_offset_are_ignored() -> None:
    merge = PartitionMerge(1)
    merge.add(0, [Rec(0, 5, b"k", b"a"), Rec(1, 6, b"k", b"b"), Rec(2, 7, b"k", b"c")], end=2)
    merge.finish(0)
    assert [item[2] for item in merge.release()] == [0, 1]
