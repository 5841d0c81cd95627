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
