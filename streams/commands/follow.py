"""`trackbone follow`: what a downstream app sees: status changes as they happen."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import uuid
from typing import Any

import orjson

from streams.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parcel", help="only this parcel id")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest retained status (compacted: the latest per parcel)",
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit after this many seconds without a new status",
    )
    parser.add_argument("--format", choices=("json", "text"), default="json")
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (env TRACKBONE_KAFKA_BOOTSTRAP)"
    )


def render_status(status: dict[str, Any], fmt: str) -> str:
    """One line per status: JSON with the fields of `trackbone fold` (+ ETA), or text."""
    from streams.status import status_to_json

    body = status_to_json(status)
    if fmt == "json":
        return orjson.dumps(body).decode()
    holds = ",".join(body["holds"]) or "-"
    eta = f" eta_p50={body['eta_p50']}" if body.get("eta_p50") else ""
    return (
        f"{body['last_event_time']}  {body['parcel_id']:<20} {body['milestone']:<20} "
        f"holds={holds} attempts={body['attempts']} events={body['event_count']}{eta}"
    )


def render_removed(parcel_id: str, fmt: str) -> str:
    """A tombstone: every event of the parcel was voided, so it has no state any more."""
    if fmt == "json":
        return orjson.dumps({"parcel_id": parcel_id, "removed": True}).decode()
    return f"{'-':<24}  {parcel_id:<20} REMOVED (every event voided)"


def render_record(key: bytes | None, value: bytes | None, fmt: str) -> str:
    """One status-topic record as a line: a status, or a tombstone (null value) as removed."""
    from streams.avro import decode_status

    if value is None:
        return render_removed((key or b"").decode("utf-8", "replace"), fmt)
    return render_status(decode_status(value), fmt)


async def follow(settings: Settings, bootstrap: str, args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaConsumer

    from streams.avro import DecodeError
    from streams.kafka_io import security_options, start_client

    consumer = AIOKafkaConsumer(
        settings.topics.parcel_status,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        client_id=f"trackbone-follow-{uuid.uuid4().hex[:8]}",
        **security_options(settings),
    )
    await start_client(consumer, bootstrap)
    wanted = args.parcel.encode() if args.parcel else None
    try:
        while True:
            timeout_ms = int(args.until_idle * 1000) if args.until_idle else 1000
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
            if not batch:
                if args.until_idle:
                    return 0
                continue
            for records in batch.values():
                for record in records:
                    if wanted is not None and record.key != wanted:
                        continue
                    try:
                        line = render_record(record.key, record.value, args.format)
                    except DecodeError as exc:
                        print(
                            f"undecodable status at offset {record.offset}: {exc}", file=sys.stderr
                        )
                        continue
                    print(line, flush=True)
    finally:
        await consumer.stop()


def run(args: argparse.Namespace) -> int:
    from streams.broker import resolve_bootstrap

    settings = Settings.from_env()
    if args.bootstrap:
        settings = dataclasses.replace(settings, kafka_bootstrap=args.bootstrap)
    return asyncio.run(follow(settings, resolve_bootstrap(settings), args))
