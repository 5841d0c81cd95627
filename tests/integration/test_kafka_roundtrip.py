"""`trackbone produce` against the real broker: Avro in, the same events out, keyed by parcel."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from projections.events import Event
from projections.jsonform import parse_event
from streams.avro import decode_event, topic_base_for
from streams.cli import main
from streams.kafka_io import ensure_topics
from streams.settings import Topics
from tests.harness import consume

BASE_MS = 1_794_355_200_000  # 2026-11-11T00:00:00Z


def _common(kind: str, pid: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": f"{pid}-e{n}",
        "parcel_id": pid,
        "event_time": BASE_MS + n * 60_000,
        "tz_offset_minutes": 480,
        "source": "carrier-a",
        "location": {"facility_id": "CN-HGH-1", "country": "CN", "city": "Hangzhou"},
        **fields,
    }


def valid_events(parcels: int) -> list[dict[str, Any]]:
    """Every event type, several parcels, ISO and epoch times, optional fields absent."""
    out: list[dict[str, Any]] = []
    for i in range(parcels):
        pid = f"RT{i:04d}-CN"
        out.append(
            _common(
                "ParcelRegistered",
                pid,
                0,
                merchant_id="m-1",
                origin={"country": "CN", "city": "Hangzhou"},
                destination={"country": "ES", "city": None},
                service="STANDARD",
                promised_hours=None,
            )
        )
        scan = _common("ParcelScanned", pid, 1, scan="PICKED_UP", raw_code="P01")
        scan["event_time"] = "2026-11-11T09:30:00.123456+08:00"  # micros are cut to millis
        out.append(scan)
        handoff = _common("ParcelHandedOver", pid, 2, from_party="carrier-a", to_party="air-b")
        del handoff["location"], handoff["tz_offset_minutes"]
        out.append(handoff)
        out.append(
            _common(
                "CustomsStatusRecorded",
                pid,
                3,
                direction="EXPORT",
                status="HELD",
                reason="documents",
            )
        )
        out.append(
            _common("EventVoided", pid, 4, voided_event_id=f"{pid}-e1", reason="DID_NOT_OCCUR")
        )
    return out


def write_input(path: Path, events: list[dict[str, Any]]) -> dict[int, str]:
    """Write the events with broken lines mixed in; return {line number: expected reason}."""
    lines = [orjson.dumps(e).decode() for e in events]
    bad_id = dict(events[0], parcel_id="no spaces allowed", event_id="bad-1")
    no_time = {k: v for k, v in events[1].items() if k != "event_time"}
    bad = {
        3: ("{not json", "invalid JSON"),
        7: (orjson.dumps(bad_id).decode(), "parcel_id"),
        12: (orjson.dumps(no_time).decode(), "event_time"),
        15: (orjson.dumps({"type": "ParcelTeleported"}).decode(), "type"),
    }
    for number in sorted(bad):
        lines.insert(number - 1, bad[number][0])
    lines.insert(20, "")  # blank lines are skipped, not rejected
    path.write_text("\n".join(lines) + "\n")
    return {n: reason for n, (_, reason) in bad.items()}


async def describe(bootstrap: str, topics: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Partition counts and cleanup policies of the topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        meta = await admin.describe_topics(topics)
        counts = {t["topic"]: len(t["partitions"]) for t in meta}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"cleanup.policy": None}) for t in topics]
        )
        policies = {}
        for response in responses:
            for resource in response.resources:
                name, entries = resource[3], resource[4]
                policies[name] = next(e[1] for e in entries if e[0] == "cleanup.policy")
        return counts, policies
    finally:
        await admin.close()


async def test_produce_roundtrips_avro_events_keyed_by_parcel(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = unique_name("rt") + "."
    events = valid_events(parcels=12)
    path = tmp_path / "events.jsonl"
    bad_lines = write_input(path, events)
    monkeypatch.setenv("TRACKBONE_KAFKA_BOOTSTRAP", kafka_bootstrap)

    code = await asyncio.to_thread(
        main, ["produce", "--input", str(path), "--topic-prefix", prefix]
    )
    out, err = capsys.readouterr()

    assert code == 0, err
    total = len(events) + len(bad_lines) + 1  # and one blank line
    assert f"sent {len(events)}, rejected {len(bad_lines)} (of {total} lines read)" in out
    assert kafka_bootstrap in out
    reported = [line for line in err.splitlines() if line.startswith("line ")]
    assert len(reported) == len(bad_lines), err
    for number, reason in bad_lines.items():
        assert any(r.startswith(f"line {number}: ") and reason in r for r in reported), (
            number,
            err,
        )
    # `trackbone fold` counts the lines of the same file the same way
    assert main(["fold", "--input", str(path)]) == 0
    assert f"trackbone fold: {total} lines read" in capsys.readouterr().err

    topics = Topics(prefix)
    records = await consume(kafka_bootstrap, list(topics.inputs), expected=len(events))
    assert len(records) == len(events)

    parsed = {e.event_id: e for e in map(parse_event, events)}
    got: dict[str, Event] = {}
    partitions_by_parcel: dict[str, set[int]] = defaultdict(set)
    for record in records:
        event = decode_event(record.value)
        assert record.key == event.parcel_id.encode()
        assert record.topic == topics.name(topic_base_for(event))
        partitions_by_parcel[event.parcel_id].add(record.partition)
        got[event.event_id] = event
    assert got == parsed
    # one partitioner for every topic: a parcel's events share a partition number
    assert all(len(p) == 1 for p in partitions_by_parcel.values())
    assert len({p for ps in partitions_by_parcel.values() for p in ps}) > 1

    all_topics = [
        *topics.inputs,
        topics.parcel_status,
        topics.milestones,
        topics.alerts,
        topics.dead_letter,
    ]
    counts, policies = await describe(kafka_bootstrap, all_topics)
    assert counts == dict.fromkeys(all_topics, 8)
    assert policies[topics.parcel_status] == "compact"
    assert {policies[t] for t in all_topics if t != topics.parcel_status} == {"delete"}


async def test_ensure_topics_is_idempotent(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    plain, compacted = unique_name("plain"), unique_name("compacted")
    await ensure_topics(kafka_bootstrap, [plain], 3, compacted=[compacted])
    await ensure_topics(kafka_bootstrap, [plain, compacted], 5, compacted=[compacted])
    counts, policies = await describe(kafka_bootstrap, [plain, compacted])
    assert counts == {plain: 3, compacted: 3}  # existing topics are left alone
    assert policies == {plain: "delete", compacted: "compact"}


def test_produce_fails_without_kafka(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(orjson.dumps(valid_events(1)[0]).decode() + "\n")
    closed_port = "127.0.0.1:1"
    code = main(["produce", "--input", str(path), "--bootstrap", closed_port])
    assert code == 5  # KafkaUnreachableError
    assert "Kafka did not answer at 127.0.0.1:1" in capsys.readouterr().err


def test_produce_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["produce", "--input", str(tmp_path / "nope.jsonl"), "--bootstrap", "x:1"])
    assert code == 3  # InputFileError, reported before Kafka is tried
    assert "nope.jsonl" in capsys.readouterr().err
