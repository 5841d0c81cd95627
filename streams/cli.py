"""The ``trackbone`` console script: one subcommand per job, each in its own module.

Subcommand modules are imported lazily so that ``trackbone fold`` does not pay for
Faust and ClickHouse imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module under streams.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole product locally on a simulated Singles Day slice"),
    "kafka": ("kafka", "start, stop or inspect the project's local Kafka broker"),
    "produce": ("produce", "validate a JSONL file of events and produce them as Avro"),
    "fold": ("fold", "fold a JSONL file of events into per-parcel state (no Kafka)"),
    "worker": ("worker", "run the stream processor (Faust worker)"),
    "follow": ("follow", "print parcel status changes as they happen"),
    "clickhouse": ("clickhouse", "manage the ClickHouse schema (init, migrations)"),
    "query": ("query", "run a read-only SQL query against the tracking database"),
    "simulate": ("simulate", "simulate carriers: write JSONL or produce to Kafka"),
    "bench": ("bench", "end-to-end benchmark against the real broker (JSON output)"),
    "eta-eval": ("eta_eval", "evaluate ETA accuracy against the simulator's ground truth"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackbone",
        description="Event-sourced parcel tracking: Avro on Kafka, Faust folds, ClickHouse.",
        epilog="Settings come from TRACKBONE_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            importlib.import_module(f"streams.commands.{module}").add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if a in COMMANDS), None)
    parser = build_parser(only=chosen or "__none__")
    args = parser.parse_args(args_list)
    module = importlib.import_module(f"streams.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
