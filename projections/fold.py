"""The fold: a parcel's state as a pure function of its set of events (contract, section 3).

`step` is the incremental form the stream processor calls once per arriving record
against the stored state; `fold` is the batch form over a whole set. Both give the
same state for the same set of records whatever the arrival order (conflicting
repeats of rule 1 aside, where the first received wins), and the property tests hold
them to that.

The state keeps a compact log so that `step` can stay exact when events arrive late,
twice, or voided before they exist:

- `effective`: the effective set in walk order (`event_time`, `event_id`), i.e. the
  timeline.
- `extra`: the other accepted records (voids, and events they voided), by event_id;
  usually empty. `effective` + `extra` are all records (bounded by `max_events`) and
  answer "seen before? with the same content?".
- `void_targets`: the ids named by voids, so an event arriving after its void is
  dropped without a walk.
- `id_index`: every record's id between NUL separators, a filter that lets the hot
  path rule out a repeat without touching the stored events. Extending it copies a
  few hundred bytes; a tuple of ids or records would have to touch (incref) every
  stored object, which cost about a third of the in-order time at scale.

The log is kept in canonical orders (not arrival order; `id_index` is left out of
`==`), so the whole state is equal for any arrival order, which keeps `==`
meaningful in tests.

An event that sorts after the last effective event (the usual in-order arrival) is
folded onto the previous derived values without re-walking history; anything else
(a late event, a void removing an event) re-walks the effective set, which is at
most `max_events` long.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any

import orjson

from projections.events import (
    CustomsDirection,
    CustomsStatus,
    CustomsStatusRecorded,
    Event,
    EventVoided,
    ParcelHandedOver,
    ParcelRegistered,
    ParcelScanned,
    Scan,
    Service,
    VoidReason,
    intern_location,
    intern_place,
    positional_constructor,
)
from projections.jsonform import format_time
from projections.milestones import (
    CUSTOMS_HOLD,
    CUSTOMS_MILESTONE,
    CUSTOMS_REFUSED,
    FORWARD_RANK,
    SCAN_MILESTONE,
    Milestone,
)

__all__ = [
    "MAX_EVENTS",
    "Milestone",
    "Outcome",
    "ParcelState",
    "Step",
    "apply",
    "decode_state",
    "encode_state",
    "fold",
    "fold_all",
    "state_to_json",
    "step",
]

MAX_EVENTS = 500
"""Default bound on stored records per parcel: keeps a runaway producer from growing one state."""

_HOUR_MS = 3_600_000
_SEP = "\x00"


class Outcome(StrEnum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"
    CONFLICT = "CONFLICT"
    OVER_CAP = "OVER_CAP"


Packed = tuple[bytes, bytes, int, tuple[int, ...] | None, bytes | None]
"""Already serialised pieces of a state's stored form: (head, rows, count, ends, extra).

`rows` are the first `count` effective records, comma-separated; `ends[i]` is where
record i ends in `rows` (None when unknown, e.g. after `decode_state`); `extra` the
extra records (None: to be serialised again).
"""


@dataclass(frozen=True, slots=True)
class ParcelState:
    """A parcel's folded state plus the compact log that keeps `step` exact.

    A state with `event_count == 0` can exist (a void arrived before its event, or
    every event was voided): it remembers ids and voids, but the contract says such
    a parcel has no state, so callers must not output it (see `is_visible`).
    """

    parcel_id: str
    milestone: Milestone
    holds: frozenset[str]
    attempts: int
    delivered_at: int | None
    custodian: str | None
    registered: bool
    event_count: int
    last_event_time: int | None
    origin_country: str | None = None
    origin_city: str | None = None
    destination_country: str | None = None
    destination_city: str | None = None
    service: str | None = None
    promised_hours: int | None = None
    """Effective promise: the event's, else 24 domestic / 72 international."""
    registered_at: int | None = None
    """event_time of the registration that defines the lane (the last in the walk)."""
    promised_at: int | None = None
    milestone_times: tuple[tuple[str, int], ...] = ()
    """Forward milestones in the order the walk raised them, with that event's time."""
    version: int = 0
    """Accepted input records so far (not duplicates, conflicts or over-cap); monotonic."""
    effective: tuple[Event, ...] = field(default=(), repr=False)
    extra: tuple[Event, ...] = field(default=(), repr=False)
    void_targets: tuple[str, ...] = field(default=(), repr=False)
    id_index: str = field(default=_SEP, repr=False, compare=False)
    packed: Packed | None = field(default=None, init=False, repr=False, compare=False)
    """Storage-form cache (see `Packed`), left out of `==` and of ``__init__`` and
    ``dataclasses.replace`` (so a replaced copy never carries pieces of another log).

    Filled by `encode_state` and `decode_state`. `step` hands on what stays valid:
    all of it on the in-order fast path (which only appends to `effective`), the
    effective rows before the insertion point for a late event or a void, so the
    next `encode_state` serialises only the records after that point.
    """

    def timeline(self) -> tuple[Event, ...]:
        """Return the effective events in walk order (`event_time`, then `event_id`)."""
        return self.effective

    def stored_records(self) -> tuple[Event, ...]:
        """Return every accepted record: the timeline, then voids and voided events."""
        return self.effective + self.extra

    @property
    def is_visible(self) -> bool:
        """False when the effective set is empty: rule 10 says such a parcel is not output."""
        return self.event_count > 0


