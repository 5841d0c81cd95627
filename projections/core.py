"""The processing core: (stored parcels, a batch of input records) -> (stored parcels, outputs).

Every rule the worker applies to arriving records lives here, once: the contract
check on the key, the fold (`fold.step`), redelivery after a crash, milestone
changes, the alert rules (customs hold, breach, at-risk, stuck) and the ETA
observations of delivered parcels. The worker, the batch replay, `trackbone fold`,
the benchmark and the ETA evaluation call `process`; none of them restates a rule.

Plain data in, plain data out: decoding is a parameter (the Avro codec lives beside
the schemas), estimates are a parameter (the lane statistics live in a table), and
time is the stream's (event times), never a clock.

Within one batch the last state per parcel is what the caller stores (one table
write and one changelog record per parcel) and the only status it sends (the status
topic is compacted: the last value per key is the one that counts). Milestones,
alerts and event deltas are kept in arrival order.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from projections import eta
from projections import fold as fold_
from projections.events import Event
from projections.jsonform import format_time
from projections.milestones import Milestone

__all__ = [
    "SOURCES",
    "Authorizer",
    "Batch",
    "DeadLetter",
    "Delta",
    "ParcelChange",
    "Record",
    "Rules",
    "Stored",
    "finish",
    "observation_messages",
    "process",
    "stuck_alerts",
    "stuck_since",
]

SOURCES = 5
"""Input topics (registrations, scans, handoffs, customs, corrections)."""

NO_OFFSET = -1
TERMINAL = frozenset({Milestone.DELIVERED, Milestone.RETURNED})
_HIGH_WATER = struct.Struct(f"<{SOURCES}q")

Decoder = Callable[[Any], Event]
"""Record value -> event; raises ValueError (with the reason) for anything invalid."""
Estimator = Callable[[fold_.ParcelState], "eta.Estimate | None"]


class Record(NamedTuple):
    """An input record as the core sees it: Kafka's key and value and its position."""

    key: bytes | None
    value: Any
    """The record's bytes (or whatever the decoder reads: a JSON line, an event)."""
    offset: int
    timestamp_ms: int = 0
    headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None = None
    """Kafka's record headers (the carrier's signature), when the record came from Kafka."""


Authorizer = Callable[[Record, Event], "str | None"]
"""May this record's sender report this event? None: yes; else why not (dead-lettered)."""


@dataclass(slots=True)
class Stored:
    """A parcel-state table value: per-input-topic high-water offsets, then the fold state.

    The high-water offsets tell a redelivery after a crash (offset not above the mark:
    its outputs may not have reached Kafka, so they are sent again) from a repeat a
    carrier sent (a plain duplicate).
    """

    state: fold_.ParcelState | None
    high_water: tuple[int, ...] = (NO_OFFSET,) * SOURCES
    on_time_probability: float | None = None
    """Of the last status sent (memory only): makes the at-risk alert edge-triggered."""
    encoded: bytes | None = None
    """The table bytes this value was read from or written as (memory only)."""

    def encode(self) -> bytes:
        if self.encoded is None:
            assert self.state is not None
            self.encoded = _HIGH_WATER.pack(*self.high_water) + fold_.encode_state(self.state)
        return self.encoded

    @classmethod
    def decode(cls, data: bytes | None) -> Stored:
        if not data:
            return cls(None)
        state = fold_.decode_state(data[_HIGH_WATER.size :])
        return cls(state, _HIGH_WATER.unpack_from(data), encoded=data)


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings the domain rules depend on."""

    max_events: int = fold_.MAX_EVENTS
    risk_threshold: float = 0.5
    estimate: Estimator | None = None
    """ETA for a state (None: statuses carry no ETA, no at-risk alerts, no observations)."""
    check_keys: bool = True
    """Kafka records must be keyed by their event's parcel_id; files have no keys."""
    max_future_ms: int | None = None
    """An event this far after its record's timestamp is dead-lettered (``future``): a
    unit mistake (micro- for milliseconds) or a wrong year would otherwise move stream
    time, and with it lateness and stuck checks, for every parcel of the partition."""
    authorize: Authorizer | None = None
    """Carrier identity (``streams.carrier_auth``); None: every sender may report anything."""


@dataclass(slots=True)
class ParcelChange:
    """A parcel touched by a batch: what to store, and whether a status goes out."""

    before: Stored
    stored: Stored
    status: bool = False
    """Send a status for `stored.state` (it changed, or its outputs are being re-sent)."""
    tombstone: bool = False
    """Every event voided: the parcel leaves the status topic."""
    estimate: eta.Estimate | None = None
    deltas: list[Delta] = field(default_factory=list)
    """Changes of the effective event set, in order (the sink keeps one row per event)."""
    source_ts: int = 0
    """Kafka time of the newest input that changed it (latency measurement)."""


class Delta(NamedTuple):
    """An event entering (`added`) or leaving a parcel's effective set at `version`."""

    added: bool
    event: Event
    version: int
    raw: bytes | None
    """The record's own bytes when the event is the one that arrived (encode once)."""


