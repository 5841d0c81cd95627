"""`trackbone fold`: fold a JSONL file of events into per-parcel state, no Kafka.

The same incremental `step` as the stream processor, record by record in file order,
so duplicates, conflicts (first received wins) and the per-parcel record cap behave
as they do in production. Output: one JSON object per parcel, sorted by parcel_id.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import IO

import orjson

from projections.events import Event, ParcelRegistered
from projections.fold import MAX_EVENTS, Outcome, ParcelState, state_to_json, step
from projections.jsonform import InvalidEvent, parse_event

# RFC 3339 output needs years 1..9999; the JSON form accepts any integer millis.
_MIN_MS = -62_135_596_800_000
_MAX_MS = 253_402_300_799_999
_HOUR_MS = 3_600_000


def _range_problem(event: Event) -> str | None:
    if not _MIN_MS <= event.event_time <= _MAX_MS:
        return f"field 'event_time': {event.event_time} is outside years 1..9999"
    if isinstance(event, ParcelRegistered):
        promised_at = event.event_time + event.effective_promised_hours * _HOUR_MS
        if promised_at > _MAX_MS:
            return "field 'promised_hours': the promise falls after year 9999"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        metavar="FILE.jsonl",
        help="events in the contract's JSON form, one per line ('-' reads standard input)",
    )
    parser.add_argument(
        "--max-events",
        type=int,
        default=MAX_EVENTS,
        help=f"records kept per parcel; later ones are reported and dropped (default {MAX_EVENTS})",
    )


def fold_lines(
    lines: Iterable[bytes], out: IO[str], err: IO[str], *, max_events: int = MAX_EVENTS
) -> dict[str, int]:
    """Fold JSON lines, write states to `out` and problems to `err`; return the counts."""
    states: dict[str, ParcelState] = {}
    counts = {"lines": 0, "events": 0, "invalid": 0, "duplicates": 0, "conflicts": 0, "over_cap": 0}
    for number, raw in enumerate(lines, start=1):
        counts["lines"] = number
        if not raw.strip():
            continue
        try:
            event = parse_event(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            counts["invalid"] += 1
            err.write(f"line {number}: malformed JSON: {exc}\n")
            continue
        except InvalidEvent as exc:
            counts["invalid"] += 1
            err.write(f"line {number}: {exc}\n")
            continue
        problem = _range_problem(event)
        if problem is not None:
            counts["invalid"] += 1
            err.write(f"line {number}: {problem}\n")
            continue
        counts["events"] += 1
        result = step(states.get(event.parcel_id), event, max_events=max_events)
        if result.outcome is Outcome.APPLIED:
            assert result.state is not None
            states[event.parcel_id] = result.state
        elif result.outcome is Outcome.DUPLICATE:
            counts["duplicates"] += 1
        elif result.outcome is Outcome.CONFLICT:
            counts["conflicts"] += 1
            err.write(f"line {number}: conflict: {result.reason}\n")
        else:
            counts["over_cap"] += 1
            err.write(f"line {number}: over cap: {result.reason}\n")
    parcels = 0
    for parcel_id in sorted(states):
        state = states[parcel_id]
        if state.is_visible:  # rule 10: an empty effective set has no state
            parcels += 1
            out.write(orjson.dumps(state_to_json(state)).decode() + "\n")
    counts["parcels"] = parcels
    return counts


def run(args: argparse.Namespace) -> int:
    if args.input == "-":
        counts = fold_lines(sys.stdin.buffer, sys.stdout, sys.stderr, max_events=args.max_events)
    else:
        try:
            handle = open(args.input, "rb")  # noqa: SIM115 (closed below, streamed line by line)
        except OSError as exc:
            print(f"trackbone fold: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
            return 2
        with handle:
            counts = fold_lines(handle, sys.stdout, sys.stderr, max_events=args.max_events)
    print(
        f"trackbone fold: {counts['lines']} lines read, {counts['events']} events, "
        f"{counts['invalid']} invalid, {counts['duplicates']} duplicates, "
        f"{counts['conflicts']} conflicting, {counts['over_cap']} over cap; "
        f"{counts['parcels']} parcels",
        file=sys.stderr,
    )
    return 0
