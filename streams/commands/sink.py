"""`trackbone sink`: the ClickHouse sink service (see streams/sink_service.py).

Reads the workers' outputs (status topic, ``tracking.parcel-events``) as the consumer
group ``<app id>-clickhouse-sink`` and writes ClickHouse; serves /health, /metrics,
/stats and POST /query. With the embedded engine it owns the data dir's ClickHouse, so
run one sink per data dir (several against a server DSN share the partitions).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from streams.commands import worker as worker_command
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
        help="HTTP port of the sink's API (env TRACKBONE_SINK_WEB_PORT, default 6067)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="state directory: the embedded ClickHouse lives under it (env TRACKBONE_DATA_DIR)",
    )
    parser.add_argument(
        "--app-id", help="the workers' app id; the sink's group is <app id>-clickhouse-sink"
    )
    parser.add_argument("--loglevel", default="warning", help="log level (default warning)")


def settings_from(args: argparse.Namespace) -> Settings:
    return worker_command.settings_from(args, web_port_setting="sink_web_port")


async def _serve(settings: Settings, bootstrap: str) -> None:
    from streams.kafka_io import ensure_contract_topics, ensure_topics
    from streams.sink_service import SinkService

    # The sink may start before any worker: its input topics must exist to be assigned.
    await ensure_contract_topics(settings, bootstrap)
    await ensure_topics(bootstrap, [settings.topics.parcel_events], settings.partitions)
    # Kafka answered: from now on the service logs what aiokafka meets (the CLI muted it
    # so that a broker missing at start is reported once).
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    await SinkService(settings, bootstrap).serve()


def run(args: argparse.Namespace) -> int:
    from streams.broker import resolve_bootstrap

    settings = settings_from(args)
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    bootstrap = resolve_bootstrap(settings)
    asyncio.run(_serve(settings, bootstrap))
    return 0