class DeadLetter(NamedTuple):
    record: Record
    reason: str
    """``kind: detail``; the kind (before the colon) labels the metrics."""


@dataclass(slots=True)
class Batch:
    """The outputs of one batch, for the runtime to store and send."""

    changes: dict[bytes, ParcelChange] = field(default_factory=dict)
    milestones: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    alerts: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    observations: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    event_time: int = 0
    """The latest event time seen in the batch (stream time)."""

    def dead_reasons(self) -> dict[str, int]:
        reasons: dict[str, int] = {}
        for dead in self.dead_letters:
            kind = dead.reason.split(":", 1)[0]
            reasons[kind] = reasons.get(kind, 0) + 1
        return reasons


def process(
    records: Iterable[Record],
    source: int,
    load: Callable[[bytes], Stored],
    decode: Decoder,
    rules: Rules,
    into: Batch | None = None,
) -> Batch:
    """Fold a batch of records from one input topic (index `source`) into their parcels.

    `load` returns a parcel's stored value (`Stored(None)` when unknown); it is called
    at most once per parcel per batch. Passing `into` accumulates several sources into
    one batch (the replay does), since a parcel's change is keyed by parcel.
    """
    batch = Batch() if into is None else into
    changes = batch.changes
    step = fold_.step
    applied_outcome = fold_.Outcome.APPLIED
    duplicate_outcome = fold_.Outcome.DUPLICATE
    max_events = rules.max_events
    check_keys = rules.check_keys
    max_future = rules.max_future_ms
    authorize = rules.authorize
    event_time = batch.event_time
    count = applied = duplicates = 0
    for record in records:
        count += 1
        key = record.key
        try:
            event = decode(record.value or b"")
        except ValueError as exc:  # the codec's DecodeError: bytes, schema or contract
            batch.dead_letters.append(DeadLetter(record, f"invalid: {exc}"))
            continue
        try:
            if not check_keys:
                key = event.parcel_id.encode()
            elif key is None or key.decode("utf-8", "replace") != event.parcel_id:
                reason = f"invalid: message key {key!r} is not the event's parcel_id"
                batch.dead_letters.append(DeadLetter(record, reason))
                continue
            if authorize is not None and (denied := authorize(record, event)) is not None:
                batch.dead_letters.append(DeadLetter(record, f"unauthorized: {denied}"))
                continue
            ahead = event.event_time - record.timestamp_ms
            if max_future is not None and record.timestamp_ms and ahead > max_future:
                reason = (
                    f"future: event_time is {ahead / 3_600_000:,.1f} h after its record was "
                    f"produced (limit {max_future / 3_600_000:g} h)"
                )
                batch.dead_letters.append(DeadLetter(record, reason))
                continue
            if event.event_time > event_time:
                event_time = event.event_time
            change = changes.get(key)
            if change is None:
                before = load(key)
                change = changes[key] = ParcelChange(before, before)
            current = change.stored
            result = step(current.state, event, max_events=max_events)
            outcome = result.outcome
            if outcome is duplicate_outcome:
                duplicates += 1
                if (
                    record.offset <= current.high_water[source]
                    and current.state is not None
                    and current.state.event_count > 0
                ):
                    # Redelivered after a crash: what it wrote may not have reached Kafka.
                    change.status = True
                    change.source_ts = max(change.source_ts, record.timestamp_ms)
                continue
            if outcome is not applied_outcome:
                reason = f"{outcome.value.lower()}: {result.reason}"
                batch.dead_letters.append(DeadLetter(record, reason))
                continue
            applied += 1
            state = result.state
            assert state is not None
            high_water = current.high_water
            if record.offset > high_water[source]:
                high_water = (*high_water[:source], record.offset, *high_water[source + 1 :])
            change.stored = Stored(state, high_water, current.on_time_probability)
            if not result.changed:
                # Accepted without a visible change (a void before its target, or the
                # target after its void): the version moved, so the status is sent again
                # and its version always equals the stored state's (what verify checks).
                change.status = True
                change.source_ts = record.timestamp_ms
                continue
            version = state.version
            raw = record.value
            deltas = change.deltas
            for ev in result.added:
                deltas.append(Delta(True, ev, version, raw if ev is event else None))
            for ev in result.removed:
                deltas.append(Delta(False, ev, version, None))
            change.source_ts = record.timestamp_ms
            _step_outputs(batch, key, current.state, state, event.event_time, rules)
        except Exception as exc:  # a bug must cost one record, never the worker
            batch.dead_letters.append(DeadLetter(record, f"internal: {exc!r}"))
    batch.records += count
    batch.applied += applied
    batch.duplicates += duplicates
    batch.event_time = event_time
    return batch


