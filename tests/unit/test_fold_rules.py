"""One example per rule of contract section 3, plus step/state mechanics."""

from __future__ import annotations

import dataclasses

import pytest

from projections.events import (
    CustomsDirection,
    CustomsStatus,
    CustomsStatusRecorded,
    Event,
    EventVoided,
    ParcelHandedOver,
    ParcelRegistered,
    ParcelScanned,
    Place,
    Scan,
    Service,
    VoidReason,
)
from projections.fold import (
    Milestone,
    Outcome,
    ParcelState,
    Step,
    _new_state,
    _new_step,
    apply,
    decode_state,
    encode_state,
    fold,
    fold_all,
    state_to_json,
    step,
)

T0 = 1_794_355_200_000  # 2026-11-11T00:00:00Z
MIN = 60_000
PID = "LP0001"


def at(minutes: int) -> int:
    return T0 + minutes * MIN


def reg(
    eid: str,
    minute: int,
    *,
    origin: str = "CN",
    dest: str = "ES",
    hours: int | None = None,
    service: Service = Service.STANDARD,
    pid: str = PID,
) -> ParcelRegistered:
    return ParcelRegistered(
        event_id=eid,
        parcel_id=pid,
        event_time=at(minute),
        source="merchant",
        merchant_id="M1",
        origin=Place(country=origin, city="Hangzhou"),
        destination=Place(country=dest, city="Madrid"),
        service=service,
        promised_hours=hours,
    )


def scan(eid: str, minute: int, kind: Scan, *, pid: str = PID) -> ParcelScanned:
    return ParcelScanned(
        event_id=eid, parcel_id=pid, event_time=at(minute), source="carrier", scan=kind
    )


def hand(eid: str, minute: int, to: str, *, pid: str = PID) -> ParcelHandedOver:
    return ParcelHandedOver(
        event_id=eid,
        parcel_id=pid,
        event_time=at(minute),
        source="carrier",
        from_party="x",
        to_party=to,
    )


def customs(
    eid: str,
    minute: int,
    status: CustomsStatus,
    direction: CustomsDirection = CustomsDirection.EXPORT,
    *,
    pid: str = PID,
) -> CustomsStatusRecorded:
    return CustomsStatusRecorded(
        event_id=eid,
        parcel_id=pid,
        event_time=at(minute),
        source="customs",
        direction=direction,
        status=status,
    )


def void(eid: str, minute: int, target: str, *, pid: str = PID) -> EventVoided:
    return EventVoided(
        event_id=eid,
        parcel_id=pid,
        event_time=at(minute),
        source="carrier",
        voided_event_id=target,
        reason=VoidReason.DID_NOT_OCCUR,
    )


def steps(events: list[Event], state: ParcelState | None = None) -> tuple[ParcelState, list[Step]]:
    results = []
    for event in events:
        result = step(state, event)
        results.append(result)
        state = result.state
    assert state is not None
    return state, results


def folded(events: list[Event]) -> ParcelState:
    state = fold(events)
    assert state is not None
    incremental, _ = steps(events)
    assert incremental == state, "step and fold disagree"
    return state


# Rule 1: idempotence ------------------------------------------------------------------


def test_duplicate_is_ignored_and_reported_as_duplicate():
    event = scan("s1", 10, Scan.PICKED_UP)
    state, _ = steps([reg("r1", 0), event])
    result = step(state, event)
    assert result.outcome is Outcome.DUPLICATE
    assert result.state is state
    assert not result.changed and result.added == () and result.removed == ()
    assert fold([reg("r1", 0), event, event]) == fold([reg("r1", 0), event])


def test_conflicting_duplicate_is_reported_and_first_received_wins():
    first = scan("s1", 10, Scan.PICKED_UP)
    repeat = scan("s1", 10, Scan.DELIVERED)
    state, _ = steps([first])
    result = step(state, repeat)
    assert result.outcome is Outcome.CONFLICT
    assert result.state is state and not result.changed
    assert result.reason is not None and "'s1'" in result.reason and "scan" in result.reason
    assert folded([first, repeat]).milestone is Milestone.PICKED_UP
    assert folded([repeat, first]).milestone is Milestone.DELIVERED


