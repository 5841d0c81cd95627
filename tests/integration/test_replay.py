"""Batch replay rebuilds exactly the state the per-event paths build: fold CLI and worker."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from projections.events import Event, Location, ParcelHandedOver, ParcelScanned, Scan
from projections.fold import Outcome, ParcelState, state_to_json, step
from projections.jsonform import parse_event
from streams.avro import STATUS_ETA_FIELDS, decode_status, encode_event, status_from_state
from streams.commands.produce import produce_file
from streams.kafka_io import BatchSender, ensure_contract_topics, make_producer
from streams.replay import replay
from streams.settings import Settings
from tests import mixed_input
from tests.harness import WorkerProcess, produce_raw, read_topic, worker_env
from tests.integration.test_worker_end_to_end import expected_fold

pytestmark = pytest.mark.integration


def step_in_file_order(lines: list[bytes]) -> dict[str, ParcelState]:
    """The stream's per-event path without Kafka: every line `produce` accepts, in order."""
    states: dict[str, ParcelState] = {}
    for line in lines:
        try:
            event = parse_event(orjson.loads(line))
            encode_event(event)
        except ValueError:  # what `produce` rejects (invalid JSON, InvalidEvent, EncodeError)
            continue
        result = step(states.get(event.parcel_id), event)
        if result.outcome is Outcome.APPLIED:
            assert result.state is not None
            states[event.parcel_id] = result.state
    return states


async def test_replay_equals_fold_of_the_same_input(
    kafka_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    mixed = mixed_input.build(parcels=80, seed=11, tag="RPL")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    with path.open("rb") as stream:
        produced = await produce_file(stream, kafka_settings, kafka_bootstrap)
    assert produced.rejected == mixed.invalid_lines
    assert produced.failed == 0
    topics = kafka_settings.topics
    garbage = [
        (topics.scans, b"RPL-00001", b"\x00\x01garbage"),
        (topics.customs, None, b""),
        # valid bytes under the wrong key: the worker dead-letters these too
        (topics.scans, b"RPL-00002", encode_event(parse_event(orjson.loads(mixed.lines[0])))),
    ]
    await produce_raw(kafka_bootstrap, garbage)

    result = await replay(kafka_settings, kafka_bootstrap)

    expected = step_in_file_order(mixed.lines)
    assert result.states == expected  # whole states, compact logs and versions included
    cli = expected_fold(path)
    assert {pid: state_to_json(s) for pid, s in result.visible().items()} == cli
    assert result.records == produced.sent + len(garbage)
    assert result.duplicates == mixed.duplicates
    assert result.dead == len(garbage) + mixed.conflicts
    assert result.dead_reasons == {"invalid": len(garbage), "conflict": mixed.conflicts}
    assert result.applied == sum(s.version for s in expected.values())
    assert sum(sum(p.values()) for p in result.end_offsets.values()) == result.records


def _scan(pid: str, eid: str, t: int) -> ParcelScanned:
    where = Location(country="CN", facility_id="CN-HGH-1", city="Hangzhou")
    return ParcelScanned(
        event_id=eid,
        parcel_id=pid,
        event_time=t,
        tz_offset_minutes=480,
        source="c",
        location=where,
        scan=Scan.PICKED_UP,
        raw_code=None,
    )


def _handover(pid: str, eid: str, t: int) -> ParcelHandedOver:
    return ParcelHandedOver(
        event_id=eid,
        parcel_id=pid,
        event_time=t,
        tz_offset_minutes=480,
        source="c",
        location=None,
        from_party="a",
        to_party="b",
    )


async def _send_in_turn(settings: Settings, bootstrap: str, events: list[Event]) -> None:
    """One acknowledged send at a time, so Kafka timestamps follow the list order."""
    producer = make_producer(bootstrap, linger_ms=0)
    await producer.start()
    try:
        for event in events:
            topic = (
                settings.topics.scans
                if isinstance(event, ParcelScanned)
                else (settings.topics.handoffs)
            )
            sender = BatchSender(producer)
            await sender.send(topic, event.parcel_id.encode(), encode_event(event))
            await sender.flush()
            assert sender.failed == 0
    finally:
        await producer.stop()


async def test_cross_topic_conflict_keeps_the_first_produced(
    kafka_settings: Settings, kafka_bootstrap: str
) -> None:
    """The one arrival-dependent case: the same event_id on two topics with other content."""
    t = mixed_input.BASE_MS
    await ensure_contract_topics(kafka_settings, kafka_bootstrap)
    # Parcel A: the scan goes first; parcel B: the hand-over goes first.
    await _send_in_turn(
        kafka_settings,
        kafka_bootstrap,
        [
            _scan("XA", "dup-1", t),
            _handover("XB", "dup-1", t),
            _handover("XA", "dup-1", t + 1),
            _scan("XB", "dup-1", t + 1),
        ],
    )
    first = await replay(kafka_settings, kafka_bootstrap)
    assert type(first.states["XA"].timeline()[0]) is ParcelScanned
    assert type(first.states["XB"].timeline()[0]) is ParcelHandedOver
    assert first.dead_reasons == {"conflict": 2}
    again = await replay(kafka_settings, kafka_bootstrap)
    assert again.states == first.states


async def test_replay_equals_worker_statuses(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("rplw") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"))
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    mixed = mixed_input.build(parcels=60, seed=5, tag="RPW")
    produced = await produce_file(io.BytesIO(b"\n".join(mixed.lines)), settings, kafka_bootstrap)
    assert produced.failed == 0

    # The worker's ETA model is not replay's concern, and it emits a status only when a
    # visible field changes: records after the last change (an event arriving after its
    # void, a void of an unknown id) raise the state's version but emit nothing, and
    # which record is the last change depends on how the topics interleave.
    ignored = {*STATUS_ETA_FIELDS, "version"}

    def without_eta(status: dict) -> dict:
        return {k: v for k, v in status.items() if k not in ignored} | {"v": status["version"]}

    states = (await replay(settings, kafka_bootstrap)).visible()
    expected = {pid: without_eta(status_from_state(s)) for pid, s in states.items()}

    def same(got: dict, want: dict) -> bool:
        return {**got, "v": 0} == {**want, "v": 0} and got["v"] <= want["v"]

    def latest(records) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for rec in records:
            if rec.value is None:  # tombstone: every event of the parcel was voided
                out.pop(rec.key.decode(), None)
                continue
            status = without_eta(decode_status(rec.value))
            prev = out.get(status["parcel_id"])
            if prev is None or status["v"] >= prev["v"]:
                out[status["parcel_id"]] = status
        return out

    def all_same(got: dict[str, dict]) -> bool:
        return got.keys() == expected.keys() and all(same(got[p], expected[p]) for p in got)

    worker = WorkerProcess(env, tmp_path / "w").start()
    try:
        records = await read_topic(
            kafka_bootstrap,
            settings.topics.parcel_status,
            done=lambda recs: all_same(latest(recs)),
            timeout=120,
        )
    finally:
        worker.stop()
    got = latest(records)
    assert got.keys() == expected.keys()
    wrong = [pid for pid in expected if not same(got[pid], expected[pid])]
    assert not wrong, [
        (p, {k: (got[p][k], expected[p][k]) for k in expected[p] if got[p][k] != expected[p][k]})
        for p in wrong[:5]
    ]