def finish(batch: Batch, rules: Rules) -> Batch:
    """Decide each touched parcel's status once, against its last state in the batch."""
    estimate = rules.estimate
    for key, change in batch.changes.items():
        state = change.stored.state
        if state is None:
            continue
        if state.event_count == 0:  # nothing effective: a tombstone at most, never a status
            before = change.before.state
            if change.deltas:
                change.tombstone = before is not None and before.event_count > 0
            change.status = False
            continue
        if not (change.status or change.deltas):
            continue
        change.status = True
        if estimate is None:
            continue
        change.estimate = found = estimate(state)
        probability = None if found is None else found.on_time_probability
        if change.deltas and _fell_at_risk(change, probability, rules):
            assert found is not None
            batch.alerts.append(
                (
                    key,
                    _alert(
                        "PROMISE_AT_RISK",
                        state,
                        state.last_event_time,
                        promised_at=state.promised_at,
                        on_time_probability=probability,
                        eta_p50_at=found.eta_p50_ms,
                    ),
                )
            )
        change.stored.on_time_probability = probability
    return batch


def _fell_at_risk(change: ParcelChange, probability: float | None, rules: Rules) -> bool:
    """Edge-triggered: the chance of meeting the promise just fell below the threshold."""
    threshold = rules.risk_threshold
    if probability is None or probability >= threshold:
        return False
    before = change.before.state
    if before is None or before.event_count == 0:
        return True
    previous = change.before.on_time_probability
    if previous is None and rules.estimate is not None:
        # Not in memory (restart, rebalance): estimate the stored state again.
        estimate = rules.estimate(before)
        previous = None if estimate is None else estimate.on_time_probability
    return previous is None or previous >= threshold


def _step_outputs(
    batch: Batch,
    key: bytes,
    before: fold_.ParcelState | None,
    after: fold_.ParcelState,
    at: int,
    rules: Rules,
) -> None:
    """Milestone change, edge-triggered alerts and ETA observations of one applied step."""
    if after.event_count == 0:
        return
    if before is None or before.milestone is not after.milestone:
        previous = None if before is None else before.milestone.value
        batch.milestones.append(
            (
                key,
                {
                    "parcel_id": after.parcel_id,
                    "milestone": after.milestone.value,
                    "previous": previous,
                    "at": format_time(after.last_event_time),
                    "version": after.version,
                },
            )
        )
    held_before = before is not None and "CUSTOMS_HOLD" in before.holds
    if "CUSTOMS_HOLD" in after.holds and not held_before:
        batch.alerts.append((key, _alert("CUSTOMS_HOLD_STARTED", after, at)))
    if _breached(after) and not _breached(before):
        batch.alerts.append(
            (key, _alert("PROMISE_BREACHED", after, at, promised_at=after.promised_at))
        )
    if rules.estimate is not None:
        batch.observations.extend(observation_messages(before, after))


def _breached(state: fold_.ParcelState | None) -> bool:
    if state is None or state.promised_at is None:
        return False
    if state.delivered_at is not None:
        return state.delivered_at > state.promised_at
    if state.milestone is Milestone.RETURNED:
        return False
    return state.last_event_time is not None and state.last_event_time > state.promised_at


def _alert(kind: str, state: fold_.ParcelState, at: int | None, **detail: Any) -> dict[str, Any]:
    return {
        "alert": kind,
        "parcel_id": state.parcel_id,
        "at": format_time(at),
        "milestone": state.milestone.value,
        "version": state.version,
        **{k: format_time(v) if k.endswith("_at") else v for k, v in detail.items()},
    }


def observation_messages(
    before: fold_.ParcelState | None, after: fold_.ParcelState
) -> list[tuple[bytes, bytes]]:
    """(level key, body) messages for a change in a parcel's delivery facts, if any.

    A correction retracts what was learned (`"s": -1`) before the new facts are added.
    """
    old = eta.observation_from(before) if before is not None else []
    new = eta.observation_from(after)
    if old == new:
        return []
    messages: list[tuple[bytes, bytes]] = []
    for sign, observations in ((-1, old), (1, new)):
        if not observations:
            continue
        lane = observations[0].lane
        body = {
            "s": sign,
            "l": [lane.origin_country, lane.origin_city, lane.destination_country, lane.service],
            "o": [[o.milestone, o.duration_ms] for o in observations],
        }
        for level in lane.level_keys():
            level_key = eta.encode_level_key(level)
            messages.append((level_key.encode(), orjson.dumps(body | {"k": level_key})))
    return messages


# --- stuck parcels -----------------------------------------------------------------


def stuck_since(state: fold_.ParcelState | None) -> int | None:
    """The time a parcel could be stuck from (its last event), or None if it cannot be."""
    if state is None or state.event_count == 0 or state.milestone in TERMINAL:
        return None
    return state.last_event_time


def stuck_alerts(
    candidates: Sequence[tuple[bytes, fold_.ParcelState]], watermark: int
) -> list[tuple[bytes, dict[str, Any]]]:
    """PARCEL_STUCK alerts for parcels silent since before the threshold, at `watermark`."""
    return [
        (key, _alert("PARCEL_STUCK", state, watermark, last_event_at=state.last_event_time))
        for key, state in candidates
        if stuck_since(state) is not None
    ]