def test_conflict_compares_every_field_even_ones_the_fold_ignores():
    first = scan("s1", 10, Scan.PICKED_UP)
    repeat = dataclasses.replace(first, raw_code="X1")
    result = step(fold([first]), repeat)
    assert result.outcome is Outcome.CONFLICT
    assert result.reason is not None and "raw_code" in result.reason


def test_a_void_and_an_event_sharing_an_id_conflict():
    state = fold([scan("x", 10, Scan.PICKED_UP)])
    result = step(state, void("x", 11, "other"))
    assert result.outcome is Outcome.CONFLICT
    assert result.reason is not None and "EventVoided" in result.reason


# Rule 2: voids ------------------------------------------------------------------------


def test_void_after_its_event_removes_it():
    state, _results = steps([scan("s1", 10, Scan.PICKED_UP), scan("s2", 20, Scan.OUT_FOR_DELIVERY)])
    result = step(state, void("v1", 30, "s2"))
    assert result.outcome is Outcome.APPLIED and result.changed
    assert result.removed == (scan("s2", 20, Scan.OUT_FOR_DELIVERY),) and result.added == ()
    assert result.state is not None
    assert result.state.milestone is Milestone.PICKED_UP
    assert result.state.event_count == 1
    assert result.state.last_event_time == at(10)
    assert [e.event_id for e in result.state.timeline()] == ["s1"]


def test_void_before_its_event_keeps_it_out():
    v = void("v1", 5, "s2")
    state, results = steps([v, scan("s1", 10, Scan.PICKED_UP), scan("s2", 20, Scan.DELIVERED)])
    assert results[0].state is not None and not results[0].state.is_visible
    assert not results[0].changed
    assert results[2].outcome is Outcome.APPLIED
    assert results[2].added == () and not results[2].changed
    assert state.milestone is Milestone.PICKED_UP and state.delivered_at is None
    assert state == fold([scan("s1", 10, Scan.PICKED_UP), scan("s2", 20, Scan.DELIVERED), v])


def test_void_of_a_void_is_ignored_in_either_order():
    events: list[Event] = [
        scan("s1", 10, Scan.PICKED_UP),
        scan("s2", 20, Scan.DELIVERED),
        void("v1", 30, "s2"),
        void("v2", 40, "v1"),
    ]
    for order in (events, list(reversed(events))):
        state = folded(order)
        assert state.milestone is Milestone.PICKED_UP
        assert state.event_count == 1


def test_void_naming_itself_or_a_missing_id_changes_nothing():
    base = [scan("s1", 10, Scan.PICKED_UP)]
    assert folded([*base, void("v1", 11, "v1"), void("v2", 12, "nope")]).event_count == 1
    assert folded([*base, void("v1", 11, "v1")]).milestone is Milestone.PICKED_UP


def test_void_only_affects_its_own_parcel():
    states = fold_all(
        [
            scan("same-id", 10, Scan.DELIVERED, pid="A"),
            scan("same-id", 10, Scan.DELIVERED, pid="B"),
            void("v1", 20, "same-id", pid="B"),
            scan("b2", 5, Scan.PICKED_UP, pid="B"),
        ]
    )
    assert states["A"].milestone is Milestone.DELIVERED
    assert states["B"].milestone is Milestone.PICKED_UP


def test_step_refuses_an_event_of_another_parcel():
    state = fold([scan("s1", 10, Scan.PICKED_UP)])
    with pytest.raises(ValueError, match="parcel"):
        step(state, scan("s2", 11, Scan.PICKED_UP, pid="OTHER"))
    with pytest.raises(ValueError):
        fold([scan("s1", 10, Scan.PICKED_UP), scan("s2", 11, Scan.PICKED_UP, pid="OTHER")])


# Rule 3: order ------------------------------------------------------------------------


def test_late_event_is_placed_by_event_time_not_arrival():
    late = scan("s1", 10, Scan.PICKED_UP)
    state, results = steps([reg("r", 0), scan("s2", 20, Scan.OUT_FOR_DELIVERY), late])
    assert state.milestone is Milestone.OUT_FOR_DELIVERY
    assert [e.event_id for e in state.timeline()] == ["r", "s1", "s2"]
    assert results[2].added == (late,) and results[2].changed
    assert state.last_event_time == at(20)
    assert state.milestone_times == (
        (Milestone.PICKED_UP, at(10)),
        (Milestone.OUT_FOR_DELIVERY, at(20)),
    )