@dataclass(frozen=True, slots=True)
class Step:
    """What one arriving record did to a parcel.

    `changed` is true when anything a consumer can see changed (the `state_to_json`
    fields, lane and promise); it is exactly "the effective set changed", since every
    such change moves `event_count`. `added`/`removed` are the delta of the effective
    set, for sinks that keep one row per effective event.
    """

    state: ParcelState | None
    outcome: Outcome
    changed: bool
    added: tuple[Event, ...] = ()
    removed: tuple[Event, ...] = ()
    reason: str | None = None


_fast_constructor = positional_constructor
"""Positional builders for frozen slots dataclasses (see `projections.events`): they pay."""

_new_state: Callable[..., ParcelState] = _fast_constructor(ParcelState)
_new_step: Callable[..., Step] = _fast_constructor(Step)

_NO_HOLDS: frozenset[str] = frozenset()
_HOLD_ONLY = frozenset({CUSTOMS_HOLD})
_REFUSED_ONLY = frozenset({CUSTOMS_REFUSED})
_NO_LANE: tuple[Any, ...] = (False, None, None, None, None, None, None, None, None)

_REGISTERED = Milestone.REGISTERED
# Enum members read through the class cost an attribute lookup each; the hot path uses these.
_ATTEMPTED = Scan.DELIVERY_ATTEMPTED
_HELD = CustomsStatus.HELD
_RELEASED = CustomsStatus.RELEASED
_REFUSED = CustomsStatus.REFUSED
_APPLIED = Outcome.APPLIED
_DUPLICATE = Outcome.DUPLICATE

# Inside the walk a milestone is an int code: its forward rank (0..9), RETURNING = 10,
# RETURNED = 11. A forward event then raises the milestone iff its rank is greater
# than the code, which is never the case once returning: rule 4 in one comparison.
_DELIVERED_CODE = FORWARD_RANK[Milestone.DELIVERED]
_RETURNING_CODE = 10
_RETURNED_CODE = 11
_BY_CODE: tuple[Milestone, ...] = (
    *sorted(FORWARD_RANK, key=FORWARD_RANK.__getitem__),
    Milestone.RETURNING,
    Milestone.RETURNED,
)
_CODE: dict[str, int] = {milestone: code for code, milestone in enumerate(_BY_CODE)}
_SCAN_CODE: dict[str, int] = {
    **{scan: FORWARD_RANK[milestone] for scan, milestone in SCAN_MILESTONE.items()},
    Scan.RETURN_INITIATED: _RETURNING_CODE,
}
_CUSTOMS_CODE: dict[str, int] = {
    direction: FORWARD_RANK[milestone] for direction, milestone in CUSTOMS_MILESTONE.items()
}


