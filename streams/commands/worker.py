"""`trackbone worker`: run the stream processor.

Several workers (on one machine or many) with the same app id share the input
partitions; each needs its own data dir and web port on a shared machine. Workers do
not write ClickHouse: they emit ``tracking.parcel-events`` and ``trackbone sink``
(a process of its own) stores the outputs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import os
import socket
import sys
from pathlib import Path

import orjson

from streams.errors import UsageError
from streams.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (env TRACKBONE_KAFKA_BOOTSTRAP;"
        " default: the local broker of `trackbone kafka start`)",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        help="HTTP port of the tracking API (env TRACKBONE_WEB_PORT, default 6066;"
        " 0: a free port, printed at start)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="state directory: RocksDB tables, embedded ClickHouse (env TRACKBONE_DATA_DIR)",
    )
    parser.add_argument("--app-id", help="Faust app id = consumer group (env TRACKBONE_APP_ID)")
    parser.add_argument(
        "--no-sink",
        action="store_true",
        help="accepted for compatibility and ignored: workers never run the ClickHouse sink"
        " (run `trackbone sink`)",
    )
    parser.add_argument("--loglevel", default="warning", help="worker log level (default warning)")


def free_port(host: str) -> int:
    """A port the OS has free on ``host`` now (``--web-port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def web_port(requested: int, host: str, command: str) -> int:
    """The port to serve on: 0 picks a free one (printed on stderr); Faust needs 1024-65535."""
    if requested == 0:
        port = free_port(host)
        print(
            f"trackbone {command}: --web-port 0: serving on http://{host}:{port}", file=sys.stderr
        )
        return port
    if not 1024 <= requested <= 65535:
        raise UsageError(f"--web-port {requested}: use 1024-65535, or 0 for a free port")
    return requested


def settings_from(args: argparse.Namespace, web_port_setting: str = "web_port") -> Settings:
    """The settings with the service's flags applied (``--web-port`` sets ``web_port_setting``)."""
    settings = Settings.from_env()
    overrides: dict[str, object] = {}
    if args.bootstrap:
        overrides["kafka_bootstrap"] = args.bootstrap
    if args.web_port is not None:
        command = "worker" if web_port_setting == "web_port" else "sink"
        overrides[web_port_setting] = web_port(args.web_port, settings.web_host, command)
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir.resolve()
    if args.app_id:
        overrides["app_id"] = args.app_id
    return dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]


def plain_logging(level: str) -> dict[str, object] | None:
    """Faust's worker colours its log (colorlog) even into a file: plain lines unless a TTY."""
    if sys.stdout.isatty():
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"}
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def run(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from streams.app import TrackboneApp, ensure_worker_topics
    from streams.broker import resolve_bootstrap

    settings = settings_from(args)
    bootstrap = resolve_bootstrap(settings)
    asyncio.run(ensure_worker_topics(settings, bootstrap))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tb = TrackboneApp(settings, bootstrap)
    marker = settings.data_dir / "worker.json"
    marker.write_bytes(
        orjson.dumps(
            {
                "pid": os.getpid(),
                "web_url": f"http://{settings.web_host}:{settings.web_port}",
                "bootstrap": bootstrap,
                "app_id": settings.app_id,
            }
        )
    )
    level = args.loglevel.upper()
    for name in ("faust", "mode", "aiokafka", "kafka", "streams"):
        # Faust's worker leaves some loggers at DEBUG: building those records cost more
        # than the fold itself.
        logging.getLogger(name).setLevel(level)
    # The fold allocates many short-lived objects and no cycles of note: collect young
    # objects less often, and never re-scan what start-up created.
    gc.set_threshold(50_000, 20, 50)
    gc.freeze()
    try:
        worker = Worker(
            tb.app, loglevel=args.loglevel, quiet=True, logging_config=plain_logging(level)
        )
        if not sys.stdout.isatty():
            # Faust's start-up spinner writes cursor and backspace codes even into a file.
            worker.spinner = None
        worker.execute_from_commandline()
    finally:
        marker.unlink(missing_ok=True)
    return 0