def test_stale_event_never_lowers_the_milestone():
    state = folded([scan("s1", 10, Scan.OUT_FOR_DELIVERY), scan("s2", 20, Scan.ORIGIN_HUB_ARRIVED)])
    assert state.milestone is Milestone.OUT_FOR_DELIVERY
    assert state.last_event_time == at(20)


def test_equal_times_are_ordered_by_event_id_as_plain_string():
    # "B" < "a" in code-point order: the return comes first, the delivery then returns it.
    returned = folded([scan("a", 10, Scan.DELIVERED), scan("B", 10, Scan.RETURN_INITIATED)])
    assert returned.milestone is Milestone.RETURNED and returned.delivered_at is None
    # "a" < "b": delivered first, then a return starts.
    returning = folded([scan("b", 10, Scan.RETURN_INITIATED), scan("a", 10, Scan.DELIVERED)])
    assert returning.milestone is Milestone.RETURNING and returning.delivered_at == at(10)
    # "10" < "9" as strings: the hand-over to "nine" is the last one.
    assert folded([hand("9", 10, "nine"), hand("10", 10, "ten")]).custodian == "nine"


# Rule 4: milestones -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "milestone"),
    [
        (scan("e", 1, Scan.PICKED_UP), Milestone.PICKED_UP),
        (scan("e", 1, Scan.ORIGIN_HUB_ARRIVED), Milestone.AT_ORIGIN_HUB),
        (scan("e", 1, Scan.ORIGIN_HUB_DEPARTED), Milestone.AT_ORIGIN_HUB),
        (customs("e", 1, CustomsStatus.SUBMITTED), Milestone.EXPORT_CUSTOMS),
        (scan("e", 1, Scan.LINEHAUL_DEPARTED), Milestone.DEPARTED_ORIGIN),
        (scan("e", 1, Scan.DESTINATION_ARRIVED), Milestone.ARRIVED_DESTINATION),
        (
            customs("e", 1, CustomsStatus.RELEASED, CustomsDirection.IMPORT),
            Milestone.IMPORT_CUSTOMS,
        ),
        (scan("e", 1, Scan.DESTINATION_HUB_ARRIVED), Milestone.AT_DESTINATION_HUB),
        (scan("e", 1, Scan.OUT_FOR_DELIVERY), Milestone.OUT_FOR_DELIVERY),
        (scan("e", 1, Scan.DELIVERY_ATTEMPTED), Milestone.OUT_FOR_DELIVERY),
        (scan("e", 1, Scan.AVAILABLE_FOR_PICKUP), Milestone.OUT_FOR_DELIVERY),
        (scan("e", 1, Scan.DELIVERED), Milestone.DELIVERED),
        (scan("e", 1, Scan.RETURN_INITIATED), Milestone.RETURNING),
        (hand("e", 1, "x"), Milestone.REGISTERED),
    ],
)
def test_each_event_sets_its_milestone(event: Event, milestone: Milestone):
    assert folded([reg("r", 0), event]).milestone is milestone


def test_higher_rank_customs_is_not_lowered_by_export_customs():
    state = folded(
        [scan("s1", 10, Scan.DESTINATION_ARRIVED), customs("c1", 20, CustomsStatus.SUBMITTED)]
    )
    assert state.milestone is Milestone.ARRIVED_DESTINATION


def test_return_then_forward_events_stay_returning_and_delivered_gives_returned():
    state = folded(
        [
            scan("s1", 10, Scan.OUT_FOR_DELIVERY),
            scan("s2", 20, Scan.RETURN_INITIATED),
            scan("s3", 30, Scan.DESTINATION_HUB_ARRIVED),
            customs("c1", 35, CustomsStatus.SUBMITTED, CustomsDirection.IMPORT),
        ]
    )
    assert state.milestone is Milestone.RETURNING
    state = folded([*state.timeline(), scan("s4", 40, Scan.DELIVERED)])
    assert state.milestone is Milestone.RETURNED
    assert state.delivered_at is None  # rule 7: a DELIVERED giving RETURNED does not count


