"""`trackbone simulate`: run the carrier simulator into a JSONL file or straight into Kafka.

File mode writes the events in arrival order (the order carriers send them) plus the
ground truth next to them (`FILE.truth.jsonl`). Kafka mode (`--rate`) produces the same
arrival sequence as Avro, keyed by parcel id, paced by a token bucket so a demo or a
soak test sees a steady, realistic feed rather than one burst.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from load.simulator import (
    DEFAULT_START,
    GroundTruth,
    Scenario,
    Simulation,
    truth_path,
    write_jsonl,
)
from streams.commands import kafka_target
from streams.settings import Settings

HELP = "simulate carriers: write JSONL or produce to Kafka"


def _start(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time without UTC offset: {value!r}")
    return moment


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parcels", type=_positive_int, default=2000, help="parcels (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--out",
        metavar="FILE.jsonl",
        help="write events here (arrival order) and the ground truth to FILE.truth.jsonl",
    )
    parser.add_argument(
        "--no-surge", action="store_true", help="flat registration rate (no Singles Day surge)"
    )
    parser.add_argument(
        "--start",
        type=_start,
        default=DEFAULT_START,
        help="scenario start, ISO-8601 with offset (default 2026-11-10T16:00:00Z)",
    )
    parser.add_argument(
        "--registration-hours",
        type=float,
        default=72.0,
        help="registrations are spread over this many hours (default 72)",
    )
    parser.add_argument(
        "--domestic-share", type=float, default=0.3, help="share of CN->CN parcels (default 0.3)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    kafka = parser.add_argument_group("Kafka mode")
    kafka.add_argument(
        "--rate",
        type=float,
        metavar="EVENTS_PER_S",
        help="produce to Kafka at this rate instead of writing a file (0: as fast as possible)",
    )
    kafka.add_argument(
        "--bootstrap",
        default=None,
        help="Kafka bootstrap servers (default: TRACKBONE_KAFKA_BOOTSTRAP, else the local broker)",
    )
    kafka.add_argument(
        "--topic-prefix", default=None, help="topic name prefix (default: TRACKBONE_TOPIC_PREFIX)"
    )
    kafka.add_argument(
        "--truth", metavar="FILE.jsonl", help="Kafka mode: also write the ground truth here"
    )


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    base = Scenario()
    return replace(
        base,
        parcels=args.parcels,
        seed=args.seed,
        start=args.start,
        registration_hours=args.registration_hours,
        surge=None if args.no_surge else base.surge,
        domestic_share=args.domestic_share,
    )


class ProgressBar:
    """A dependency-free progress bar on stderr (one line per 10% when not a terminal)."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream: TextIO = sys.stderr if stream is None else stream
        self.width = width
        self.started = time.perf_counter()
        self.tty = self.stream.isatty()
        self._last_decile = -1

    def update(self, registered: int, completed: int, events: int) -> None:
        """Registration and completion each count for half: both move, neither alone says much."""
        fraction = min((registered + completed) / (2 * self.total), 1.0)
        elapsed = time.perf_counter() - self.started
        rate = events / elapsed if elapsed > 0 else 0.0
        text = (
            f"{registered}/{self.total} registered, {completed} done, "
            f"{events:,} events, {rate:,.0f} events/s"
        )
        if self.tty:
            filled = int(fraction * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {fraction:6.1%} {text}")
            self.stream.flush()
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            self.stream.write(f"{fraction:6.1%} {text}\n")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def print_summary(summary: dict[str, Any], elapsed_s: float, out: TextIO | None = None) -> None:
    out = sys.stdout if out is None else out
    events = summary["events"]
    rate = events / elapsed_s if elapsed_s > 0 else 0.0
    rows = [
        ("parcels", f"{summary['parcels']} ({summary['domestic']} domestic)"),
        ("events", f"{events} in {elapsed_s:.2f} s ({rate:,.0f} events/s)"),
        ("lanes", f"{summary['lanes']} ({summary['destination_countries']} destination countries)"),
        ("duplicates", summary["duplicates"]),
        ("voids", f"{summary['voids']} ({summary['false_deliveries']} false deliveries)"),
        (
            "late uploads",
            f"{summary['late_uploads']} events in {summary['late_batches']} batches, "
            f"{summary['late_registrations']} late registrations",
        ),
        ("out of order", summary.get("out_of_order", "-")),
        ("missing scans", summary["missing_scans"]),
        ("customs holds", summary["holds"]),
        ("refusals", summary["refusals"]),
        ("returns", summary["returns"]),
        ("failed attempts", summary["failed_attempts"]),
        ("lost", summary["lost"]),
        ("delivered", f"{summary['delivered']} (on time {summary['on_time_share']})"),
    ]
    for name, value in rows:
        print(f"{name:>16}: {value}", file=out)
    for key in ("events_file", "truth_file"):
        if key in summary:
            print(f"{key.replace('_', ' '):>16}: {summary[key]}", file=out)


@dataclass
class TokenBucket:
    """Paces a sequence at `rate` per second with bursts up to `capacity` tokens.

    Pure arithmetic over the times it is given, so it is testable without a clock.
    """

    rate: float
    capacity: float
    tokens: float = 0.0
    last: float | None = None

    def wait_time(self, now: float, n: int = 1) -> float:
        """Take n tokens at `now`; return how long to wait before sending them."""
        if self.last is None:
            self.last = now
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate


async def produce_simulation(
    scenario: Scenario,
    settings: Settings,
    bootstrap: str,
    rate: float,
    *,
    truth_out: Path | None = None,
    progress: ProgressBar | None = None,
) -> dict[str, Any]:
    """Produce the scenario's events in arrival order as Avro, paced at `rate` events/s."""
    from aiokafka import AIOKafkaProducer

    from streams import carrier_auth
    from streams.avro import encode_event, topic_base_for
    from streams.kafka_io import ensure_contract_topics, security_options

    if not settings.kafka_security_protocol.startswith("SASL"):
        await ensure_contract_topics(settings, bootstrap)  # secured: the admin's job
    sign = carrier_auth.signer(settings)
    topics: dict[str, str] = {}
    truth_file = truth_out.open("wb") if truth_out is not None else None

    completed = 0

    def on_truth(truth: GroundTruth) -> None:
        nonlocal completed
        completed += 1
        if truth_file is not None:
            truth_file.write(orjson.dumps(truth.to_json()) + b"\n")

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="trackbone-simulator",
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
        **security_options(settings),
    )
    await producer.start()
    sim = Simulation(scenario, on_truth)
    bucket = TokenBucket(rate, capacity=max(1.0, rate / 20)) if rate > 0 else None
    pending: list[asyncio.Future[Any]] = []
    sent = failed = 0
    chunk = max(1, min(500, int(rate / 50) if rate > 0 else 500))
    first_error: BaseException | None = None
    loop = asyncio.get_running_loop()

    async def settle() -> None:
        nonlocal sent, failed, first_error
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                failed += 1
                first_error = first_error or outcome
            else:
                sent += 1
        pending.clear()

    try:
        count = 0
        for count, item in enumerate(sim.events(), start=1):
            event = item.event
            base = topic_base_for(event)
            topic = topics.get(base)
            if topic is None:
                topic = topics[base] = settings.topics.name(base)
            key, value = event.parcel_id.encode(), encode_event(event)
            headers = sign(event, key, value) if sign is not None else None
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            if count % chunk == 0:
                if bucket is not None:
                    wait = bucket.wait_time(loop.time(), chunk)
                    if wait > 0:
                        await asyncio.sleep(wait)  # pacing, not synchronisation
                if len(pending) >= 20_000:
                    await settle()
                if progress is not None and count % (chunk * 20) == 0:
                    progress.update(sim.stats.parcels, completed, count)
        await producer.flush()
        await settle()
    finally:
        await producer.stop()
        if truth_file is not None:
            truth_file.close()
    if progress is not None:
        progress.update(sim.stats.parcels, completed, sim.stats.events)
    summary = sim.stats.to_json()
    summary["sent"] = sent
    summary["failed"] = failed
    summary["bootstrap"] = bootstrap
    if first_error is not None:
        summary["first_error"] = repr(first_error)
    if truth_out is not None:
        summary["truth_file"] = str(truth_out)
    return summary


def run(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    progress = None if args.quiet else ProgressBar(scenario.parcels)
    started = time.perf_counter()
    if args.rate is None:
        if not args.out:
            print("trackbone simulate: give --out FILE.jsonl, or --rate for Kafka", file=sys.stderr)
            return 2
        try:
            summary = write_jsonl(
                scenario, args.out, progress.update if progress is not None else None
            )
        except OSError as exc:
            print(f"trackbone simulate: {exc}", file=sys.stderr)
            return 2
        finally:
            if progress is not None:
                progress.close()
        print_summary(summary, time.perf_counter() - started)
        return 0

    settings, bootstrap = kafka_target(args)
    truth_out = Path(args.truth) if args.truth else (truth_path(args.out) if args.out else None)
    try:
        summary = asyncio.run(
            produce_simulation(
                scenario, settings, bootstrap, args.rate, truth_out=truth_out, progress=progress
            )
        )
    finally:
        if progress is not None:
            progress.close()
    print_summary(summary, time.perf_counter() - started)
    print(f"{'sent':>16}: {summary['sent']} to {bootstrap} ({summary['failed']} failed)")
    if summary["failed"]:
        print(f"trackbone simulate: {summary.get('first_error')}", file=sys.stderr)
        return 1
    return 0