def _walk(
    events: Iterable[Event],
    milestone: Milestone,
    holds: frozenset[str],
    attempts: int,
    delivered_at: int | None,
    custodian: str | None,
    times: tuple[tuple[str, int], ...],
) -> tuple[
    Milestone,
    frozenset[str],
    int,
    int | None,
    str | None,
    ParcelRegistered | None,
    tuple[tuple[str, int], ...],
]:
    """Fold events (in walk order) onto derived values: the contract's rules 4-9.

    The one place the rules live: the full re-walk starts from the initial values,
    the in-order fast path starts from the previous state's. Returns the last
    registration among `events` (None if there was none, so the caller keeps its lane).
    """
    registration: ParcelRegistered | None = None
    code = _CODE[milestone]
    for event in events:
        cls = type(event)
        if cls is ParcelScanned:
            scan = event.scan  # type: ignore[union-attr]
            target = _SCAN_CODE[scan]
            if target == _DELIVERED_CODE:
                if holds and CUSTOMS_HOLD in holds:  # every DELIVERED lifts a hold (rule 5)
                    holds = holds - _HOLD_ONLY
                if code == _RETURNING_CODE:
                    code = _RETURNED_CODE
                    continue
            elif target == _RETURNING_CODE:
                if code != _RETURNED_CODE:  # RETURNED is terminal
                    code = _RETURNING_CODE
                continue
            elif scan == _ATTEMPTED:
                attempts += 1
        elif cls is CustomsStatusRecorded:
            status = event.status  # type: ignore[union-attr]
            if status == _HELD:
                holds = holds | _HOLD_ONLY
            elif status == _RELEASED:
                if holds:
                    holds = holds - _HOLD_ONLY
            elif status == _REFUSED:
                holds = (holds - _HOLD_ONLY) | _REFUSED_ONLY
            target = _CUSTOMS_CODE[event.direction]  # type: ignore[union-attr]
        elif cls is ParcelHandedOver:
            custodian = event.to_party  # type: ignore[union-attr]
            continue
        elif cls is ParcelRegistered:
            registration = event  # type: ignore[assignment]
            continue
        else:
            continue
        if target > code:  # forward events raise, never lower, never leave RETURNING
            code = target
            event_time = event.event_time
            times = (*times, (_BY_CODE[target], event_time))
            if target == _DELIVERED_CODE:
                delivered_at = event_time
    return _BY_CODE[code], holds, attempts, delivered_at, custodian, registration, times


def _lane(registration: ParcelRegistered) -> tuple[Any, ...]:
    """Lane, service and promise in field order, starting at `registered`."""
    hours = registration.effective_promised_hours
    at = registration.event_time
    return (
        True,
        registration.origin.country,
        registration.origin.city,
        registration.destination.country,
        registration.destination.city,
        str(registration.service),
        hours,
        at,
        at + hours * _HOUR_MS,
    )


_walk_key: Callable[[Event], tuple[int, str]] = attrgetter("event_time", "event_id")
"""Walk order of rule 3 (event_id compared as a plain string); a C-level key for bisect/sort."""


def _derive(
    parcel_id: str,
    effective: tuple[Event, ...],
    extra: tuple[Event, ...],
    void_targets: tuple[str, ...],
    id_index: str,
    version: int,
    packed: Packed | None = None,
) -> ParcelState:
    """Re-walk the whole effective set (already in walk order)."""
    milestone, holds, attempts, delivered_at, custodian, registration, times = _walk(
        effective, _REGISTERED, _NO_HOLDS, 0, None, None, ()
    )
    lane = _NO_LANE if registration is None else _lane(registration)
    return _new_state(
        parcel_id,
        milestone,
        holds,
        attempts,
        delivered_at,
        custodian,
        lane[0],
        len(effective),
        effective[-1].event_time if effective else None,
        *lane[1:],
        times,
        version,
        effective,
        extra,
        void_targets,
        id_index,
        packed,
    )


