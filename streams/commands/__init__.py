"""One module per ``trackbone`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import IO

from streams.errors import InputFileError
from streams.settings import Settings


def open_input(path: str) -> AbstractContextManager[IO[bytes]]:
    """Open an input file for reading (``-``: standard input), or say why it cannot be read."""
    if path == "-":
        return nullcontext(sys.stdin.buffer)
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def kafka_target(args: argparse.Namespace) -> tuple[Settings, str]:
    """Settings with ``--topic-prefix``/``--bootstrap`` applied, and the broker to use.

    Raises BrokerNotRunning (no broker configured or running) or BadKafkaAddressError.
    """
    from streams.broker import resolve_bootstrap

    settings = Settings.from_env()
    if getattr(args, "topic_prefix", None) is not None:
        settings = replace(settings, topic_prefix=args.topic_prefix)
    if args.bootstrap:
        settings = replace(settings, kafka_bootstrap=args.bootstrap)
    return settings, resolve_bootstrap(settings)
