"""`trackbone demo`: the main job, the whole product on one machine (see load/demo.py).

Starts what is missing (the local broker), a worker and a ClickHouse sink process (the
owner of the embedded ClickHouse), plays a simulated Singles Day slice into Kafka at a
steady rate with a live progress line, prints the visibility report read back from
ClickHouse, the status topic and the tracking API, writes PNG charts, and stops everything
it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from streams.settings import Settings

HELP = "run the whole product locally on a simulated Singles Day slice"


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def _rate(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0: as fast as possible)")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from load.demo import DEFAULT_OUT, DEFAULT_PARCELS, DEFAULT_RATE

    parser.add_argument(
        "--parcels",
        type=_positive_int,
        default=DEFAULT_PARCELS,
        help=f"parcels to simulate (default {DEFAULT_PARCELS}: about 16 events each)",
    )
    parser.add_argument("--seed", type=int, default=11, help="simulator seed (default 11)")
    parser.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE,
        metavar="EVENTS_PER_S",
        help=f"production rate in events/s (default {DEFAULT_RATE:.0f}; 0: as fast as possible)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder for the PNG charts (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="demo state (worker tables, the sink's embedded ClickHouse), wiped at the start"
        " (default <TRACKBONE_DATA_DIR>/demo)",
    )
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep this run's Kafka topics (default: delete them at the end)",
    )


def run(args: argparse.Namespace) -> int:
    from load.demo import DemoConfig, DemoError, run_demo
    from streams.broker import BrokerError

    config = DemoConfig(
        parcels=args.parcels,
        seed=args.seed,
        rate=args.rate,
        out_dir=args.out,
        data_dir=args.data_dir,
        keep_topics=args.keep_topics,
    )
    settings = Settings.from_env()
    if args.data_dir is not None:
        config = replace(config, data_dir=args.data_dir.resolve())
    try:
        return run_demo(config, settings)
    except (DemoError, BrokerError) as exc:
        print(f"\ntrackbone demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ntrackbone demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
