"""Unit tests for the ETA model (projections/eta.py): sketches, merges, fallbacks, estimates."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
from ddsketch import DDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import eta
from projections.eta import (
    FORWARD_MILESTONES,
    HOUR_MS,
    Lane,
    LaneStats,
    Observation,
    PredictionRecord,
    Sketch,
)

ALPHA = eta.DEFAULT_RELATIVE_ACCURACY
FAST = settings(max_examples=60, deadline=None)

HZ_DE = Lane("CN", "Hangzhou", "DE", "STANDARD")
SZ_DE = Lane("CN", "Shenzhen", "DE", "STANDARD")
HZ_FR = Lane("CN", "Hangzhou", "FR", "STANDARD")
DOMESTIC = Lane("CN", "Hangzhou", "CN", "EXPRESS")


@dataclass(frozen=True)
class FakeState:
    """The ParcelState fields the model reads (projections.fold is written in parallel)."""

    parcel_id: str = "P1"
    milestone: str = "PICKED_UP"
    delivered_at: int | None = None
    milestone_times: tuple[tuple[str, int], ...] = ()
    registered_at: int | None = 0
    promised_at: int | None = 72 * HOUR_MS
    last_event_time: int | None = 0
    origin_country: str | None = "CN"
    origin_city: str | None = "Hangzhou"
    destination_country: str | None = "DE"
    service: str | None = "STANDARD"


def lognormal_hours(rng: random.Random, mu_hours: float, sigma: float, n: int) -> list[int]:
    return [int(rng.lognormvariate(math.log(mu_hours), sigma) * HOUR_MS) for _ in range(n)]


def stats_for(lane: Lane, milestone: str, durations: list[int]) -> LaneStats:
    return eta.add(eta.empty_stats(), [Observation(lane, milestone, d) for d in durations])


def est(stats: eta.StatsSource, **kw: object) -> eta.Estimate | None:
    args: dict[str, object] = {
        "lane": HZ_DE,
        "milestone": "PICKED_UP",
        "milestone_at": 0,
        "now_ms": 0,
        "promised_at": 72 * HOUR_MS,
        "registered_at": 0,
    }
    args.update(kw)
    return eta.estimate(stats, **args)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- sketches

durations = st.lists(
    st.integers(min_value=0, max_value=60 * 24 * HOUR_MS), min_size=1, max_size=300
)


@FAST
@given(durations, st.sampled_from([0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]))
def test_sketch_quantile_within_relative_accuracy(values: list[int], q: float) -> None:
    sketch = Sketch.of(values)
    ordered = sorted(max(v, 1) for v in values)
    # DDSketch's own quantile: the value at rank floor(q * (n - 1))
    truth = ordered[int(q * (len(ordered) - 1))]
    got = sketch.quantile(q)
    assert got is not None
    assert abs(got - truth) <= ALPHA * truth * (1 + 1e-9)
    # our mass-based quantile (elapsed 0): the order statistic ceil(q * n)
    arrays = sketch._arrays_()
    ours = arrays.quantile_above(0.0, float(arrays.total), 0.0, q)
    truth2 = ordered[max(math.ceil(q * len(ordered)) - 1, 0)]
    assert abs(ours - truth2) <= ALPHA * truth2 * (1 + 1e-9)


@FAST
@given(durations, st.randoms(use_true_random=False))
def test_ddsketch_merge_is_order_and_grouping_independent(
    values: list[int], rng: random.Random
) -> None:
    """The library itself: the same values, any order and grouping, identical buckets."""
    one = DDSketch(ALPHA)
    for v in values:
        one.add(v)
    shuffled = values[:]
    rng.shuffle(shuffled)
    parts: list[DDSketch] = []
    i = 0
    while i < len(shuffled):
        size = rng.randint(1, 20)
        part = DDSketch(ALPHA)
        for v in shuffled[i : i + size]:
            part.add(v)
        parts.append(part)
        i += size
    rng.shuffle(parts)
    merged = DDSketch(ALPHA)
    for part in parts:
        merged.merge(part)

    def buckets(s: DDSketch) -> list[tuple[int, float]]:
        store = s._store
        return [(i + store.offset, c) for i, c in enumerate(store.bins) if c]

    assert buckets(merged) == buckets(one)
    assert merged.count == one.count
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert merged.get_quantile_value(q) == one.get_quantile_value(q)
    # min/max are order-independent; sum is exact here because the values are integers
    assert (merged._min, merged._max, merged._sum) == (one._min, one._max, one._sum)


def test_sketch_is_an_immutable_value() -> None:
    base = Sketch.of([HOUR_MS, 2 * HOUR_MS])
    bigger = base.with_values([3 * HOUR_MS])
    assert base.count == 2 and bigger.count == 3
    assert base.merged(Sketch.of([3 * HOUR_MS])) == bigger
    assert base.count == 2
    assert Sketch.from_bins(bigger.bins) == bigger


# ----------------------------------------------------------------------------- merging

lanes = st.sampled_from([HZ_DE, SZ_DE, HZ_FR, DOMESTIC])
observations = st.lists(
    st.builds(
        Observation,
        lanes,
        st.sampled_from(FORWARD_MILESTONES),
        st.integers(min_value=0, max_value=30 * 24 * HOUR_MS),
    ),
    min_size=1,
    max_size=120,
)


def merge_randomly(parts: list[LaneStats], rng: random.Random) -> LaneStats:
    """Merge in a random binary tree: random order and random grouping."""
    pool = parts[:]
    while len(pool) > 1:
        a = pool.pop(rng.randrange(len(pool)))
        b = pool.pop(rng.randrange(len(pool)))
        pool.append(eta.merge(a, b))
    return pool[0]


def some_estimates(stats: eta.StatsSource) -> list[eta.Estimate | None]:
    out = []
    for lane in (HZ_DE, SZ_DE, HZ_FR, DOMESTIC, Lane("US", "Austin", "DE", "ECONOMY")):
        for milestone in ("REGISTERED", "PICKED_UP", "ARRIVED_DESTINATION", "OUT_FOR_DELIVERY"):
            for now_h in (0, 5, 50):
                out.append(
                    est(stats, lane=lane, milestone=milestone, now_ms=now_h * HOUR_MS, min_count=3)
                )
    return out


@settings(max_examples=80, deadline=None)
@given(observations, st.randoms(use_true_random=False))
def test_merge_of_random_partitions_in_random_order_is_identical(
    obs: list[Observation], rng: random.Random
) -> None:
    whole = eta.add(eta.empty_stats(), obs)
    shuffled = obs[:]
    rng.shuffle(shuffled)
    parts = []
    i = 0
    while i < len(shuffled):
        size = rng.randint(1, 15)
        part = eta.empty_stats()
        for o in shuffled[i : i + size]:  # one at a time, like a stream
            part = eta.add(part, [o])
        parts.append(part)
        i += size
    merged = merge_randomly(parts, rng)
    assert eta.to_bytes(merged) == eta.to_bytes(whole)
    assert merged == whole
    assert some_estimates(merged) == some_estimates(whole)


def test_per_level_layout_gives_the_same_estimates() -> None:
    rng = random.Random(7)
    obs = [
        Observation(rng.choice([HZ_DE, SZ_DE, HZ_FR]), m, d)
        for m in FORWARD_MILESTONES
        for d in lognormal_hours(rng, 40, 0.4, 60)
    ]
    whole = eta.add(eta.empty_stats(), obs)
    table: dict[eta.LevelKey, LaneStats] = {}
    for o in obs:  # what a stream keyed by level key does
        for level in o.lane.level_keys():
            table[level] = eta.add(table.get(level, eta.empty_stats()), [o], level=level)
    assert table == eta.split_by_level(whole)
    assert some_estimates(eta.LevelIndex(table)) == some_estimates(whole)


def test_merge_rejects_different_accuracies() -> None:
    a = eta.add(eta.empty_stats(0.01), [Observation(HZ_DE, "PICKED_UP", HOUR_MS)])
    b = eta.add(eta.empty_stats(0.02), [Observation(HZ_DE, "PICKED_UP", HOUR_MS)])
    with pytest.raises(ValueError, match="relative accuracy"):
        eta.merge(a, b)


def test_retract_undoes_add_exactly() -> None:
    rng = random.Random(3)
    first = [Observation(HZ_DE, "PICKED_UP", d) for d in lognormal_hours(rng, 40, 0.5, 50)]
    later = [Observation(SZ_DE, "PICKED_UP", d) for d in lognormal_hours(rng, 30, 0.5, 5)]
    base = eta.add(eta.empty_stats(), first)
    assert eta.to_bytes(eta.retract(eta.add(base, later), later)) == eta.to_bytes(base)
    assert eta.retract(base, first) == eta.empty_stats()
    with pytest.raises(ValueError):
        eta.retract(base, later)


# ----------------------------------------------------------------------------- serialisation


@FAST
@given(observations)
def test_serialisation_round_trip(obs: list[Observation]) -> None:
    stats = eta.add(eta.empty_stats(), obs)
    data = eta.to_bytes(stats)
    back = eta.from_bytes(data)
    assert back == stats
    assert eta.to_bytes(back) == data
    assert some_estimates(back) == some_estimates(stats)


def test_from_bytes_rejects_other_data() -> None:
    with pytest.raises(ValueError):
        eta.from_bytes(b'{"v": 99, "a": 0.01, "s": []}')
    with pytest.raises(ValueError):
        eta.from_bytes(b'{"v": 1, "a": 0.01, "s": [[["global"], "DELIVERED", 1, [1]]]}')


def test_level_key_round_trip() -> None:
    for level in HZ_DE.level_keys():
        assert eta.decode_level_key(eta.encode_level_key(level)) == level
    with pytest.raises(ValueError):
        eta.decode_level_key('["nope"]')


def test_level_keys() -> None:
    assert HZ_DE.level_keys() == (
        ("lane", "CN", "Hangzhou", "DE", "STANDARD"),
        ("pair", "CN", "DE", "STANDARD"),
        ("service", "STANDARD", "international"),
        ("global",),
    )
    assert DOMESTIC.level_keys()[2] == ("service", "EXPRESS", "domestic")
    assert Lane(None, None, None, None).level_keys() == (("global",),)


# ----------------------------------------------------------------------------- observations


def test_observation_from_delivered_parcel() -> None:
    state = FakeState(
        milestone="DELIVERED",
        delivered_at=50 * HOUR_MS,
        registered_at=0,
        milestone_times=(
            ("PICKED_UP", 2 * HOUR_MS),
            ("DEPARTED_ORIGIN", 10 * HOUR_MS),
            ("OUT_FOR_DELIVERY", 48 * HOUR_MS),
            ("DELIVERED", 50 * HOUR_MS),
        ),
    )
    got = eta.observation_from(state)
    assert [(o.milestone, o.duration_ms // HOUR_MS) for o in got] == [
        ("REGISTERED", 50),
        ("PICKED_UP", 48),
        ("DEPARTED_ORIGIN", 40),
        ("OUT_FOR_DELIVERY", 2),
    ]
    assert {o.lane for o in got} == {HZ_DE}


def test_observation_from_skips_undelivered_unregistered_and_inconsistent() -> None:
    assert eta.observation_from(FakeState(delivered_at=None)) == []
    assert eta.observation_from(FakeState(delivered_at=HOUR_MS, service=None)) == []
    late = FakeState(
        delivered_at=10 * HOUR_MS,
        registered_at=None,
        milestone_times=(("REGISTERED", 0), ("AT_DESTINATION_HUB", 11 * HOUR_MS)),
    )
    assert [o.milestone for o in eta.observation_from(late)] == ["REGISTERED"]


# ----------------------------------------------------------------------------- fallbacks


@pytest.fixture(scope="module")
def network() -> LaneStats:
    """HZ->DE well observed; SZ->DE sparse (10 obs); FR only via the service level."""
    rng = random.Random(11)
    obs = [Observation(HZ_DE, "PICKED_UP", d) for d in lognormal_hours(rng, 40, 0.3, 200)]
    obs += [Observation(SZ_DE, "PICKED_UP", d) for d in lognormal_hours(rng, 80, 0.3, 10)]
    obs += [Observation(DOMESTIC, "PICKED_UP", d) for d in lognormal_hours(rng, 10, 0.3, 100)]
    return eta.add(eta.empty_stats(), obs)


def test_fallback_uses_lane_when_it_has_enough(network: LaneStats) -> None:
    e = est(network, lane=HZ_DE)
    assert e is not None and e.basis == "lane" and e.observations == 200
    assert 36 * HOUR_MS < e.eta_p50_ms < 44 * HOUR_MS


def test_fallback_sparse_lane_uses_country_pair(network: LaneStats) -> None:
    e = est(network, lane=SZ_DE)
    assert e is not None and e.basis == "pair" and e.observations == 210


def test_fallback_unknown_lane_uses_service_level(network: LaneStats) -> None:
    e = est(network, lane=HZ_FR)
    assert e is not None and e.basis == "service" and e.observations == 210
    dom = est(network, lane=Lane("US", "Austin", "US", "EXPRESS"))
    assert dom is not None and dom.basis == "service" and dom.observations == 100
    unregistered = est(network, lane=Lane(None, None, None, None), promised_at=None)
    assert unregistered is not None and unregistered.basis == "global"


def test_fallback_empty_stats_uses_prior() -> None:
    e = est(eta.empty_stats(), promised_at=72 * HOUR_MS, registered_at=0, now_ms=0)
    assert e is not None and e.basis == "prior"
    assert e.eta_p50_ms == 72 * HOUR_MS
    assert e.eta_p90_ms == 90 * HOUR_MS
    assert e.on_time_probability == pytest.approx(0.5)
    assert est(eta.empty_stats(), promised_at=None) is None


def test_unknown_milestone_for_a_lane_falls_back(network: LaneStats) -> None:
    e = est(network, lane=HZ_DE, milestone="OUT_FOR_DELIVERY")
    assert e is not None and e.basis == "prior"


def test_no_estimate_for_finished_parcels(network: LaneStats) -> None:
    for milestone in ("DELIVERED", "RETURNING", "RETURNED"):
        assert est(network, milestone=milestone) is None
        assert eta.estimate_for(network, FakeState(milestone=milestone)) is None


def test_estimate_for_state_uses_milestone_time_and_last_event(network: LaneStats) -> None:
    state = FakeState(
        milestone="PICKED_UP",
        milestone_times=(("REGISTERED", 0), ("PICKED_UP", 5 * HOUR_MS)),
        last_event_time=6 * HOUR_MS,
    )
    assert eta.estimate_for(network, state) == est(
        network, milestone_at=5 * HOUR_MS, now_ms=6 * HOUR_MS
    )


# ----------------------------------------------------------------------------- conditioning


@FAST
@given(
    st.integers(min_value=0, max_value=400 * HOUR_MS),
    st.integers(min_value=0, max_value=400 * HOUR_MS),
)
def test_conditional_estimate_moves_later_as_the_parcel_waits(
    network: LaneStats, e1: int, e2: int
) -> None:
    lo, hi = sorted((e1, e2))
    a = est(network, now_ms=lo, milestone_at=0)
    b = est(network, now_ms=hi, milestone_at=0)
    assert a is not None and b is not None
    assert a.eta_p50_ms <= b.eta_p50_ms and a.eta_p90_ms <= b.eta_p90_ms
    assert b.eta_p50_ms >= hi and b.eta_p90_ms >= b.eta_p50_ms
    assert (a.on_time_probability or 0) >= (b.on_time_probability or 0) - 1e-12


def test_conditional_quantiles_match_empirical_tail() -> None:
    rng = random.Random(5)
    values = lognormal_hours(rng, 40, 0.4, 20000)
    stats = stats_for(HZ_DE, "PICKED_UP", values)
    ordered = sorted(values)
    for elapsed_h in (0, 20, 40, 60, 80):
        elapsed = elapsed_h * HOUR_MS
        tail = [v for v in ordered if v > elapsed]
        e = est(stats, now_ms=elapsed, promised_at=60 * HOUR_MS)
        assert e is not None and not e.extrapolated
        for got, q in ((e.eta_p50_ms, 0.5), (e.eta_p90_ms, 0.9)):
            low = tail[int((q - 0.02) * len(tail))]
            high = tail[min(int((q + 0.02) * len(tail)), len(tail) - 1)]
            assert low / (1 + 3 * ALPHA) <= got <= high * (1 + 3 * ALPHA), (elapsed_h, q)
        truth = 0.0 if elapsed >= 60 * HOUR_MS else sum(v <= 60 * HOUR_MS for v in tail) / len(tail)
        assert e.on_time_probability == pytest.approx(truth, abs=0.02)


def test_stuck_beyond_everything_observed_is_extrapolated(network: LaneStats) -> None:
    e = est(network, now_ms=1000 * HOUR_MS)
    assert e is not None and e.extrapolated and e.basis == "lane"
    assert 1000 * HOUR_MS < e.eta_p50_ms < e.eta_p90_ms
    assert e.on_time_probability == 0.0
    later = est(network, now_ms=2000 * HOUR_MS)
    assert later is not None and later.eta_p50_ms > e.eta_p50_ms


def test_thin_tail_on_the_lane_uses_a_coarser_level() -> None:
    rng = random.Random(2)
    # the lane is fast; the pair (via SZ) has a slow tail that explains a stuck parcel
    obs = [Observation(HZ_DE, "PICKED_UP", d) for d in lognormal_hours(rng, 20, 0.2, 100)]
    obs += [Observation(SZ_DE, "PICKED_UP", d) for d in lognormal_hours(rng, 60, 0.3, 100)]
    stats = eta.add(eta.empty_stats(), obs)
    assert est(stats, now_ms=5 * HOUR_MS).basis == "lane"  # type: ignore[union-attr]
    assert est(stats, now_ms=40 * HOUR_MS).basis == "pair"  # type: ignore[union-attr]


@FAST
@given(
    st.integers(min_value=0, max_value=100 * HOUR_MS),
    st.integers(min_value=-10 * HOUR_MS, max_value=300 * HOUR_MS),
    st.integers(min_value=-10 * HOUR_MS, max_value=300 * HOUR_MS),
)
def test_on_time_probability_is_monotone_in_the_promise(
    network: LaneStats, now: int, p1: int, p2: int
) -> None:
    lo, hi = sorted((p1, p2))
    for stats in (network, eta.empty_stats()):
        a = est(stats, now_ms=now, promised_at=lo)
        b = est(stats, now_ms=now, promised_at=hi)
        assert a is not None and b is not None
        assert a.on_time_probability is not None and b.on_time_probability is not None
        assert 0.0 <= a.on_time_probability <= b.on_time_probability <= 1.0


# ----------------------------------------------------------------------------- replay


def delivered_parcels(seed: int, n: int) -> list[FakeState]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lane = rng.choice([HZ_DE, SZ_DE, HZ_FR, DOMESTIC])
        t = rng.randint(0, 10 * 24) * HOUR_MS
        times = [("REGISTERED", t)]
        for m in FORWARD_MILESTONES[1:]:
            t += int(rng.expovariate(1 / 4) * HOUR_MS)
            times.append((m, t))
        out.append(
            FakeState(
                parcel_id=f"P{i}",
                milestone="DELIVERED",
                delivered_at=t + HOUR_MS,
                milestone_times=tuple(times),
                registered_at=times[0][1],
                promised_at=times[0][1] + 72 * HOUR_MS,
                last_event_time=t + HOUR_MS,
                origin_country=lane.origin_country,
                origin_city=lane.origin_city,
                destination_country=lane.destination_country,
                service=lane.service,
            )
        )
    return out


def test_replay_gives_identical_model_and_estimates() -> None:
    parcels = delivered_parcels(seed=1, n=300)

    def replay(order: list[FakeState], partitions: int) -> LaneStats:
        shards = [eta.empty_stats() for _ in range(partitions)]
        for p in order:
            k = int(p.parcel_id[1:]) % partitions
            shards[k] = eta.add(shards[k], eta.observation_from(p))
        return merge_randomly(shards, random.Random(len(order) + partitions))

    first = replay(parcels, 1)
    shuffled = parcels[:]
    random.Random(9).shuffle(shuffled)
    second = replay(shuffled, 4)
    assert eta.to_bytes(first) == eta.to_bytes(second)
    probes = [
        FakeState(
            milestone=m,
            milestone_times=(("REGISTERED", 0), (m, 3 * HOUR_MS)),
            last_event_time=(3 + k) * HOUR_MS,
        )
        for m in FORWARD_MILESTONES
        for k in (0, 10, 40)
    ]
    a = [eta.estimate_for(first, p) for p in probes]
    b = [eta.estimate_for(eta.from_bytes(eta.to_bytes(second)), p) for p in probes]
    assert a == b
    assert all(e is not None and e.basis == "lane" for e in a[:3])


# ----------------------------------------------------------------------------- evaluation


def test_evaluate_model_and_baseline() -> None:
    h = HOUR_MS
    records = [
        PredictionRecord("PICKED_UP", 10 * h, 20 * h, 30 * h, 12 * h),
        PredictionRecord("PICKED_UP", 10 * h, 20 * h, 30 * h, 22 * h),
        PredictionRecord("ARRIVED_DESTINATION", 5 * h, 6 * h, None, 5 * h),
    ]
    report = eta.evaluate(records)
    assert list(report) == ["PICKED_UP", "ARRIVED_DESTINATION", "ALL"]
    picked = report["PICKED_UP"]
    assert picked["n"] == 2
    assert picked["mae_hours"] == pytest.approx(7.0)
    assert picked["coverage_p90"] == pytest.approx(0.5)
    assert picked["baseline_mae_hours"] == pytest.approx(13.0)
    assert picked["baseline_coverage"] == pytest.approx(1.0)
    assert picked["mae_reduction"] == pytest.approx(1 - 7 / 13)
    assert "baseline_mae_hours" not in report["ARRIVED_DESTINATION"]
    assert report["ALL"]["n"] == 3
    assert eta.evaluate([]) == {}


def test_status_fields() -> None:
    e = eta.Estimate(1, 2, 0.5, "lane", 40)
    assert e.status_fields() == {
        "eta_p50": 1,
        "eta_p90": 2,
        "on_time_probability": 0.5,
        "eta_basis": "lane",
    }


def test_on_time_probability_interpolates_inside_a_bucket() -> None:
    """Mass is spread over the bucket's range, so a deadline inside it gets a fraction."""
    stats = stats_for(HZ_DE, "PICKED_UP", [10 * HOUR_MS] * 100)
    arrays = stats.sketch(HZ_DE.level_keys()[0], "PICKED_UP")._arrays_()  # type: ignore[union-attr]
    middle = (arrays.lowers[0] + arrays.uppers[0]) / 2
    e = est(stats, promised_at=round(middle))
    assert e is not None and e.on_time_probability is not None
    assert 0.3 < e.on_time_probability < 0.7
