"""Unit tests for the carrier simulator (load/simulator.py) and `trackbone simulate`."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from load.commands.simulate import TokenBucket
from load.simulator import (
    HOUR,
    GroundTruth,
    Scenario,
    SimEvent,
    SimStats,
    Simulation,
    run,
    truth_path,
    write_jsonl,
)
from projections.events import (
    CustomsStatus,
    CustomsStatusRecorded,
    Event,
    EventVoided,
    ParcelRegistered,
    ParcelScanned,
    Scan,
    VoidReason,
)
from projections.jsonform import event_to_json, parse_event

DEFAULT_N = 2000
Run = tuple[list[SimEvent], list[GroundTruth], SimStats]


@pytest.fixture(scope="module")
def default_run() -> Run:
    return run(Scenario(parcels=DEFAULT_N, seed=11))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- determinism and format ------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    scenario = Scenario(parcels=300, seed=5)
    first = write_jsonl(scenario, tmp_path / "a.jsonl")
    second = write_jsonl(scenario, tmp_path / "b.jsonl")
    other = write_jsonl(replace(scenario, seed=6), tmp_path / "c.jsonl")
    assert _digest(tmp_path / "a.jsonl") == _digest(tmp_path / "b.jsonl")
    assert _digest(tmp_path / "a.truth.jsonl") == _digest(tmp_path / "b.truth.jsonl")
    assert _digest(tmp_path / "a.jsonl") != _digest(tmp_path / "c.jsonl")
    assert first["events"] == second["events"] > 300 * 8
    assert first["events_file"].endswith("a.jsonl")
    assert other["parcels"] == 300


def test_truth_path_sits_next_to_the_events_file() -> None:
    assert truth_path("/x/events.jsonl") == Path("/x/events.truth.jsonl")
    assert truth_path("/x/events.out") == Path("/x/events.out.truth.jsonl")


def test_every_written_line_parses_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    summary = write_jsonl(Scenario(parcels=400, seed=3), path)
    lines = path.read_bytes().splitlines()
    assert len(lines) == summary["events"]
    for line in lines:
        obj = orjson.loads(line)
        event = parse_event(obj)
        assert event_to_json(event) == obj
    truths = [
        GroundTruth.from_json(orjson.loads(x)) for x in truth_path(path).read_bytes().splitlines()
    ]
    assert len(truths) == 400
    assert len({t.parcel_id for t in truths}) == 400


def test_events_parse_after_json_round_trip(default_run: Run) -> None:
    events, _, _ = default_run
    for item in events:
        obj = orjson.loads(orjson.dumps(event_to_json(item.event)))
        assert parse_event(obj) == item.event


def test_scenario_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Scenario(start=datetime(2026, 11, 10, 16, 0))  # noqa: DTZ001


# --- shape of the run --------------------------------------------------------------------------


def test_arrival_order_is_the_yield_order_and_never_precedes_the_event(default_run: Run) -> None:
    events, _, _ = default_run
    arrivals = [item.arrival_ms for item in events]
    assert arrivals == sorted(arrivals)
    assert all(item.arrival_ms >= item.event.event_time for item in events)


def test_lanes_cover_ten_plus_countries_and_domestic(default_run: Run) -> None:
    _, truths, stats = default_run
    countries = Counter(t.destination_country for t in truths)
    assert countries["CN"] > 0.2 * DEFAULT_N
    assert len([c for c in countries if c != "CN"]) >= 10
    assert {t.origin_country for t in truths} == {"CN"}
    assert len({t.origin_city for t in truths}) >= 6
    assert {t.service for t in truths} == {"EXPRESS", "STANDARD", "ECONOMY"}
    assert stats.parcels == len(truths) == DEFAULT_N


def test_local_offsets_follow_the_location(default_run: Run) -> None:
    events, _, _ = default_run
    offsets: dict[str, set[int]] = defaultdict(set)
    for item in events:
        if item.event.location is not None:
            offsets[item.event.location.country].add(item.event.tz_offset_minutes)
    assert offsets["CN"] == {480}
    assert offsets["ES"] == {60}
    assert offsets["GB"] == {0}
    assert offsets["US"] <= {-300, -360, -480}


def test_promises_are_mostly_implicit(default_run: Run) -> None:
    events, _, _ = default_run
    regs = [i.event for i in events if isinstance(i.event, ParcelRegistered)]
    explicit = [e for e in regs if e.promised_hours is not None]
    assert 0 < len(explicit) < 0.2 * len(regs)


def test_duplicates_are_identical_resends(default_run: Run) -> None:
    events, _, stats = default_run
    seen: dict[tuple[str, str], Event] = {}
    repeats = 0
    for item in events:
        key = (item.event.parcel_id, item.event.event_id)
        if key in seen:
            repeats += 1
            assert seen[key] == item.event
        else:
            seen[key] = item.event
    assert repeats == stats.duplicates > 0
    assert sum(1 for i in events if i.kind == "duplicate") == stats.duplicates


# --- realism -------------------------------------------------------------------------------------


def _by_parcel(events: list[SimEvent]) -> dict[str, list[SimEvent]]:
    grouped: dict[str, list[SimEvent]] = defaultdict(list)
    for item in events:
        grouped[item.event.parcel_id].append(item)
    return grouped


def test_realism_features_present(default_run: Run) -> None:
    events, truths, stats = default_run
    evs = [item.event for item in events]
    by_id = {(e.parcel_id, e.event_id): e for e in evs}
    voids = [e for e in evs if isinstance(e, EventVoided)]
    voided_delivered = [
        v
        for v in voids
        if v.reason is VoidReason.DID_NOT_OCCUR
        and isinstance(target := by_id[(v.parcel_id, v.voided_event_id)], ParcelScanned)
        and target.scan is Scan.DELIVERED
    ]
    assert voided_delivered
    assert any(v.reason is VoidReason.INCORRECT_DATA for v in voids)
    customs = Counter(e.status for e in evs if isinstance(e, CustomsStatusRecorded))
    assert customs[CustomsStatus.HELD] > 0
    assert customs[CustomsStatus.REFUSED] > 0
    scans = Counter(e.scan for e in evs if isinstance(e, ParcelScanned))
    for scan in Scan:
        assert scans[scan] > 0, scan
    assert sum(t.returned for t in truths) > 0
    assert sum(t.failed_attempts for t in truths) > 0
    assert stats.missing_scans > 0
    assert stats.late_uploads > 0
    # Out of order: some event arrives after a later-happening event of its parcel.
    out_of_order = 0
    for items in _by_parcel(events).values():
        latest = 0
        for item in items:
            if item.event.event_time < latest:
                out_of_order += 1
            latest = max(latest, item.event.event_time)
    assert out_of_order > 0.005 * len(events)
    # Missing scans: some delivered international parcels have no OUT_FOR_DELIVERY scan.
    with_ofd = {
        e.parcel_id for e in evs if isinstance(e, ParcelScanned) and e.scan is Scan.OUT_FOR_DELIVERY
    }
    delivered = [t.parcel_id for t in truths if t.delivered_at is not None]
    assert any(pid not in with_ofd for pid in delivered)


def test_surge_window_runs_at_about_ten_times_baseline() -> None:
    scenario = Scenario(parcels=3000, seed=2)
    sim = Simulation(scenario)
    times = sim._registration_times()
    start = scenario.start_ms
    in_surge = sum(1 for t in times if t < start + 24 * HOUR)
    after = sum(1 for t in times if start + 24 * HOUR <= t < start + 72 * HOUR)
    ratio = (in_surge / 24) / (after / 48)
    assert 8.5 < ratio < 11.5
    flat = Simulation(replace(scenario, surge=None))._registration_times()
    first_day = sum(1 for t in flat if t < start + 24 * HOUR)
    assert 0.28 < first_day / len(flat) < 0.39


def test_surge_parcels_are_slower_than_baseline(default_run: Run) -> None:
    _, truths, _ = default_run
    start = Scenario().start_ms

    def median_hours(group: list[GroundTruth]) -> float:
        spans = sorted((t.delivered_at - t.registered_at) / HOUR for t in group if t.delivered_at)
        return spans[len(spans) // 2]

    intl = [t for t in truths if not t.domestic]
    surge = [t for t in intl if t.registered_at < start + 24 * HOUR]
    calm = [t for t in intl if t.registered_at >= start + 36 * HOUR]
    assert median_hours(surge) > median_hours(calm)


def test_transit_times_and_on_time_shares_are_plausible(default_run: Run) -> None:
    _, truths, _ = default_run
    for domestic, low, high in ((True, 12, 36), (False, 40, 120)):
        group = [t for t in truths if t.domestic == domestic and t.delivered_at is not None]
        spans = [(t.delivered_at - t.registered_at) / HOUR for t in group if t.delivered_at]
        inside = sum(low <= s <= high for s in spans) / len(spans)
        assert inside > 0.75, (domestic, inside)
        on_time = sum(bool(t.on_time) for t in group) / len(group)
        assert 0.45 < on_time < 0.9, (domestic, on_time)
    by_country: dict[str, list[bool]] = defaultdict(list)
    for t in truths:
        if not t.domestic and t.delivered_at is not None:
            by_country[t.destination_country].append(bool(t.on_time))
    shares = {c: sum(v) / len(v) for c, v in by_country.items() if len(v) > 30}
    assert max(shares.values()) - min(shares.values()) > 0.4  # lane-dependent


# --- ground truth against the events ---------------------------------------------------------


def _effective(items: list[SimEvent]) -> list[Event]:
    events = {item.event.event_id: item.event for item in items}
    voided = {e.voided_event_id for e in events.values() if isinstance(e, EventVoided)}
    return sorted(
        (e for e in events.values() if e.event_id not in voided and not isinstance(e, EventVoided)),
        key=lambda e: (e.event_time, e.event_id),
    )


def test_truth_delivered_at_is_the_last_effective_delivered(default_run: Run) -> None:
    events, truths, _ = default_run
    grouped = _by_parcel(events)
    for truth in truths:
        delivered = [
            e.event_time
            for e in _effective(grouped[truth.parcel_id])
            if isinstance(e, ParcelScanned) and e.scan is Scan.DELIVERED
        ]
        if truth.delivered_at is not None:
            assert delivered and delivered[-1] == truth.delivered_at
            assert not truth.returned
        elif truth.returned:
            assert delivered and delivered[-1] == truth.returned_at
        else:
            assert truth.lost and not delivered
        assert truth.promised_at == truth.registered_at + truth.promised_hours * HOUR
        assert dict(truth.milestones)["REGISTERED"] == truth.registered_at


def test_events_fold_to_the_truth(default_run: Run) -> None:
    fold = pytest.importorskip("projections.fold")
    events, truths, _ = default_run
    states = fold.fold_all(item.event for item in events)
    assert len(states) == len(truths)
    for truth in truths:
        state = states[truth.parcel_id]
        if truth.delivered_at is not None:
            assert state.milestone == "DELIVERED"
            assert state.delivered_at == truth.delivered_at
        elif truth.returned:
            assert state.milestone == "RETURNED"
        if truth.customs_refused:
            assert "CUSTOMS_REFUSED" in state.holds
        assert state.registered
        assert state.destination_country == truth.destination_country
        assert state.promised_at == truth.promised_at


# --- streaming ---------------------------------------------------------------------------------


def test_events_stream_before_all_parcels_exist() -> None:
    sim = Simulation(Scenario(parcels=3000, seed=1))
    stream = sim.events()
    for _ in range(100):
        next(stream)
    assert 0 < sim.stats.parcels < 300


# --- CLI and pacing ------------------------------------------------------------------------------


def test_cli_writes_events_truth_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli import main

    out = tmp_path / "nested" / "sim.jsonl"
    code = main(
        [
            "simulate",
            "--parcels",
            "60",
            "--seed",
            "4",
            "--out",
            str(out),
            "--quiet",
            "--no-surge",
            "--start",
            "2026-06-01T00:00:00+08:00",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "parcels: 60" in text and "duplicates" in text and "returns" in text
    truths = [
        GroundTruth.from_json(orjson.loads(x)) for x in truth_path(out).read_bytes().splitlines()
    ]
    assert len(truths) == 60
    first = min(t.registered_at for t in truths)
    assert first >= int(datetime(2026, 5, 31, 16, tzinfo=UTC).timestamp() * 1000)
    assert len(out.read_bytes().splitlines()) > 60 * 8


def test_cli_needs_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    assert main(["simulate", "--parcels", "5", "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err


def test_token_bucket_paces_to_the_rate() -> None:
    bucket = TokenBucket(rate=100.0, capacity=10.0)
    assert bucket.wait_time(0.0, 10) == 0.0  # the initial burst
    assert bucket.wait_time(0.0, 10) == pytest.approx(0.1)
    # After waiting as told, the bucket is back at zero debt.
    assert bucket.wait_time(0.2, 10) == pytest.approx(0.0, abs=1e-9)
    # Steady state: 1000 tokens take ~10 s.
    clock, total_wait = 1.0, 0.0
    bucket = TokenBucket(rate=100.0, capacity=1.0)
    for _ in range(1000):
        wait = bucket.wait_time(clock, 1)
        clock += wait
        total_wait += wait
    assert 9.0 < clock - 1.0 < 10.5