def _relog(
    state: ParcelState,
    extra: tuple[Event, ...],
    void_targets: tuple[str, ...],
    id_index: str,
) -> ParcelState:
    """Add a record that changes nothing derived (an early void, an already voided event)."""
    return _new_state(
        state.parcel_id,
        state.milestone,
        state.holds,
        state.attempts,
        state.delivered_at,
        state.custodian,
        state.registered,
        state.event_count,
        state.last_event_time,
        state.origin_country,
        state.origin_city,
        state.destination_country,
        state.destination_city,
        state.service,
        state.promised_hours,
        state.registered_at,
        state.promised_at,
        state.milestone_times,
        state.version + 1,
        state.effective,
        extra,
        void_targets,
        id_index,
        _still_packed(state.packed, state.event_count),
    )


def _still_packed(packed: Packed | None, count: int, same_extra: bool = False) -> Packed | None:
    """What of `packed` holds when effective[:count] stays (and `extra`, if `same_extra`)."""
    if packed is None:
        return None
    head, rows, done, ends, extra = packed
    if not same_extra:
        extra = None
    if count >= done:
        return head, rows, done, ends, extra
    if ends is None:  # record boundaries unknown: serialise again
        return None
    if count == 0:
        return head, b"", 0, (), extra
    return head, rows[: ends[count - 1]], count, ends[:count], extra


def _empty(parcel_id: str) -> ParcelState:
    """State of a parcel with no records yet: `_derive` of nothing, built directly."""
    return _new_state(
        parcel_id,
        _REGISTERED,
        _NO_HOLDS,
        0,
        None,
        None,
        *_NO_LANE[:1],
        0,
        None,
        *_NO_LANE[1:],
        (),
        0,
        (),
        (),
        (),
        _SEP,
        None,
    )


_id_key: Callable[[Event], str] = attrgetter("event_id")


def _with_extra(extra: tuple[Event, ...], record: Event) -> tuple[Event, ...]:
    at = bisect_left(extra, record.event_id, key=_id_key)
    return (*extra[:at], record, *extra[at:])


def _stored(state: ParcelState, event_id: str) -> Event | None:
    """Find the stored record with this id (called only when the index says maybe)."""
    for record in state.effective:
        if record.event_id == event_id:
            return record
    for record in state.extra:
        if record.event_id == event_id:
            return record
    return None


def _conflict_reason(first: Event, repeat: Event) -> str:
    if type(first) is not type(repeat):
        detail = f"first was {type(first).__name__}, repeat is {type(repeat).__name__}"
    else:
        differing = [
            f.name for f in fields(first) if getattr(first, f.name) != getattr(repeat, f.name)
        ]
        detail = "differs in " + ", ".join(differing)
    return (
        f"event_id {repeat.event_id!r} of parcel {repeat.parcel_id!r} repeated with different "
        f"content ({detail}); the first received is kept"
    )


