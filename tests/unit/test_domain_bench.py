"""load.domain_bench runs and reports every part (tiny sizes: a smoke test, not a timing)."""

from __future__ import annotations

import orjson

from load import domain_bench


def test_domain_costs_reports_the_parts() -> None:
    result = domain_bench.domain_costs(400, seed=3, repeat=1, constructor_calls=200)
    orjson.dumps(result)
    for key in (
        "domain_us_per_event",
        "decode_us",
        "step_us",
        "state_encode_us",
        "status_build_encode_us",
        "decode_state_miss_us",
    ):
        assert isinstance(result[key], float), key
    assert result["events"] >= 400 and result["status_path"] == "status_bytes"
    assert set(result["constructors"]) >= {"state_exec_builder_us", "state_init_us"}


def test_soak_figures_skip_the_warm_up_and_give_growth_per_parcels():
    from load.soak import soak_result

    samples = [
        (0.0, 50.0, 0, 0.0),
        (5.0, 80.0, 5_000, 1.0),
        (25.0, 95.0, 55_000, 1.5),  # caches still filling before half-time
        (50.0, 100.0, 105_000, 2.0),
    ]
    result = soak_result(samples, seconds=50, rate=2000, events=300_000, parcels=110_000)
    assert result["soak_rss_start_mb"] == 80.0  # the first sample is inside the warm-up
    assert result["soak_rss_end_mb"] == 100.0 and result["soak_rss_max_mb"] == 100.0
    # over the second half only: 5 MiB per 50,000 parcels (from 80 MiB it would read 20)
    assert result["soak_rss_growth_mb_per_100k_parcels"] == 10.0
    assert len(result["soak_samples"]) == 4
