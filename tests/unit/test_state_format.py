"""Stored state format 2: round trips, format 1 still read, cached pieces give the same bytes."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.events import (
    CustomsDirection,
    CustomsStatus,
    CustomsStatusRecorded,
    Event,
    EventVoided,
    Location,
    ParcelHandedOver,
    ParcelRegistered,
    ParcelScanned,
    Place,
    Scan,
    Service,
    VoidReason,
)
from projections.fold import ParcelState, _pack, decode_state, encode_state, fold, step
from tests import strategies

T0 = 1_794_355_200_000
MIN = 60_000
PID = "LP-GOLD-1"
_LOC = Location(country="CN", facility_id="CN-HAN-HUB", city="Hangzhou")
GOLDEN_EVENTS: list[Event] = [
    ParcelRegistered(
        event_id="r1",
        parcel_id=PID,
        event_time=T0,
        source="merchant-api",
        tz_offset_minutes=480,
        merchant_id="M00042",
        origin=Place(country="CN", city="Hangzhou"),
        destination=Place(country="ES", city=None),
        service=Service.EXPRESS,
        promised_hours=48,
    ),
    ParcelScanned(
        event_id="s1",
        parcel_id=PID,
        event_time=T0 + 30 * MIN,
        source="yto",
        location=_LOC,
        scan=Scan.PICKED_UP,
        raw_code="C00",
    ),
    CustomsStatusRecorded(
        event_id="c1",
        parcel_id=PID,
        event_time=T0 + 90 * MIN,
        source="customs-cn",
        location=_LOC,
        direction=CustomsDirection.EXPORT,
        status=CustomsStatus.HELD,
        reason="docs",
    ),
    ParcelHandedOver(
        event_id="h1",
        parcel_id=PID,
        event_time=T0 + 60 * MIN,
        source="yto",
        location=_LOC,
        from_party="yto",
        to_party="linehaul-air",
    ),
    ParcelScanned(
        event_id="s2", parcel_id=PID, event_time=T0 + 120 * MIN, source="yto", scan=Scan.DELIVERED
    ),
    EventVoided(
        event_id="v1",
        parcel_id=PID,
        event_time=T0 + 130 * MIN,
        source="yto",
        voided_event_id="s2",
        reason=VoidReason.DID_NOT_OCCUR,
    ),
    EventVoided(
        event_id="v2",
        parcel_id=PID,
        event_time=T0 + 131 * MIN,
        source="ops",
        voided_event_id="later",
        reason=VoidReason.INCORRECT_DATA,
    ),
]
# Written by encode_state before format 2 (commit ce8ef83) for GOLDEN_EVENTS stepped in order.
GOLDEN_V1 = (
    b'[1,"LP-GOLD-1",[[0,"r1",1794355200000,480,"merchant-api",null,"M00042","CN","Hangzhou",'
    b'"ES",null,"EXPRESS",48],[1,"s1",1794357000000,0,"yto",["CN","CN-HAN-HUB","Hangzhou"],'
    b'"PICKED_UP","C00"],[2,"h1",1794358800000,0,"yto",["CN","CN-HAN-HUB","Hangzhou"],"yto",'
    b'"linehaul-air"],[3,"c1",1794360600000,0,"customs-cn",["CN","CN-HAN-HUB","Hangzhou"],'
    b'"EXPORT","HELD","docs"],[1,"s2",1794362400000,0,"yto",null,"DELIVERED",null],[4,"v1",'
    b'1794363000000,0,"yto",null,"s2","DID_NOT_OCCUR"],[4,"v2",1794363060000,0,"ops",null,'
    b'"later","INCORRECT_DATA"]]]'
)


def stepped(events: list[Event]) -> ParcelState:
    state: ParcelState | None = None
    for event in events:
        state = step(state, event).state
    assert state is not None
    return state


def fresh(state: ParcelState) -> bytes:
    """Encode a copy without the cached pieces: what encode_state writes from scratch."""
    return encode_state(dataclasses.replace(state))


def v1_bytes(state: ParcelState) -> bytes:
    """Format 1 as the previous encode_state wrote it (one list: effective, then extra)."""
    return orjson.dumps([1, state.parcel_id, [_pack(r) for r in state.stored_records()]])


def test_golden_format_1_still_decodes_to_the_same_state() -> None:
    state = stepped(GOLDEN_EVENTS)
    decoded = decode_state(GOLDEN_V1)
    assert decoded == state
    assert decoded.version == state.version == 7
    assert encode_state(decoded) == encode_state(state)  # re-written as format 2
    assert encode_state(decoded)[:2] == b"[2"


def test_format_2_layout_keeps_effective_and_extra_apart() -> None:
    form, parcel_id, effective, extra = orjson.loads(encode_state(stepped(GOLDEN_EVENTS)))
    assert (form, parcel_id) == (2, PID)
    assert [row[1] for row in effective] == ["r1", "s1", "h1", "c1"]
    assert [row[1] for row in extra] == ["s2", "v1", "v2"]


def test_cached_pieces_are_not_part_of_equality_or_hash() -> None:
    state = stepped(GOLDEN_EVENTS)
    encode_state(state)
    bare = dataclasses.replace(state)
    assert state.packed is not None and bare.packed is None
    assert bare == state and hash(bare) == hash(state)


def test_in_order_step_reuses_the_packed_log() -> None:
    state = stepped(GOLDEN_EVENTS[:2])
    first = encode_state(state)
    packed = state.packed
    assert packed is not None
    later = step(state, GOLDEN_EVENTS[3]).state  # in order: appended to the effective log
    assert later is not None and later.packed is packed
    data = encode_state(later)
    assert data == fresh(later)
    assert later.packed is not None and later.packed[1].startswith(packed[1])
    assert len(data) > len(first)


def test_late_event_and_void_keep_the_rows_before_them() -> None:
    state = stepped([GOLDEN_EVENTS[i] for i in (0, 1, 2, 4)])  # r1 s1 c1 s2, in order
    encode_state(state)
    late = step(state, GOLDEN_EVENTS[3]).state  # h1 goes between s1 and c1
    assert late is not None and late.packed is not None
    assert late.packed[2] == 2  # r1 and s1 are still serialised
    assert encode_state(late) == fresh(late)
    voided = step(late, GOLDEN_EVENTS[5]).state  # v1 voids s2, the last effective record
    assert voided is not None and voided.packed is not None
    assert voided.packed[2] == 4 and voided.packed[4] is None  # extra to be written again
    assert encode_state(voided) == fresh(voided)
    again = decode_state(encode_state(voided))
    assert again.packed is not None and again.packed[3] is None  # boundaries unknown
    early = dataclasses.replace(GOLDEN_EVENTS[3], event_id="h0", event_time=T0 + MIN)
    later = step(again, early).state  # before s1: the row boundaries would be needed
    assert later is not None and later.packed is None
    assert encode_state(later) == fresh(later)


@pytest.mark.parametrize(
    "rejected",
    [
        b'[2,"P",[[1,"a",5,0,"s",null,"PICKED_UP",null],[1,"b",4,0,"s",null,"PICKED_UP",null]],[]]',
        b'[2,"P",[[4,"v",5,0,"s",null,"x","DID_NOT_OCCUR"]],[]]',
        b'[2,"P",[],[[1,"a",5,0,"s",null,"PICKED_UP",null]]]',
        b'[2,"P",[[1,"a",5,0,"s",null,"PICKED_UP",null]],[[4,"a",6,0,"s",null,"b","DID_NOT_OCCUR"]]]',
        b'[2,"P",[[1,"a",5,0,"s",null,"PICKED_UP",null,"extra"]],[]]',
        b'[2,"P",[]]',
    ],
)
def test_format_2_that_encode_state_cannot_write_is_rejected(rejected: bytes) -> None:
    with pytest.raises(ValueError, match="not a trackbone parcel state"):
        decode_state(rejected)


@given(st.lists(strategies.events(parcel_ids=st.just("PX1")), min_size=1, max_size=14))
@settings(max_examples=150, deadline=None)
def test_every_step_round_trips_and_cached_bytes_equal_a_fresh_encode(events: list[Event]) -> None:
    state: ParcelState | None = None
    for event in events:
        state = step(state, event).state
        assert state is not None
        data = encode_state(state)
        assert data == fresh(state)
        decoded = decode_state(data)
        assert decoded == state
        assert encode_state(decoded) == data
        assert decode_state(v1_bytes(state)) == state


@given(st.lists(strategies.events(parcel_ids=st.just("PX1")), min_size=1, max_size=14))
@settings(max_examples=100, deadline=None)
def test_encoding_only_now_and_then_gives_the_same_bytes(events: list[Event]) -> None:
    # A batch worker encodes after several steps; decoded states carry the cache on.
    state: ParcelState | None = None
    for index, event in enumerate(events):
        state = step(state, event).state
        assert state is not None
        if index % 3 == 1:
            state = decode_state(encode_state(state))
    assert state is not None
    assert encode_state(state) == fresh(state)
    folded = fold(events)
    if folded is not None:
        assert decode_state(encode_state(folded)) == folded
