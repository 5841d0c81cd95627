"""One module per ``trackbone`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from streams.settings import Settings


def kafka_target(args: argparse.Namespace, command: str) -> tuple[Settings, str] | None:
    """Settings with ``--topic-prefix``/``--bootstrap`` applied, and the broker to use.

    None, after saying why on stderr, when no broker is configured or running.
    """
    from streams.broker import BrokerError, resolve_bootstrap

    settings = Settings.from_env()
    if getattr(args, "topic_prefix", None) is not None:
        settings = replace(settings, topic_prefix=args.topic_prefix)
    if args.bootstrap:
        settings = replace(settings, kafka_bootstrap=args.bootstrap)
    try:
        return settings, resolve_bootstrap(settings)
    except BrokerError as exc:
        print(f"trackbone {command}: {exc}", file=sys.stderr)
        return None