def step(state: ParcelState | None, event: Event, *, max_events: int = MAX_EVENTS) -> Step:
    """Fold one arriving record into a parcel's stored state (None: nothing stored yet).

    The returned `Step.state` is never None: it may be invisible (`is_visible` false)
    and must then still be stored, so that a later event finds its void. Duplicates,
    conflicts and records over `max_events` leave the state as it was (same object).
    Raises ValueError for an event of another parcel: routing is the caller's job.
    """
    if state is None:
        state = _empty(event.parcel_id)
    elif event.parcel_id != state.parcel_id:
        raise ValueError(
            f"event {event.event_id!r} of parcel {event.parcel_id!r} "
            f"folded into the state of parcel {state.parcel_id!r}"
        )
    event_id = event.event_id
    id_index = state.id_index
    if f"\x00{event_id}\x00" in id_index:  # maybe seen: confirm against the records
        first = _stored(state, event_id)
        if first is not None:
            if first == event:
                return _new_step(state, _DUPLICATE, False, (), (), None)
            reason = _conflict_reason(first, event)
            return _new_step(state, Outcome.CONFLICT, False, (), (), reason)
    effective = state.effective
    extra = state.extra
    if len(effective) + len(extra) >= max_events:
        reason = (
            f"parcel {state.parcel_id!r} already holds {len(effective) + len(extra)} records "
            f"(limit {max_events}); event {event_id!r} dropped"
        )
        return _new_step(state, Outcome.OVER_CAP, False, (), (), reason)
    id_index = f"{id_index}{event_id}\x00"
    void_targets = state.void_targets

    if type(event) is EventVoided:
        target = event.voided_event_id
        at_target = bisect_left(void_targets, target)
        void_targets = (*void_targets[:at_target], target, *void_targets[at_target:])
        extra = _with_extra(extra, event)
        for index, candidate in enumerate(effective):
            if candidate.event_id == target:
                remaining = effective[:index] + effective[index + 1 :]
                new = _derive(
                    state.parcel_id,
                    remaining,
                    _with_extra(extra, candidate),
                    void_targets,
                    id_index,
                    state.version + 1,
                    _still_packed(state.packed, index),
                )
                return _new_step(new, _APPLIED, True, (), (candidate,), None)
        # Its target is not here yet, is a void (ignored), or is already voided.
        new = _relog(state, extra, void_targets, id_index)
        return _new_step(new, _APPLIED, False, (), (), None)

    if event_id in void_targets:  # arrived after its void: stored, never effective
        new = _relog(state, _with_extra(extra, event), void_targets, id_index)
        return _new_step(new, _APPLIED, False, (), (), None)

    event_time = event.event_time
    if effective:
        last = effective[-1]
        last_time = last.event_time
        in_order = event_time > last_time or (event_time == last_time and event_id > last.event_id)
    else:
        in_order = True
    if not in_order:
        index = bisect_left(effective, (event_time, event_id), key=_walk_key)
        effective = (*effective[:index], event, *effective[index:])
        new = _derive(
            state.parcel_id,
            effective,
            extra,
            void_targets,
            id_index,
            state.version + 1,
            _still_packed(state.packed, index, same_extra=True),
        )
        return _new_step(new, _APPLIED, True, (event,), (), None)

    # Fast path: the event extends the walk, so fold it onto the previous values.
    milestone, holds, attempts, delivered_at, custodian, registration, times = _walk(
        (event,),
        state.milestone,
        state.holds,
        state.attempts,
        state.delivered_at,
        state.custodian,
        state.milestone_times,
    )
    added = (event,)
    if registration is None:
        new = _new_state(
            state.parcel_id,
            milestone,
            holds,
            attempts,
            delivered_at,
            custodian,
            state.registered,
            state.event_count + 1,
            event_time,
            state.origin_country,
            state.origin_city,
            state.destination_country,
            state.destination_city,
            state.service,
            state.promised_hours,
            state.registered_at,
            state.promised_at,
            times,
            state.version + 1,
            effective + added,
            extra,
            void_targets,
            id_index,
            state.packed,
        )
    else:
        lane = _lane(registration)
        new = _new_state(
            state.parcel_id,
            milestone,
            holds,
            attempts,
            delivered_at,
            custodian,
            lane[0],
            state.event_count + 1,
            event_time,
            *lane[1:],
            times,
            state.version + 1,
            effective + added,
            extra,
            void_targets,
            id_index,
            state.packed,
        )
    return _new_step(new, _APPLIED, True, added, (), None)


def apply(state: ParcelState | None, event: Event) -> ParcelState | None:
    """`step` for callers that only want the state (the default cap applies)."""
    return step(state, event).state


def _from_records(parcel_id: str, records: Iterable[Event]) -> ParcelState:
    """Build the state of a set of distinct records (one per event_id), any order."""
    records = tuple(records)
    void_targets = tuple(sorted(r.voided_event_id for r in records if type(r) is EventVoided))
    voided = set(void_targets)
    effective: list[Event] = []
    extra: list[Event] = []
    for record in records:
        if type(record) is EventVoided or record.event_id in voided:
            extra.append(record)
        else:
            effective.append(record)
    effective.sort(key=_walk_key)
    extra.sort(key=_id_key)
    return _derive(
        parcel_id,
        tuple(effective),
        tuple(extra),
        void_targets,
        _SEP + "".join(r.event_id + _SEP for r in records),
        len(records),
    )


