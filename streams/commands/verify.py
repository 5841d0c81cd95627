"""`trackbone verify`: is every input event accounted for? Read-only; exit 0, 1 or 11.

Reconciles the input topics (cut at the worker group's committed offsets), the
dead-letter topic, the status topic and ClickHouse (see `streams.verify`). Exit 0
when all agree, 1 on a mismatch, 11 when nothing disagrees yet but the worker or the
sink is behind (``--wait`` retries until settled or the time is up).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from typing import Any

import orjson

HELP = "reconcile inputs, committed offsets, dead letters, statuses and ClickHouse"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from streams.commands.clickhouse import add_connection_arguments

    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: settings)")
    parser.add_argument("--topic-prefix", default=None, help="topic prefix (default: settings)")
    parser.add_argument("--app-id", default=None, help="the worker's app id = consumer group")
    add_connection_arguments(parser)
    parser.add_argument(
        "--no-clickhouse", action="store_true", help="compare Kafka only (no ClickHouse)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="while only behind (exit 11), check again until settled or SECONDS have passed",
    )  # fmt: skip


def _clickhouse_query(settings: Any) -> Any:
    """A query function: through the sink when it owns the embedded engine, else direct."""
    from streams.commands.query import query_direct, query_via_sink, sink_url

    url = sink_url(settings)
    if url is not None:
        return lambda sql, params: query_via_sink(url, sql, params)
    return lambda sql, params: query_direct(settings, sql, params)


async def _sink_caught_up(settings: Any, bootstrap: str) -> bool:
    from aiokafka import TopicPartition

    from streams.replay import make_consumer
    from streams.verify import committed_offsets

    committed = await committed_offsets(bootstrap, f"{settings.app_id}-clickhouse-sink")
    if not committed:
        return False
    consumer = make_consumer(bootstrap, client_id="trackbone-verify-sink")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, p in committed]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return all(committed[(tp.topic, tp.partition)] >= end for tp, end in ends.items())


def check(settings: Any, bootstrap: str, with_clickhouse: bool) -> Any:
    from streams import verify

    reference, rows, statuses, by_reason = asyncio.run(verify.kafka_side(settings, bootstrap))
    clickhouse = None
    note = None
    sink_caught_up = True
    if with_clickhouse:
        try:
            sink_caught_up = asyncio.run(_sink_caught_up(settings, bootstrap))
            clickhouse = verify.clickhouse_side(_clickhouse_query(settings))
        except Exception as exc:  # an unreachable or missing database is a finding, not a crash
            note = f"ClickHouse unavailable: {exc}"
    else:
        note = "--no-clickhouse"
    report = verify.reconcile(
        reference, rows, statuses, by_reason, clickhouse, note, sink_caught_up
    )
    if with_clickhouse and clickhouse is None:
        report.problems.append(verify.Finding(note or "ClickHouse unavailable", 1, []))
    return report


def run(args: argparse.Namespace) -> int:
    from streams import verify
    from streams.commands import kafka_target
    from streams.commands.clickhouse import settings_from
    from streams.errors import BEHIND

    settings, bootstrap = kafka_target(args)
    changes: dict[str, Any] = {}
    if args.app_id:
        changes["app_id"] = args.app_id
    clickhouse_settings = settings_from(args)  # --data-dir: the sink's, whose engine it reads
    for name in ("data_dir", "clickhouse_dsn", "clickhouse_database"):
        changes[name] = getattr(clickhouse_settings, name)
    settings = dataclasses.replace(settings, **changes)
    deadline = time.monotonic() + args.wait
    while True:
        report = check(settings, bootstrap, not args.no_clickhouse)
        if report.exit_code != BEHIND or time.monotonic() >= deadline:
            break
        time.sleep(1.0)  # poll interval of a deadline-bounded wait
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(verify.render(report))
    return int(report.exit_code)