def test_returned_is_terminal():
    state = folded(
        [
            scan("s1", 10, Scan.RETURN_INITIATED),
            scan("s2", 20, Scan.DELIVERED),
            scan("s3", 30, Scan.RETURN_INITIATED),
            scan("s4", 40, Scan.OUT_FOR_DELIVERY),
            scan("s5", 50, Scan.DELIVERED),
        ]
    )
    assert state.milestone is Milestone.RETURNED and state.delivered_at is None
    state = folded([*state.timeline(), scan("s6", 60, Scan.RETURN_INITIATED)])
    assert state.milestone is Milestone.RETURNED


def test_no_registration_is_registered_milestone_with_registered_false():
    state = folded([hand("h1", 10, "dhl")])
    assert state.milestone is Milestone.REGISTERED
    assert state.registered is False
    assert state.origin_country is None and state.promised_at is None and state.service is None


# Rule 5: holds ------------------------------------------------------------------------


def test_holds_ignore_direction_and_release_in_walk_order():
    held = customs("c1", 10, CustomsStatus.HELD, CustomsDirection.EXPORT)
    released = customs("c2", 20, CustomsStatus.RELEASED, CustomsDirection.IMPORT)
    assert folded([held]).holds == {"CUSTOMS_HOLD"}
    assert folded([released, held]).holds == frozenset()  # release arrived first
    rehold = customs("c3", 5, CustomsStatus.HELD, CustomsDirection.IMPORT)
    assert folded([released, rehold]).holds == frozenset()
    late_hold = customs("c4", 30, CustomsStatus.HELD, CustomsDirection.IMPORT)
    assert folded([late_hold, released, held]).holds == {"CUSTOMS_HOLD"}


def test_refused_is_permanent_and_lifts_the_hold():
    state = folded(
        [
            customs("c1", 10, CustomsStatus.HELD),
            customs("c2", 20, CustomsStatus.REFUSED),
            customs("c3", 30, CustomsStatus.RELEASED, CustomsDirection.IMPORT),
            scan("s1", 40, Scan.DELIVERED),
        ]
    )
    assert state.holds == {"CUSTOMS_REFUSED"}
    state = folded([*state.timeline(), customs("c4", 50, CustomsStatus.HELD)])
    assert state.holds == {"CUSTOMS_HOLD", "CUSTOMS_REFUSED"}
    assert state_to_json(state)["holds"] == ["CUSTOMS_HOLD", "CUSTOMS_REFUSED"]


def test_every_delivered_lifts_the_hold_also_one_giving_returned():
    held = customs("c1", 10, CustomsStatus.HELD)
    assert folded([held, scan("s1", 20, Scan.DELIVERED)]).holds == frozenset()
    state = folded(
        [
            scan("s0", 5, Scan.RETURN_INITIATED),
            held,
            scan("s1", 20, Scan.DELIVERED),
        ]
    )
    assert state.milestone is Milestone.RETURNED and state.holds == frozenset()
    # A second DELIVERED (no milestone change) lifts a hold placed in between.
    state = folded(
        [
            scan("s1", 5, Scan.DELIVERED),
            customs("c2", 10, CustomsStatus.HELD),
            scan("s2", 20, Scan.DELIVERED),
        ]
    )
    assert state.holds == frozenset()


def test_hold_after_delivery_stays():
    state = folded([scan("s1", 5, Scan.DELIVERED), customs("c1", 10, CustomsStatus.HELD)])
    assert state.holds == {"CUSTOMS_HOLD"}


# Rule 6: attempts ---------------------------------------------------------------------


def test_attempts_count_effective_delivery_attempts():
    events: list[Event] = [
        scan("a1", 10, Scan.DELIVERY_ATTEMPTED),
        scan("a2", 20, Scan.DELIVERY_ATTEMPTED),
        scan("a3", 30, Scan.DELIVERY_ATTEMPTED),
        void("v1", 40, "a2"),
        scan("s1", 50, Scan.RETURN_INITIATED),
        scan("a4", 60, Scan.DELIVERY_ATTEMPTED),
    ]
    state = folded(events)
    assert state.attempts == 3
    assert state.milestone is Milestone.RETURNING


# Rule 7: delivered_at -----------------------------------------------------------------


def test_delivered_at_is_the_first_delivered_and_kept_when_returned():
    state = folded(
        [
            scan("d2", 30, Scan.DELIVERED),
            scan("d1", 20, Scan.DELIVERED),
            scan("r1", 40, Scan.RETURN_INITIATED),
            scan("d3", 50, Scan.DELIVERED),
        ]
    )
    assert state.milestone is Milestone.RETURNED
    assert state.delivered_at == at(20)
    assert state_to_json(state)["delivered_at"] == "2026-11-11T00:20:00.000Z"


