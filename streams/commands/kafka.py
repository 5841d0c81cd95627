"""`trackbone kafka start|stop|status`: the project's own single-node Kafka broker.

``start`` prints only the bootstrap address on stdout (timings go to stderr), so that
``export TRACKBONE_KAFKA_BOOTSTRAP=$(trackbone kafka start)`` works.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from streams.broker import LocalBroker
from streams.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("start", "stop", "status"),
        help="start (idempotent: prints the bootstrap address), stop, or status (JSON)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where the broker keeps its state (default: TRACKBONE_DATA_DIR or ./.trackbone)",
    )


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.data_dir:
        settings = replace(settings, data_dir=Path(args.data_dir))
    broker = LocalBroker(settings)
    # a BrokerError is a UserError: streams.cli.main prints it (exit code 10)
    if args.action == "start":
        bootstrap = broker.start()
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in broker.timings.items())
        print(f"kafka {settings.kafka_version} ready at {bootstrap} ({timings})", file=sys.stderr)
        print(bootstrap)
        return 0
    if args.action == "stop":
        if broker.stop():
            print("kafka stopped", file=sys.stderr)
        else:
            print("kafka was not running", file=sys.stderr)
        return 0
    state = broker.status()
    if state is None:
        print("not running")
        return 1
    print(json.dumps(state, indent=2))
    return 0
