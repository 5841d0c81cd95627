"""`trackbone produce --input FILE.jsonl`: validate carrier events and produce them as Avro.

Each line is parsed with the contract's JSON rules; a bad line is reported on stderr with
its number and skipped (a carrier feed should not stop on one typo). Good events go to
their input topic keyed by ``parcel_id``, so one parcel's events stay in one partition.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import orjson

from projections.events import Event
from projections.jsonform import InvalidEvent, parse_event
from streams.commands import kafka_target, open_input
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class ProduceResult:
    lines: int
    """Lines read, blank ones included (as `trackbone fold` counts them)."""
    sent: int
    rejected: int
    failed: int
    elapsed_s: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        metavar="FILE.jsonl",
        help="events in JSON form, one per line; - for stdin",
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="Kafka bootstrap servers (default: TRACKBONE_KAFKA_BOOTSTRAP, else the local broker)",
    )
    parser.add_argument(
        "--topic-prefix", default=None, help="topic name prefix (default: TRACKBONE_TOPIC_PREFIX)"
    )
    parser.add_argument(
        "--compression",
        choices=("none", "lz4"),
        default="none",
        help="producer compression (lz4 only if the lz4 package is installed)",
    )


class LineCounter:
    """Non-blank lines with their 1-based numbers; ``lines`` counts every line read.

    `trackbone fold` counts the same way, so both report the same number for one file.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.lines = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for number, raw in enumerate(self.stream, start=1):
            self.lines = number
            line = raw.strip()
            if line:
                yield number, line


async def produce_file(
    stream: IO[bytes], settings: Settings, bootstrap: str, *, compression: str | None = None
) -> ProduceResult:
    """Send every valid line; report invalid ones on stderr; wait for all acknowledgements."""
    from streams import carrier_auth
    from streams.avro import encode_event, topic_base_for
    from streams.kafka_io import (
        BatchSender,
        RecordTooLarge,
        ensure_contract_topics,
        make_producer,
        start_client,
    )

    prefix = settings.topics

    def topic_for(event: Event) -> str:
        return prefix.name(topic_base_for(event))

    if not settings.kafka_security_protocol.startswith("SASL"):
        # On a secured cluster the admin creates topics; a carrier may only write.
        await ensure_contract_topics(settings, bootstrap)
    sign = carrier_auth.signer(settings)
    producer = make_producer(bootstrap, compression=compression, settings=settings)
    await start_client(producer, bootstrap)
    started = time.perf_counter()
    sender = BatchSender(producer)
    counter = LineCounter(stream)
    rejected = 0
    try:
        for number, line in counter:
            try:
                event = parse_event(orjson.loads(line))
                value = encode_event(event)
            except orjson.JSONDecodeError as exc:
                rejected += 1
                print(f"line {number}: invalid JSON: {exc}", file=sys.stderr)
                continue
            except (InvalidEvent, ValueError) as exc:
                rejected += 1
                print(f"line {number}: {exc}", file=sys.stderr)
                continue
            key = event.parcel_id.encode()
            headers = sign(event, key, value) if sign is not None else None
            try:
                await sender.send(topic_for(event), key, value, headers)
            except RecordTooLarge as exc:
                rejected += 1
                print(f"line {number}: {exc}", file=sys.stderr)
        await sender.flush()
    finally:
        await producer.stop()
    if sender.first_error is not None:
        print(f"kafka error: {sender.first_error!r}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    return ProduceResult(counter.lines, sender.sent, rejected, sender.failed, elapsed)


def run(args: argparse.Namespace) -> int:
    compression = None if args.compression == "none" else args.compression
    with open_input(args.input) as stream:  # a missing file is reported before Kafka
        settings, bootstrap = kafka_target(args)
        result = asyncio.run(produce_file(stream, settings, bootstrap, compression=compression))
    rate = result.sent / result.elapsed_s if result.elapsed_s > 0 else 0.0
    print(
        f"sent {result.sent}, rejected {result.rejected} (of {result.lines} lines read) "
        f"to {bootstrap} in {result.elapsed_s:.2f} s ({rate:,.0f} events/s)"
    )
    if result.failed:
        print(f"trackbone produce: {result.failed} events were not acknowledged", file=sys.stderr)
        return 1
    return 0
