"""The ``trackbone`` console script: one subcommand per job, each in its own module.

Built-in subcommands live in ``streams.commands``; other packages add theirs through
the ``trackbone.commands`` entry-point group (name -> module with ``HELP``,
``add_arguments`` and ``run``), so ``streams`` never imports them (``load`` registers
demo, bench, simulate and eta-eval that way). Modules are imported lazily, only the
chosen one, so that ``trackbone fold`` does not pay for Faust, ClickHouse or plugins.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, NoReturn

from streams.errors import (
    BROKEN_PIPE,
    INTERRUPTED,
    ClickHouseUnavailableError,
    InputFileError,
    KafkaUnreachableError,
    UsageError,
    UserError,
)

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
    "api-key": ("api_key", "make an HTTP API key: the key (for clients) and its digest"),
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


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (a UsageError) naming ``--help``.

    It remembers its required arguments so that ``main`` can report an unknown flag
    before a missing required one (``fold --bogus`` is about ``--bogus``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.required_actions: list[argparse.Action] = []
        self.commands: dict[str, CommandParser] = {}

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.required:
            self.required_actions.append(action)
        return action

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def unknown_first(self, parser: argparse.ArgumentParser, argv: list[str]) -> None:
        """Raise for unrecognised arguments as if the required ones were all given."""
        if "-h" in argv or "--help" in argv:
            return  # the real parse prints the help, with required arguments shown so
        for action in self.required_actions:
            action.required = False
        try:
            _, unknown = parser.parse_known_args(argv)
        finally:
            for action in self.required_actions:
                action.required = True
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")


def build_parser(only: str | None = None) -> CommandParser:
    """The parser; only the ``only`` command's module (all if None) adds its arguments.

    Plugin help texts need their module: they are imported only when no single
    command was chosen (``trackbone --help``).
    """
    parser = CommandParser(
        prog="trackbone",
        description="Event-sourced parcel tracking: Avro on Kafka, Faust folds, ClickHouse.",
        epilog="Settings come from TRACKBONE_* environment variables (see README)."
        " --debug (anywhere) shows the traceback of a failure.",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )
    listing = only is None or only not in command_modules()
    for name, path in command_modules().items():
        chosen = only is None or only == name
        module = _load(path) if chosen or (listing and name not in COMMANDS) else None
        help_text = COMMANDS[name][1] if name in COMMANDS else getattr(module, "HELP", None)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        parser.commands[name] = cmd
        if chosen and module is not None:
            module.add_arguments(cmd)
    return parser


def expected_failure(exc: BaseException) -> UserError | None:
    """The UserError that a library's exception means, None for a bug.

    The one table of "expected" failures that do not come from our own code: a broken
    connection to Kafka, a missing file, a ClickHouse refusal.
    """
    if isinstance(exc, UserError):
        return exc
    module = type(exc).__module__ or ""
    if module.startswith("aiokafka"):
        from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

        if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
            return KafkaUnreachableError(
                f"Kafka did not answer ({exc}); check --bootstrap / TRACKBONE_KAFKA_BOOTSTRAP"
                " (host:port), or run `trackbone kafka start` for the local broker"
            )
    if module.startswith("clickhouse_connect"):
        return ClickHouseUnavailableError(
            f"ClickHouse failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
        )
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError) and exc.filename:
        return InputFileError(f"cannot read {exc.filename}: {exc.strerror}")
    return None


def _quiet_broken_pipe() -> int:
    """The reader went away: no message, and no second error when Python flushes stdout."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; every expected failure ends here as one line and its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list or os.environ.get("TRACKBONE_DEBUG", "") not in ("", "0")
    args_list = [a for a in args_list if a != "--debug"]
    modules = command_modules()
    chosen = next((a for a in args_list if a in modules), None)
    name = f"trackbone {chosen}" if chosen else "trackbone"
    if not debug:
        # aiokafka logs every failed connection attempt on its own; the failure is
        # reported once, below. Services (worker, sink) set their own log levels.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        parser = build_parser(only=chosen or "__none__")
        if chosen:
            parser.commands[chosen].unknown_first(parser, args_list)
        args = parser.parse_args(args_list)
        module = _load(modules[args.command])
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as exc:
        if debug:
            traceback.print_exc()
        failure = expected_failure(exc)
        if failure is None:
            print(
                f"{name}: unexpected error: {exc!r} (run again with --debug for the traceback)",
                file=sys.stderr,
            )
            return 1
        message = str(failure)
        if message.startswith(f"{name}: "):
            message = message[len(name) + 2 :]
        print(f"{name}: {message}", file=sys.stderr)
        return failure.exit_code


if __name__ == "__main__":
    sys.exit(main())
