from __future__ import annotations

from load.charts import promise_labels


def test_promise_legend_states_the_promises_parcels_had() -> None:
    lanes = [
        {"scope": "domestic", "promise_min": 12.0, "promise_max": 24.0},
        {"scope": "domestic", "promise_min": 24.0, "promise_max": 48.0},
        {"scope": "international", "promise_min": 72.0, "promise_max": 168.0},
    ]
    assert promise_labels(lanes) == [
        "domestic (promises 12-48 h; each parcel against its own)",
        "international (promises 72-168 h; each parcel against its own)",
    ]
    assert promise_labels([{"scope": "domestic", "promise_min": 24, "promise_max": 24}])[0] == (
        "domestic (promises 24 h; each parcel against its own)"
    )
    assert promise_labels([]) == ["domestic", "international"]


def test_throughput_draws_clickhouse_freshness_on_its_own_panel(tmp_path) -> None:
    import matplotlib.image

    from load.charts import throughput

    samples = [(t / 4, int(t * 100), int(t * 90)) for t in range(40)]
    two = throughput(samples, tmp_path / "two.png")
    three = throughput(
        samples, tmp_path / "three.png", sink_lag=[(t / 4, t % 7) for t in range(40)]
    )
    assert matplotlib.image.imread(three).shape[0] > matplotlib.image.imread(two).shape[0]


def test_demo_prints_commands_runnable_as_called(tmp_path, monkeypatch) -> None:
    import sys

    from load.demo import cli_prefix

    script = tmp_path / "bin" / "trackbone"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cli_prefix(str(script)) == str(script)  # not on PATH: the path as called
    monkeypatch.setenv("PATH", str(script.parent))
    assert cli_prefix(str(script)) == "trackbone"
    assert cli_prefix("/somewhere/streams/cli.py") == f"{sys.executable} -m streams.cli"


def test_transit_chart_draws_each_services_own_promise(tmp_path) -> None:
    from load.charts import transit_distributions

    bins = [
        {"scope": scope, "service": service, "bin": float(b), "parcels": 10 + b}
        for scope in ("domestic", "international")
        for service in ("EXPRESS", "STANDARD")
        for b in range(0, 120, 4)
    ]
    promises = {("domestic", "EXPRESS"): 12.0, ("international", "STANDARD"): 96.0}
    path = transit_distributions(bins, tmp_path / "t.png", promises)
    assert path.read_bytes()[:4] == b"\x89PNG"