def test_voiding_the_first_delivery_moves_delivered_at():
    state = folded(
        [scan("d1", 20, Scan.DELIVERED), scan("d2", 30, Scan.DELIVERED), void("v", 40, "d1")]
    )
    assert state.delivered_at == at(30)


# Rule 8: custodian --------------------------------------------------------------------


def test_custodian_is_the_last_hand_over_in_the_walk():
    state = folded([hand("h2", 20, "linehaul"), hand("h3", 30, "courier"), hand("h1", 10, "hub")])
    assert state.custodian == "courier"
    assert folded([scan("s", 1, Scan.PICKED_UP)]).custodian is None


# Rule 9: registration -----------------------------------------------------------------


def test_events_before_registration_are_folded_and_last_registration_defines_lane():
    state = folded(
        [
            reg("r2", 60, origin="CN", dest="CN", service=Service.EXPRESS),
            scan("s1", 10, Scan.PICKED_UP),
            reg("r1", 0, origin="CN", dest="FR", hours=100),
        ]
    )
    assert state.registered is True
    assert state.milestone is Milestone.PICKED_UP
    assert (state.origin_country, state.destination_country) == ("CN", "CN")
    assert state.service == "EXPRESS"
    assert state.promised_hours == 24  # domestic default
    assert state.registered_at == at(60)
    assert state.promised_at == at(60) + 24 * 3_600_000


def test_promise_defaults_and_explicit_hours():
    assert folded([reg("r", 0, origin="CN", dest="ES")]).promised_hours == 72
    explicit = folded([reg("r", 0, hours=10)])
    assert explicit.promised_hours == 10
    assert explicit.promised_at == at(0) + 10 * 3_600_000


def test_voiding_the_defining_registration_falls_back_to_the_previous_one():
    state = folded([reg("r1", 0, dest="FR"), reg("r2", 10, dest="DE"), void("v", 20, "r2")])
    assert state.destination_country == "FR"
    state = folded([reg("r1", 0), void("v", 20, "r1"), scan("s", 5, Scan.PICKED_UP)])
    assert state.registered is False and state.destination_country is None


# Rule 10: empty effective set ---------------------------------------------------------


def test_empty_effective_set_has_no_state_but_step_remembers_the_void():
    assert fold([]) is None
    assert fold([void("v1", 5, "s1")]) is None
    assert fold([scan("s1", 10, Scan.PICKED_UP), void("v1", 5, "s1")]) is None
    assert fold_all([void("v1", 5, "s1"), scan("s2", 1, Scan.PICKED_UP, pid="B")]).keys() == {"B"}

    first = step(None, void("v1", 5, "s1"))
    assert first.state is not None and first.state.event_count == 0
    assert not first.state.is_visible and not first.changed
    later = step(first.state, scan("s1", 10, Scan.PICKED_UP))
    assert later.state is not None and not later.state.is_visible and later.added == ()

    state, results = steps([scan("s1", 10, Scan.PICKED_UP), void("v1", 20, "s1")])
    assert not state.is_visible and results[1].changed
    assert state.milestone is Milestone.REGISTERED and state.last_event_time is None


# Record cap ---------------------------------------------------------------------------


def test_over_cap_is_refused_but_duplicates_are_still_duplicates():
    state: ParcelState | None = None
    for event in [
        scan("s1", 1, Scan.PICKED_UP),
        void("v1", 2, "zz"),
        scan("s2", 3, Scan.PICKED_UP),
    ]:
        result = step(state, event, max_events=3)
        assert result.outcome is Outcome.APPLIED
        state = result.state
    assert state is not None and state.version == 3
    over = step(state, scan("s3", 4, Scan.DELIVERED), max_events=3)
    assert over.outcome is Outcome.OVER_CAP and over.state is state and not over.changed
    assert over.reason is not None and "3" in over.reason
    assert step(state, void("v1", 2, "zz"), max_events=3).outcome is Outcome.DUPLICATE
    assert step(state, void("v9", 2, "s1"), max_events=3).outcome is Outcome.OVER_CAP
    assert step(state, scan("s1", 1, Scan.DELIVERED), max_events=3).outcome is Outcome.CONFLICT