def fold(events: Iterable[Event]) -> ParcelState | None:
    """Batch fold of one parcel's events; None when its effective set is empty (rule 10).

    Repeats of an event_id keep the first (conflicts are not reported here: use `step`
    to see them). There is no record cap here, unlike `step`.
    """
    first_by_id: dict[str, Event] = {}
    parcel_id: str | None = None
    for event in events:
        if parcel_id is None:
            parcel_id = event.parcel_id
        elif event.parcel_id != parcel_id:
            raise ValueError(
                f"fold() takes one parcel's events: got {parcel_id!r} and {event.parcel_id!r}"
            )
        first_by_id.setdefault(event.event_id, event)
    if parcel_id is None:
        return None
    state = _from_records(parcel_id, first_by_id.values())
    return state if state.event_count else None


def fold_all(events: Iterable[Event]) -> dict[str, ParcelState]:
    """Fold a mixed stream; parcels with an empty effective set are omitted (rule 10).

    The result is ordered by parcel_id.
    """
    by_parcel: dict[str, list[Event]] = {}
    for event in events:
        by_parcel.setdefault(event.parcel_id, []).append(event)
    out: dict[str, ParcelState] = {}
    for parcel_id in sorted(by_parcel):
        state = fold(by_parcel[parcel_id])
        if state is not None:
            out[parcel_id] = state
    return out


def state_to_json(state: ParcelState) -> dict[str, Any]:
    """Build the `trackbone fold` output object (contract section 4); times in RFC 3339 UTC."""
    return {
        "parcel_id": state.parcel_id,
        "milestone": str(state.milestone),
        "delivered_at": format_time(state.delivered_at),
        "holds": sorted(state.holds),
        "attempts": state.attempts,
        "event_count": state.event_count,
        "custodian": state.custodian,
        "registered": state.registered,
        "last_event_time": format_time(state.last_event_time),
        "origin_country": state.origin_country,
        "destination_country": state.destination_country,
        "service": state.service,
        "promised_hours": state.promised_hours,
        "promised_at": format_time(state.promised_at),
        "registered_at": format_time(state.registered_at),
    }


# --- compact storage form ---------------------------------------------------------------
#
# The stored form is the record log only; everything derived is re-walked on decode, so
# a stored state can never disagree with its records and the fold rules may evolve
# without migrating stored values. Layout (orjson), the first element is the format:
#     [2, parcel_id, [effective record, ...], [extra record, ...]]   (written now)
#     [1, parcel_id, [record, ...]]                                  (read only)
#     record = [type, event_id, event_time, tz_offset_minutes, source, location, *fields]
#     location = null | [country, facility_id, city]
# parcel_id is stored once; enums as their symbols. Format 2 keeps the two parts of the
# log apart, in the state's canonical orders, so that an in-order append only adds one
# record's bytes to the effective part (see `ParcelState.packed`) and decoding needs no
# partition or sort. Format 1 (one list, effective then extra) is what earlier versions
# wrote; states of that format in tables and changelogs stay readable.

_FORMAT = 2
_FORMAT_V1 = 1
_REGISTERED_T, _SCANNED_T, _HANDED_T, _CUSTOMS_T, _VOIDED_T = range(5)
_SERVICES = {m.value: m for m in Service}
_SCANS = {m.value: m for m in Scan}
_DIRECTIONS = {m.value: m for m in CustomsDirection}
_STATUSES = {m.value: m for m in CustomsStatus}
_VOID_REASONS = {m.value: m for m in VoidReason}
_dumps = orjson.dumps


def _location_row(loc: Any) -> list[Any] | None:
    return None if loc is None else [loc.country, loc.facility_id, loc.city]


# One packer per record type (enums go to orjson as they are: it writes their values).
def _pack_scanned(e: Any) -> list[Any]:
    return [
        _SCANNED_T,
        e.event_id,
        e.event_time,
        e.tz_offset_minutes,
        e.source,
        _location_row(e.location),
        e.scan,
        e.raw_code,
    ]


def _pack_handed(e: Any) -> list[Any]:
    return [
        _HANDED_T,
        e.event_id,
        e.event_time,
        e.tz_offset_minutes,
        e.source,
        _location_row(e.location),
        e.from_party,
        e.to_party,
    ]


def _pack_customs(e: Any) -> list[Any]:
    return [
        _CUSTOMS_T,
        e.event_id,
        e.event_time,
        e.tz_offset_minutes,
        e.source,
        _location_row(e.location),
        e.direction,
        e.status,
        e.reason,
    ]


