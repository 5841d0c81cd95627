"""`trackbone simulate --rate` against the real broker: the simulated feed, paced, as Avro."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from load.simulator import GroundTruth, Scenario, simulate
from projections.events import Event
from streams.avro import decode_event, topic_base_for
from streams.cli import main
from streams.settings import Topics
from tests.harness import consume


async def test_simulate_produces_the_arrival_sequence_paced(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = unique_name("sim") + "."
    parcels, seed, rate = 60, 9, 1500.0
    expected = [item.event for item in simulate(Scenario(parcels=parcels, seed=seed))]
    truth = tmp_path / "truth.jsonl"
    monkeypatch.setenv("TRACKBONE_KAFKA_BOOTSTRAP", kafka_bootstrap)

    started = time.monotonic()
    code = await asyncio.to_thread(
        main,
        [
            "simulate",
            "--parcels",
            str(parcels),
            "--seed",
            str(seed),
            "--rate",
            str(rate),
            "--topic-prefix",
            prefix,
            "--truth",
            str(truth),
            "--quiet",
        ],
    )
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"sent: {len(expected)} to {kafka_bootstrap} (0 failed)" in out
    # Paced: the feed cannot finish much faster than events / rate.
    assert elapsed >= 0.8 * len(expected) / rate

    topics = Topics(prefix)
    records = await consume(
        kafka_bootstrap, list(topics.inputs), expected=len(expected), timeout_s=90.0
    )
    assert len(records) == len(expected)
    got: Counter[Event] = Counter()
    per_partition_order: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
    for record in records:
        event = decode_event(record.value)
        assert record.key == event.parcel_id.encode()
        assert record.topic == topics.name(topic_base_for(event))
        got[event] += 1
        per_partition_order[(record.topic, record.partition)].append(
            (event.parcel_id, event.event_id)
        )
    assert got == Counter(expected)  # duplicates included, identical content
    # Within a topic-partition, records keep the simulator's arrival order.
    for (topic, _), seen in per_partition_order.items():
        keys = set(seen)
        wanted = [
            (e.parcel_id, e.event_id)
            for e in expected
            if topics.name(topic_base_for(e)) == topic and (e.parcel_id, e.event_id) in keys
        ]
        assert seen == wanted

    truths = [GroundTruth.from_json(orjson.loads(x)) for x in truth.read_bytes().splitlines()]
    assert len(truths) == parcels
