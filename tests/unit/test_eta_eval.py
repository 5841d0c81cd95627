"""The ETA accuracy evaluation (load/eta_eval.py, `trackbone eta-eval`) on small runs."""

from __future__ import annotations

import orjson
import pytest

from load import eta_eval
from load.simulator import Scenario
from projections import eta
from projections.eta import HOUR_MS, Lane, Observation
from streams.cli import main

SMALL = 400


@pytest.fixture(scope="module")
def small() -> dict[str, object]:
    return eta_eval.run(SMALL, seed=3, warmup_hours=24.0)


def test_small_run_returns_sane_metrics_per_milestone(small: dict[str, object]) -> None:
    milestones = small["milestones"]
    assert isinstance(milestones, dict)
    for name in ("PICKED_UP", "ARRIVED_DESTINATION", "OUT_FOR_DELIVERY", "ALL"):
        m = milestones[name]
        assert m["n"] > 0
        assert 0.0 < m["mae_hours"] < 100.0
        assert 0.0 < m["baseline_mae_hours"] < 100.0
        assert 0.0 <= m["coverage_p90"] <= 1.0
        assert 0.0 <= m["baseline_coverage"] <= 1.0
    # Close to delivery even a young model beats the promise (the prior alone would tie it).
    assert milestones["OUT_FOR_DELIVERY"]["mae_reduction"] > 0.05
    assert small["skipped"]["warmup"] > 0  # type: ignore[index]
    assert small["scored"] == milestones["ALL"]["n"]
    goals = small["goals"]
    assert isinstance(goals, dict) and set(goals) >= {
        "mae_reduction_PICKED_UP",
        "mae_reduction_ARRIVED_DESTINATION",
        "coverage_ALL",
        "all_met",
    }


def test_replay_is_deterministic(small: dict[str, object]) -> None:
    assert eta_eval.run(SMALL, seed=3, warmup_hours=24.0) == small
    assert eta_eval.run(SMALL, seed=4, warmup_hours=24.0) != small


def test_model_learns_only_from_parcels_already_delivered() -> None:
    rep = eta_eval.replay(Scenario(parcels=300, seed=5))
    assert rep.first_learned_ms is not None
    early = [p for p in rep.predictions if p.made_at < rep.first_learned_ms]
    assert early, "expected predictions before the first delivery"
    assert {p.basis for p in early} == {"prior"}
    assert any(p.basis != "prior" for p in rep.predictions)


def test_history_warms_the_model_up() -> None:
    cold = eta_eval.run(300, seed=5, warmup_hours=0.0)
    warm = eta_eval.run(300, seed=5, warmup_hours=0.0, history_parcels=300)
    assert cold["history"] is None and warm["history"]["deliveries_learned"] > 250
    c, w = cold["milestones"]["ALL"], warm["milestones"]["ALL"]
    assert c["baseline_mae_hours"] == w["baseline_mae_hours"]  # same parcels, same promises
    assert w["mae_hours"] < c["mae_hours"]


def test_known_lane_does_not_fall_back_to_the_global_level() -> None:
    # Only domestic parcels delivered so far: an international parcel gets the prior.
    domestic = Lane("CN", "Hangzhou", "CN", "EXPRESS")
    stats = eta.add(
        eta.empty_stats(),
        [Observation(domestic, "PICKED_UP", 20 * HOUR_MS + i * 60_000) for i in range(100)],
    )

    def at_pickup(lane: Lane, promised_at: int | None) -> eta.Estimate | None:
        return eta.estimate(
            stats,
            lane=lane,
            milestone="PICKED_UP",
            milestone_at=0,
            now_ms=0,
            promised_at=promised_at,
            registered_at=0,
        )

    intl = at_pickup(Lane("CN", "Yiwu", "US", "STANDARD"), 72 * HOUR_MS)
    assert intl is not None and intl.basis == "prior" and intl.eta_p50_ms == 72 * HOUR_MS
    unknown = at_pickup(Lane(None, None, None, None), None)
    assert unknown is not None and unknown.basis == "global"


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eta-eval", "--parcels", "200", "--seed", "2", "--cold-only", "--json"])
    assert code == 0
    out = orjson.loads(capsys.readouterr().out)
    assert set(out) == {"cold_start", "seconds"}
    assert out["cold_start"]["milestones"]["ALL"]["n"] > 0


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eta-eval", "--parcels", "200", "--history-parcels", "200", "--warmup-hours", "0"])
    assert code == 0
    text = capsys.readouterr().out
    assert "cold start" in text and "steady state" in text
    assert "PICKED_UP" in text and "all met:" in text
