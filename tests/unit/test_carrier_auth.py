"""Carrier identity: signed records pass, forged, unsigned and tampered ones are unauthorized."""

from __future__ import annotations

from projections import core
from projections.jsonform import parse_event
from streams import avro, carrier_auth

KEYS = {"cainiao": carrier_auth.new_key(), "seur": carrier_auth.new_key()}


def scan(source: str, event_id: str = "E1") -> dict:
    return {
        "type": "ParcelScanned",
        "event_id": event_id,
        "parcel_id": "P1",
        "event_time": "2026-11-11T10:00:00Z",
        "tz_offset_minutes": 0,
        "source": source,
        "location": {"facility_id": None, "country": "CN", "city": "Hangzhou"},
        "scan": "PICKED_UP",
        "raw_code": "X",
    }


def record(fields: dict, signer: str | None, offset: int = 0, tamper: bool = False) -> core.Record:
    value = avro.encode_event(parse_event(fields))
    headers = carrier_auth.sign(KEYS[signer], signer, b"P1", value) if signer else []
    if tamper:  # signed, then changed on the way: still a valid event, no longer signed
        value = avro.encode_event(parse_event(fields | {"scan": "DELIVERED"}))
    return core.Record(b"P1", value, offset, 0, headers)


def run(records: list[core.Record]) -> core.Batch:
    rules = core.Rules(authorize=carrier_auth.make_authorizer(KEYS))
    return core.process(records, 1, lambda key: core.Stored(None), avro.decode_event, rules)


def test_a_carrier_may_report_its_own_events_and_those_below_it() -> None:
    batch = run([record(scan("cainiao"), "cainiao"), record(scan("cainiao:hub7", "E2"), "cainiao")])
    assert (batch.applied, batch.dead_letters) == (2, [])


def test_other_carriers_events_unsigned_and_tampered_records_are_dead_lettered() -> None:
    batch = run(
        [
            record(scan("cainiao"), "seur", 0),
            record(scan("cainiao", "E2"), None, 1),
            record(scan("cainiao", "E3"), "cainiao", 2, tamper=True),
        ]
    )
    reasons = [dead.reason for dead in batch.dead_letters]
    assert batch.records == 3 and batch.applied == 0
    assert all(r.startswith("unauthorized: ") for r in reasons), reasons
    assert "does not own source 'cainiao'" in reasons[0]
    assert "not signed" in reasons[1]
    assert "bad signature for carrier 'cainiao'" in reasons[2]


def test_either_party_of_a_hand_over_may_report_it() -> None:
    handover = scan("seur") | {
        "type": "ParcelHandedOver",
        "from_party": "seur",
        "to_party": "cainiao",
    }
    del handover["scan"], handover["raw_code"]
    assert run([record(handover, "cainiao")]).applied == 1
    stranger = handover | {"from_party": "usps", "to_party": "dhl"}
    assert run([record(stranger, "cainiao")]).dead_letters[0].reason.startswith("unauthorized")


def test_an_unknown_carrier_is_unauthorized() -> None:
    rules = core.Rules(authorize=carrier_auth.make_authorizer({"seur": KEYS["seur"]}))
    batch = core.process(
        [record(scan("cainiao"), "cainiao")],
        1,
        lambda k: core.Stored(None),
        avro.decode_event,
        rules,
    )
    assert "unknown carrier 'cainiao'" in batch.dead_letters[0].reason