def _pack_voided(e: Any) -> list[Any]:
    return [
        _VOIDED_T,
        e.event_id,
        e.event_time,
        e.tz_offset_minutes,
        e.source,
        _location_row(e.location),
        e.voided_event_id,
        e.reason,
    ]


def _pack_registered(e: Any) -> list[Any]:
    return [
        _REGISTERED_T,
        e.event_id,
        e.event_time,
        e.tz_offset_minutes,
        e.source,
        _location_row(e.location),
        e.merchant_id,
        e.origin.country,
        e.origin.city,
        e.destination.country,
        e.destination.city,
        e.service,
        e.promised_hours,
    ]


_PACKERS: dict[type, Callable[[Any], list[Any]]] = {
    ParcelScanned: _pack_scanned,
    ParcelHandedOver: _pack_handed,
    CustomsStatusRecorded: _pack_customs,
    EventVoided: _pack_voided,
    ParcelRegistered: _pack_registered,
}


def _pack(event: Event) -> list[Any]:
    """The stored row of a record (layout above)."""
    return _PACKERS[type(event)](event)


def _row(event: Event) -> bytes:
    return _dumps(_PACKERS[type(event)](event))


def _rows(records: Iterable[Event]) -> bytes:
    """Serialised records, comma-separated: the inside of a JSON list."""
    return _dumps([_PACKERS[type(record)](record) for record in records])[1:-1]


def _head(parcel_id: str) -> bytes:
    return b"[2," + _dumps(parcel_id) + b",["


_COMMON = ("event_id", "parcel_id", "event_time", "tz_offset_minutes", "source", "location")
# Decoding builds every stored event: positional builders halve its cost (see above).
_new_scanned = _fast_constructor(ParcelScanned, (*_COMMON, "scan", "raw_code"))
_new_handed = _fast_constructor(ParcelHandedOver, (*_COMMON, "from_party", "to_party"))
_new_customs = _fast_constructor(CustomsStatusRecorded, (*_COMMON, "direction", "status", "reason"))
_new_voided = _fast_constructor(EventVoided, (*_COMMON, "voided_event_id", "reason"))
_new_registered = _fast_constructor(
    ParcelRegistered,
    (*_COMMON, "merchant_id", "origin", "destination", "service", "promised_hours"),
)


def _unpack(parcel_id: str, row: list[Any]) -> Event:
    """Event of a stored record: exact-length rows, interned locations and places."""
    kind = row[0]
    loc = row[5]
    location = None if loc is None else intern_location(*loc)
    if kind == _SCANNED_T:
        _, event_id, event_time, tz, source, _, scan, raw_code = row
        return _new_scanned(
            event_id, parcel_id, event_time, tz, source, location, _SCANS[scan], raw_code
        )
    if kind == _HANDED_T:
        _, event_id, event_time, tz, source, _, from_party, to_party = row
        return _new_handed(
            event_id, parcel_id, event_time, tz, source, location, from_party, to_party
        )
    if kind == _CUSTOMS_T:
        _, event_id, event_time, tz, source, _, direction, status, reason = row
        return _new_customs(
            event_id,
            parcel_id,
            event_time,
            tz,
            source,
            location,
            _DIRECTIONS[direction],
            _STATUSES[status],
            reason,
        )
    if kind == _VOIDED_T:
        _, event_id, event_time, tz, source, _, target, reason = row
        return _new_voided(
            event_id, parcel_id, event_time, tz, source, location, target, _VOID_REASONS[reason]
        )
    if kind == _REGISTERED_T:
        (
            _,
            event_id,
            event_time,
            tz,
            source,
            _,
            merchant,
            o_c,
            o_city,
            d_c,
            d_city,
            service,
            hours,
        ) = row
        return _new_registered(
            event_id,
            parcel_id,
            event_time,
            tz,
            source,
            location,
            merchant,
            intern_place(o_c, o_city),
            intern_place(d_c, d_city),
            _SERVICES[service],
            hours,
        )
    raise ValueError(f"stored state: unknown record type {kind!r}")


