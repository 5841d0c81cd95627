"""The ``trackbone`` console script: one subcommand per job, each in its own module.

Built-in subcommands live in ``streams.commands``; other packages add theirs through
the ``trackbone.commands`` entry-point group (name -> module with ``HELP``,
``add_arguments`` and ``run``), so ``streams`` never imports them (``load`` registers
demo, bench, simulate and eta-eval that way). Modules are imported lazily, only the
chosen one, so that ``trackbone fold`` does not pay for Faust, ClickHouse or plugins.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType

ENTRY_POINT_GROUP = "trackbone.commands"

# name -> (module under streams.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("kafka", "start, stop or inspect the project's local Kafka broker"),
    "produce": ("produce", "validate a JSONL file of events and produce them as Avro"),
    "fold": ("fold", "fold a JSONL file of events into per-parcel state (no Kafka)"),
    "worker": ("worker", "run the stream processor (Faust worker)"),
    "sink": ("sink", "run the ClickHouse sink service (Kafka outputs -> ClickHouse)"),
    "follow": ("follow", "print parcel status changes as they happen"),
    "clickhouse": ("clickhouse", "manage the ClickHouse schema (init, migrations)"),
    "query": ("query", "run a read-only SQL query against the tracking database"),
    "verify": ("verify", "reconcile inputs, offsets, dead letters, statuses and ClickHouse"),
}


def command_modules() -> dict[str, str]:
    """Every subcommand name -> its module path: built-ins, then the entry-point group.

    Reads only package metadata; nothing is imported. A plugin cannot shadow a built-in.
    """
    modules = {name: f"streams.commands.{module}" for name, (module, _) in COMMANDS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        modules.setdefault(ep.name, ep.value)
    return modules


def _load(path: str) -> ModuleType:
    return importlib.import_module(path.partition(":")[0])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``only`` command's module (all if None) adds its arguments.

    Plugin help texts need their module: they are imported only when no single
    command was chosen (``trackbone --help``).
    """
    parser = argparse.ArgumentParser(
        prog="trackbone",
        description="Event-sourced parcel tracking: Avro on Kafka, Faust folds, ClickHouse.",
        epilog="Settings come from TRACKBONE_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    listing = only is None or only not in command_modules()
    for name, path in command_modules().items():
        chosen = only is None or only == name
        module = _load(path) if chosen or (listing and name not in COMMANDS) else None
        help_text = COMMANDS[name][1] if name in COMMANDS else getattr(module, "HELP", None)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if chosen and module is not None:
            module.add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    modules = command_modules()
    chosen = next((a for a in args_list if a in modules), None)
    parser = build_parser(only=chosen or "__none__")
    args = parser.parse_args(args_list)
    module = _load(modules[args.command])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
