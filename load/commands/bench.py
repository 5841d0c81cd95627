"""`trackbone bench`: the end-to-end benchmark (raw baseline, pipeline, latency, replay, fold).

Runs against TRACKBONE_KAFKA_BOOTSTRAP if set, else starts a local broker in a temporary
directory and stops it at the end. Progress on stderr; the result on stdout (JSON with
--json), and a PNG latency plot under --out. See `load/bench.py` for what each figure means.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from streams.settings import Settings

QUICK_EVENTS = 20_000

HELP = "end-to-end benchmark against the real broker (JSON output)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events", type=int, default=None,
        help="events to simulate and push through every phase (default 1,000,000; --quick 20,000)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="a small, short run (a smoke test of the whole benchmark, not a measurement)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument(
        "--out", type=Path, default=Path("out/bench"),
        help="folder for the latency plot and profile (default out/bench)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=11, help="simulation seed (default 11)")
    parser.add_argument(
        "--latency-seconds", type=float, default=None,
        help="length of the paced latency run at half the pipeline rate (default 20, quick 4)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="also run the raw loop under pyinstrument and report its top costs",
    )  # fmt: skip
    parser.add_argument(
        "--soak", type=float, default=None, metavar="SECONDS",
        help="instead of the phases: feed one worker new parcels for SECONDS and report its RSS",
    )  # fmt: skip
    parser.add_argument(
        "--soak-rate", type=float, default=2000.0, metavar="EVENTS_PER_S",
        help="events/s offered during --soak (default 2000)",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap", default=None,
        help="Kafka bootstrap (default: TRACKBONE_KAFKA_BOOTSTRAP, else a temporary local broker)",
    )  # fmt: skip


def _human(result: dict) -> str:
    keys = (
        "events", "parcels", "produce_events_per_s", "raw_events_per_s", "pipeline_events_per_s",
        "ratio", "status_latency_ms_p50", "status_latency_ms_p99",
        "status_latency_with_sink_ms_p99", "clickhouse_visible_ms_p99", "clickhouse_visible_s",
        "sink_rows_per_s", "replay_events_per_s", "fold_events_per_s",
        "fold_shuffled_events_per_s", "latency_plot",
    )  # fmt: skip
    lines = [f"{key:>32}: {result.get(key)}" for key in keys]
    lines.append("goals:")
    for key, goal in result["goals"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[goal["met"]]
        lines.append(f"{key:>28}: {goal['value']} (goal {goal['goal']}): {verdict}")
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from load.bench import BenchConfig, log
    from load.bench import run as run_bench

    settings = Settings.from_env()
    if args.bootstrap:
        settings = replace(settings, kafka_bootstrap=args.bootstrap)
    events = args.events or (QUICK_EVENTS if args.quick else 1_000_000)
    if events < 100:
        print("trackbone bench: --events must be at least 100", file=sys.stderr)
        return 2
    latency_s = args.latency_seconds or (4.0 if args.quick else 20.0)
    config = BenchConfig(
        events=events,
        seed=args.seed,
        out_dir=args.out,
        latency_seconds=latency_s,
        fold_events=min(events, 50_000 if args.quick else 200_000),
        profile=args.profile,
        settings=settings,
    )
    if args.soak is not None:
        return _soak(args, config)
    try:
        result = run_bench(config)
    except Exception as exc:  # a failed phase: say which, do not dump a trace on users
        log(f"failed: {exc!r}")
        print(f"trackbone bench: {exc}", file=sys.stderr)
        return 1
    if result.get("latency_plot"):
        print(f"latency plot: {result['latency_plot']}", file=sys.stderr)
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(_human(result))
    return 0


def _soak(args: argparse.Namespace, config: Any) -> int:
    from load.bench import log
    from load.soak import run as run_soak

    if args.soak <= 0 or args.soak_rate <= 0:
        print("trackbone bench: --soak and --soak-rate must be positive", file=sys.stderr)
        return 2
    try:
        result = run_soak(config, args.soak, args.soak_rate)
    except Exception as exc:
        log(f"soak failed: {exc!r}")
        print(f"trackbone bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for key, value in result.items():
            if key != "soak_samples":
                print(f"{key:>38}: {value}")
    return 0
