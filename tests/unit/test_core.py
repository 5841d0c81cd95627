"""The processing core: batches of records in, one stored state and status per parcel out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import core
from projections.events import CustomsStatus, Event, Scan
from projections.fold import Milestone, fold_all
from streams import avro
from tests import strategies
from tests.unit.test_fold_rules import PID, at, customs, reg, scan, void

KEY = PID.encode()


def records(events: list[Event], start: int = 0) -> list[core.Record]:
    return [
        core.Record(e.parcel_id.encode(), avro.encode_event(e), start + i)
        for i, e in enumerate(events)
    ]


def run(
    events: list[Event],
    stored: dict[bytes, core.Stored] | None = None,
    rules: core.Rules | None = None,
    start: int = 0,
    source: int = 1,
) -> core.Batch:
    table = stored if stored is not None else {}
    rules = rules or core.Rules()
    batch = core.process(
        records(events, start),
        source,
        lambda key: table.get(key, core.Stored(None)),
        avro.decode_event,
        rules,
    )
    return core.finish(batch, rules)


def test_a_batch_stores_each_parcel_once_and_keeps_every_milestone_in_order():
    events = [reg("r1", 0), scan("s1", 10, Scan.PICKED_UP), scan("s2", 20, Scan.DELIVERED)]
    batch = run(events)
    assert list(batch.changes) == [KEY]
    change = batch.changes[KEY]
    assert change.status and change.stored.state is not None
    assert change.stored.state.milestone is Milestone.DELIVERED
    assert change.stored.state == fold_all(events)[PID]
    assert [m["milestone"] for _, m in batch.milestones] == ["REGISTERED", "PICKED_UP", "DELIVERED"]
    assert [m["previous"] for _, m in batch.milestones] == [None, "REGISTERED", "PICKED_UP"]
    assert [d.event.event_id for d in change.deltas if d.added] == ["r1", "s1", "s2"]
    assert (batch.records, batch.applied, batch.duplicates) == (3, 3, 0)


def test_the_arriving_events_bytes_are_reused_for_the_event_delta():
    events = [reg("r1", 0)]
    encoded = records(events)[0].value
    delta = run(events).changes[KEY].deltas[0]
    assert delta.raw == encoded and delta.added and delta.version == 1


def test_high_water_marks_tell_a_redelivery_from_a_repeat():
    events = [reg("r1", 0), scan("s1", 10, Scan.PICKED_UP)]
    first = run(events, start=100)
    stored = {KEY: first.changes[KEY].stored}
    assert stored[KEY].high_water[1] == 101
    # The same offsets again (a crash before the commit): outputs are sent again.
    again = run(events, stored, start=100)
    assert again.duplicates == 2 and again.changes[KEY].status
    assert again.changes[KEY].stored is stored[KEY]
    # The same events at new offsets (a carrier's repeat): nothing to send.
    repeat = run(events, stored, start=200)
    assert repeat.duplicates == 2 and not repeat.changes[KEY].status


def test_bad_records_become_dead_letters_with_their_reason():
    good = records([reg("r1", 0)])
    wrong_key = core.Record(b"OTHER", good[0].value, 1)
    garbage = core.Record(KEY, b"\x00garbage", 2)
    conflict = records([reg("r1", 5)], start=3)
    rules = core.Rules()
    batch = core.process(
        [*good, wrong_key, garbage, *conflict],
        0,
        lambda key: core.Stored(None),
        avro.decode_event,
        rules,
    )
    reasons = [d.reason.split(":", 1)[0] for d in batch.dead_letters]
    assert reasons == ["invalid", "invalid", "conflict"]
    assert [d.record.offset for d in batch.dead_letters] == [1, 2, 3]
    assert batch.records == batch.applied + batch.duplicates + len(batch.dead_letters)


def test_voiding_every_event_sends_a_tombstone_not_a_status():
    stored = {KEY: run([scan("s1", 10, Scan.PICKED_UP)]).changes[KEY].stored}
    batch = run([void("v1", 20, "s1")], stored)
    change = batch.changes[KEY]
    assert change.tombstone and not change.status
    assert [d.added for d in change.deltas] == [False]


def test_customs_hold_alert_is_edge_triggered_across_batches():
    held = customs("c1", 10, CustomsStatus.HELD)
    first = run([reg("r1", 0), held])
    assert [a["alert"] for _, a in first.alerts] == ["CUSTOMS_HOLD_STARTED"]
    stored = {KEY: first.changes[KEY].stored}
    later = run([scan("s1", 20, Scan.ORIGIN_HUB_ARRIVED)], stored)
    assert later.alerts == []


def test_at_risk_is_decided_once_per_parcel_against_its_last_state():
    class Low:
        on_time_probability = 0.1
        eta_p50_ms = at(100)

    rules = core.Rules(estimate=lambda state: Low())  # type: ignore[arg-type,return-value]
    batch = run([reg("r1", 0), scan("s1", 10, Scan.PICKED_UP)], rules=rules)
    kinds = [a["alert"] for _, a in batch.alerts]
    assert kinds == ["PROMISE_AT_RISK"]
    stored = {KEY: batch.changes[KEY].stored}
    assert stored[KEY].on_time_probability == 0.1
    assert run([scan("s2", 20, Scan.ORIGIN_HUB_ARRIVED)], stored, rules=rules).alerts == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        strategies.events(parcel_ids=st.sampled_from(["P1", "P2", "P3"])), min_size=1, max_size=30
    ),
    st.integers(min_value=1, max_value=10),
)
def test_any_batching_gives_the_state_of_the_whole_fold(events: list[Event], size: int):
    table: dict[bytes, core.Stored] = {}
    last_status: dict[str, int] = {}  # what a compacted status topic would hold
    for start in range(0, len(events), size):
        batch = run(events[start : start + size], table, start=start)
        for key, change in batch.changes.items():
            table[key] = change.stored
            state = change.stored.state
            if change.status:
                assert state is not None and state.event_count > 0
                last_status[key.decode()] = state.version
            elif change.tombstone:
                last_status.pop(key.decode(), None)
    expected = {pid: state for pid, state in fold_all(events).items() if state.is_visible}
    got = {k.decode(): v.state for k, v in table.items() if v.state and v.state.is_visible}
    assert got == expected
    # Every visible parcel's latest status carries its final version (verify relies on it).
    assert {pid: s.version for pid, s in expected.items()} == {
        pid: v for pid, v in last_status.items() if pid in expected
    }


def test_stored_values_round_trip_and_keep_their_bytes():
    stored = run([reg("r1", 0)], start=7).changes[KEY].stored
    data = stored.encode()
    back = core.Stored.decode(data)
    assert back.state == stored.state and back.high_water == stored.high_water
    assert back.encode() is data


def test_stuck_alerts_skip_parcels_that_can_no_longer_be_stuck():
    state = run([reg("r1", 0)]).changes[KEY].stored.state
    done = run([reg("r1", 0), scan("s1", 10, Scan.DELIVERED)]).changes[KEY].stored.state
    assert state is not None and done is not None
    alerts = core.stuck_alerts([(KEY, state), (b"X", done)], at(60 * 50))
    assert [(k, a["alert"], a["last_event_at"]) for k, a in alerts] == [
        (KEY, "PARCEL_STUCK", "2026-11-11T00:00:00.000Z")
    ]


def test_an_accepted_record_without_a_visible_change_still_sends_the_new_version():
    stored = {KEY: run([reg("r1", 0), scan("s1", 10, Scan.PICKED_UP)]).changes[KEY].stored}
    # A void whose target has not arrived yet, then that target: neither changes what
    # a reader sees, both are accepted, so the status follows the state's version.
    for event in (void("v1", 20, "s2"), scan("s2", 15, Scan.ORIGIN_HUB_ARRIVED)):
        batch = run([event], stored)
        change = batch.changes[KEY]
        assert change.status and not change.deltas and not batch.milestones
        assert change.stored.state is not None
        assert change.stored.state.version == stored[KEY].state.version + 1  # type: ignore[union-attr]
        stored = {KEY: change.stored}


def test_a_parcel_with_nothing_effective_gets_no_status_whatever_arrives():
    stored = {KEY: run([scan("s1", 10, Scan.PICKED_UP)]).changes[KEY].stored}
    stored = {KEY: run([void("v1", 20, "s1")], stored).changes[KEY].stored}
    # Accepted, yet still nothing effective: a void of an absent event, then its target.
    for event in (void("v2", 30, "s9"), scan("s9", 25, Scan.PICKED_UP)):
        change = run([event], stored).changes[KEY]
        assert not change.status and not change.tombstone
        stored = {KEY: change.stored}


def test_an_event_far_after_its_records_timestamp_is_dead_lettered_as_future():
    hour = 3_600_000
    produced = 1_000 * hour
    event = scan("s1", 0, Scan.PICKED_UP)
    rules = core.Rules(max_future_ms=24 * hour)

    def one(event_time: int, timestamp: int) -> core.Batch:
        from dataclasses import replace

        record = core.Record(
            KEY, avro.encode_event(replace(event, event_time=event_time)), 0, timestamp
        )
        return core.process([record], 1, lambda key: core.Stored(None), avro.decode_event, rules)

    late = one(produced + 25 * hour, produced)
    (dead,) = late.dead_letters
    assert dead.reason.startswith("future: event_time is 25.0 h after")
    assert late.records == 1 and late.applied == 0 and late.event_time == 0  # stream time stays
    assert one(produced + 23 * hour, produced).applied == 1  # within the limit
    assert one(produced + 25 * hour, 0).applied == 1  # no timestamp: nothing to compare with


def test_every_status_carries_the_kafka_time_of_the_record_that_caused_it():
    # source_ts is what status latency is measured from; a status re-sent for an
    # invisible change or a redelivery once went out with 0 (a latency of 56 years).
    rules = core.Rules()

    def batch_at(events: list[Event], stored: dict, start: int, ts: int) -> core.Batch:
        timed = [
            core.Record(r.key, r.value, r.offset, ts + i, None)
            for i, r in enumerate(records(events, start))
        ]
        loaded = core.process(
            timed, 1, lambda k: stored.get(k, core.Stored(None)), avro.decode_event, rules
        )
        return core.finish(loaded, rules)

    first = batch_at([reg("r1", 0), scan("s1", 10, Scan.PICKED_UP)], {}, 0, 5_000)
    assert first.changes[KEY].source_ts == 5_001
    stored = {KEY: first.changes[KEY].stored}
    invisible = batch_at([void("v1", 20, "s2")], stored, 2, 6_000)  # target not here yet
    assert invisible.changes[KEY].status and invisible.changes[KEY].source_ts == 6_000
    redelivered = batch_at([reg("r1", 0), scan("s1", 10, Scan.PICKED_UP)], stored, 0, 7_000)
    assert redelivered.changes[KEY].status and redelivered.changes[KEY].source_ts == 7_001