def test_default_cap_is_500_records():
    state: ParcelState | None = None
    for n in range(500):
        state = apply(state, scan(f"s{n:04d}", n, Scan.PICKED_UP))
    assert state is not None and state.event_count == 500
    assert step(state, scan("s9999", 1, Scan.PICKED_UP)).outcome is Outcome.OVER_CAP


# State mechanics ----------------------------------------------------------------------


def test_version_counts_accepted_records_only():
    event = scan("s1", 10, Scan.PICKED_UP)
    state, _ = steps([event, event, void("v", 1, "x"), scan("s1", 10, Scan.DELIVERED)])
    assert state.version == 2


def test_state_is_frozen_and_fast_constructors_match_init():
    state = folded([reg("r", 0), scan("s", 10, Scan.DELIVERED), hand("h", 20, "courier")])
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.attempts = 3  # type: ignore[misc]
    values = [getattr(state, f.name) for f in dataclasses.fields(ParcelState)]
    init = [f.init for f in dataclasses.fields(ParcelState)]
    rebuilt = ParcelState(*[v for v, keep in zip(values, init, strict=True) if keep])
    assert type(state) is ParcelState and rebuilt == state and hash(rebuilt) == hash(state)
    assert _new_state(*values) == rebuilt
    assert _new_step(state, Outcome.APPLIED, True, (), (), None) == Step(
        state, Outcome.APPLIED, True
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        _new_step(state, Outcome.APPLIED, True, (), (), None).changed = False  # type: ignore[misc]


def test_state_to_json_shape():
    state = folded(
        [
            reg("r", 0, hours=48, service=Service.ECONOMY),
            scan("s", 90, Scan.DELIVERED),
            hand("h", 30, "courier"),
        ]
    )
    assert state_to_json(state) == {
        "parcel_id": PID,
        "milestone": "DELIVERED",
        "delivered_at": "2026-11-11T01:30:00.000Z",
        "holds": [],
        "attempts": 0,
        "event_count": 3,
        "custodian": "courier",
        "registered": True,
        "last_event_time": "2026-11-11T01:30:00.000Z",
        "origin_country": "CN",
        "destination_country": "ES",
        "service": "ECONOMY",
        "promised_hours": 48,
        "promised_at": "2026-11-13T00:00:00.000Z",
        "registered_at": "2026-11-11T00:00:00.000Z",
    }
    assert type(state_to_json(state)["milestone"]) is str


def test_encode_decode_round_trip_and_rejects_garbage():
    state, _ = steps(
        [
            reg("r", 0),
            scan("s", 10, Scan.PICKED_UP),
            customs("c", 20, CustomsStatus.HELD),
            hand("h", 30, "courier"),
            void("v", 40, "s"),
            void("w", 41, "nope"),
        ]
    )
    raw = encode_state(state)
    assert isinstance(raw, bytes)
    assert decode_state(raw) == state
    with pytest.raises(ValueError):
        decode_state(b"not a state")
    with pytest.raises(ValueError):
        decode_state(b'[99, "P", []]')


def test_ids_with_nul_characters_are_still_told_apart():
    # The id index is a NUL-separated filter: "a\0b" looks present once "a" and "b" are.
    state, results = steps(
        [
            scan("a", 1, Scan.PICKED_UP),
            scan("b", 2, Scan.PICKED_UP),
            scan("a\x00b", 3, Scan.DELIVERED),
        ]
    )
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 3
    assert state.milestone is Milestone.DELIVERED and state.event_count == 3
    assert step(state, scan("a\x00b", 3, Scan.DELIVERED)).outcome is Outcome.DUPLICATE
    assert decode_state(encode_state(state)) == state


@pytest.mark.parametrize(
    "raw", [b"", b"[]", b'[1, "P", [[7, "x", 1, 0, "s", null]]]', b'[1, "P", [[1, "x"]]]']
)
def test_decode_rejects_malformed_state_with_value_error(raw: bytes):
    with pytest.raises(ValueError, match="not a trackbone parcel state"):
        decode_state(raw)


def test_empty_state_shortcut_matches_a_derived_one():
    from projections.fold import _derive, _empty

    assert _empty(PID) == _derive(PID, (), (), (), "\x00", 0)
    assert _empty(PID).id_index == "\x00"
