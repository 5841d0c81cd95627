"""`trackbone fold`: fold a JSONL file of events into per-parcel state, no Kafka.

The same processing core as the stream processor (`projections.core.process`), in
file order, so duplicates, conflicts (first received wins) and the per-parcel record cap behave
as they do in production. Output: one JSON object per parcel, sorted by parcel_id.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import IO

import orjson

from projections import core
from projections.events import Event, ParcelRegistered
from projections.fold import MAX_EVENTS, ParcelState, state_to_json
from projections.jsonform import InvalidEvent, parse_event
from streams.commands import open_input

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


def _decode_line(raw: bytes) -> Event:
    """A JSON line to an event; ValueError with the line's problem otherwise."""
    try:
        event = parse_event(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc}") from None
    except InvalidEvent as exc:
        raise ValueError(str(exc)) from None
    problem = _range_problem(event)
    if problem is not None:
        raise ValueError(problem)
    return event


_PROBLEM_KIND = {"invalid": "invalid", "conflict": "conflicts", "over_cap": "over_cap"}
_PROBLEM_PREFIX = {"invalid": "", "conflict": "conflict: ", "over_cap": "over cap: "}


def fold_lines(
    lines: Iterable[bytes],
    out: IO[str],
    err: IO[str],
    *,
    max_events: int = MAX_EVENTS,
    batch_lines: int = 10_000,
) -> dict[str, int]:
    """Fold JSON lines through the processing core, states to `out`, problems to `err`."""
    states: dict[str, ParcelState] = {}
    counts = {"lines": 0, "events": 0, "invalid": 0, "duplicates": 0, "conflicts": 0, "over_cap": 0}
    rules = core.Rules(max_events=max_events, check_keys=False)
    empty = core.Stored(None)

    def load(key: bytes) -> core.Stored:
        state = states.get(key.decode())
        return empty if state is None else core.Stored(state)

    def fold_batch(records: list[core.Record]) -> None:
        batch = core.process(records, 0, load, _decode_line, rules)
        for key, change in batch.changes.items():
            if change.stored.state is not None:
                states[key.decode()] = change.stored.state
        counts["duplicates"] += batch.duplicates
        counts["events"] += batch.records
        for dead in batch.dead_letters:
            kind, _, detail = dead.reason.partition(": ")
            counts[_PROBLEM_KIND.get(kind, "invalid")] += 1
            if kind == "invalid":
                counts["events"] -= 1  # not an event: the line is reported and skipped
            err.write(f"line {dead.record.offset}: {_PROBLEM_PREFIX.get(kind, '')}{detail}\n")

    records: list[core.Record] = []
    for number, raw in enumerate(lines, start=1):
        counts["lines"] = number
        if not raw.strip():
            continue
        records.append(core.Record(None, raw, number))
        if len(records) >= batch_lines:
            fold_batch(records)
            records = []
    if records:
        fold_batch(records)
    parcels = 0
    for parcel_id in sorted(states):
        state = states[parcel_id]
        if state.is_visible:  # rule 10: an empty effective set has no state
            parcels += 1
            out.write(orjson.dumps(state_to_json(state)).decode() + "\n")
    counts["parcels"] = parcels
    return counts


def run(args: argparse.Namespace) -> int:
    with open_input(args.input) as handle:
        counts = fold_lines(handle, sys.stdout, sys.stderr, max_events=args.max_events)
    print(
        f"trackbone fold: {counts['lines']} lines read, {counts['events']} events, "
        f"{counts['invalid']} invalid, {counts['duplicates']} duplicates, "
        f"{counts['conflicts']} conflicting, {counts['over_cap']} over cap; "
        f"{counts['parcels']} parcels",
        file=sys.stderr,
    )
    return 0