_set_packed: Callable[[ParcelState, Packed], None] = vars(ParcelState)["packed"].__set__
"""The slot's own setter: fills the cache of a frozen state (it is not part of `==`)."""


def encode_state(state: ParcelState) -> bytes:
    """Compact bytes for the Faust table: the record log only (derived values are re-walked).

    Format 2 (see above). Each record is serialised once: the pieces are kept in
    `state.packed` and handed on by `step`, so encoding a state only serialises the
    records it has that its predecessor's encoding did not cover (after an in-order
    event: that one record) and joins the pieces. The bytes are the same as a fresh
    encode of the same state. A 10-event parcel is about 1.2 KB (load/fold_bench.py).
    """
    packed = state.packed
    effective = state.effective
    if packed is None:
        packed = (_head(state.parcel_id), b"", 0, (), None)
    head, rows, done, ends, extra = packed
    if done == len(effective) and extra is not None:
        return b"".join((head, rows, b"],[", extra, b"]]"))
    if done < len(effective):
        added = [_row(record) for record in effective[done:]]
        if ends is not None:
            at = len(rows)
            for row in added:
                at += len(row) + 1 if at else len(row)
                ends = (*ends, at)
        rows = b",".join([rows, *added]) if rows else b",".join(added)
    if extra is None:
        extra = _rows(state.extra)
    _set_packed(state, (head, rows, len(effective), ends, extra))
    return b"".join((head, rows, b"],[", extra, b"]]"))


def _from_parts(
    parcel_id: str, effective: tuple[Event, ...], extra: tuple[Event, ...]
) -> ParcelState:
    """State of a format-2 log, checking that its parts are what `encode_state` writes."""
    void_targets = tuple(sorted(r.voided_event_id for r in extra if type(r) is EventVoided))
    voided = frozenset(void_targets)
    ids = [r.event_id for r in effective]
    previous: tuple[int, str] | None = None
    for record in effective:
        key = (record.event_time, record.event_id)
        if type(record) is EventVoided or record.event_id in voided:
            raise ValueError(f"effective record {record.event_id!r} is a void or voided")
        if previous is not None and key <= previous:
            raise ValueError(f"effective records out of walk order at {record.event_id!r}")
        previous = key
    last_id: str | None = None
    for record in extra:
        event_id = record.event_id
        if type(record) is not EventVoided and event_id not in voided:
            raise ValueError(f"extra record {event_id!r} is neither a void nor voided")
        if last_id is not None and event_id <= last_id:
            raise ValueError(f"extra records out of id order at {event_id!r}")
        last_id = event_id
        ids.append(event_id)
    if len(set(ids)) != len(ids):
        raise ValueError("a record id is stored twice")
    id_index = _SEP + _SEP.join(ids) + _SEP if ids else _SEP
    return _derive(parcel_id, effective, extra, void_targets, id_index, len(ids))


def decode_state(data: bytes) -> ParcelState:
    """Inverse of `encode_state` (formats 2 and 1); raises ValueError on bytes it did not write.

    A format-2 state comes back with `packed` filled from `data` itself, so encoding
    it again after an in-order step costs no more than for a state kept in memory.
    """
    try:
        doc = orjson.loads(data)
        form = doc[0]
        if form == _FORMAT:
            _, parcel_id, effective_rows, extra_rows = doc
            state = _from_parts(
                parcel_id,
                tuple([_unpack(parcel_id, row) for row in effective_rows]),
                tuple([_unpack(parcel_id, row) for row in extra_rows]),
            )
        elif form == _FORMAT_V1:
            _, parcel_id, rows = doc
            return _from_records(parcel_id, [_unpack(parcel_id, row) for row in rows])
        else:
            raise ValueError(f"format {form!r} is not supported (expected {_FORMAT} or 1)")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"stored state is not a trackbone parcel state: {exc}") from None
    head = _head(parcel_id)
    extra = _rows(state.extra)
    tail = b"],[" + extra + b"]]"
    raw = bytes(data)
    if raw.startswith(head) and raw.endswith(tail):  # as written by encode_state: reuse it
        rows = raw[len(head) : len(raw) - len(tail)]
        _set_packed(state, (head, rows, state.event_count, None, extra))
    return state
