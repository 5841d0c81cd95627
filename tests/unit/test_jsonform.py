"""The contract's JSON form (projections/jsonform.py): what is accepted, and every rejection.

Each rejection must name the field and the reason, so a carrier can fix its feed.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.events import (
    CustomsDirection,
    CustomsStatus,
    CustomsStatusRecorded,
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
from projections.jsonform import (
    TIME_MAX_MS,
    TIME_MIN_MS,
    InvalidEvent,
    event_to_json,
    format_time,
    parse_event,
    parse_time,
)
from tests import strategies

T0 = 1_794_389_400_000  # 2026-11-11T09:30:00Z
COMMON = {
    "event_id": "e-1",
    "parcel_id": "CN_0001-x",
    "event_time": "2026-11-11T17:30:00+08:00",
    "tz_offset_minutes": 480,
    "source": "cainiao",
    "location": {"facility_id": "HGH-1", "country": "CN", "city": "Hangzhou"},
}
VALID: dict[str, dict[str, Any]] = {
    "ParcelRegistered": COMMON
    | {
        "type": "ParcelRegistered",
        "merchant_id": "m-1",
        "origin": {"country": "CN", "city": "Hangzhou"},
        "destination": {"country": "ES", "city": "Madrid"},
        "service": "STANDARD",
        "promised_hours": 120,
    },
    "ParcelScanned": COMMON | {"type": "ParcelScanned", "scan": "PICKED_UP", "raw_code": "10"},
    "ParcelHandedOver": COMMON
    | {"type": "ParcelHandedOver", "from_party": "cainiao", "to_party": "correos"},
    "CustomsStatusRecorded": COMMON
    | {"type": "CustomsStatusRecorded", "direction": "IMPORT", "status": "HELD", "reason": "docs"},
    "EventVoided": COMMON
    | {"type": "EventVoided", "voided_event_id": "e-0", "reason": "DID_NOT_OCCUR"},
}
REQUIRED = {
    "ParcelRegistered": ["merchant_id", "origin", "destination", "service"],
    "ParcelScanned": ["scan"],
    "ParcelHandedOver": ["from_party", "to_party"],
    "CustomsStatusRecorded": ["direction", "status"],
    "EventVoided": ["voided_event_id", "reason"],
}
COMMON_REQUIRED = ["type", "event_id", "parcel_id", "event_time", "source"]
OPTIONAL = {
    "ParcelRegistered": ["promised_hours"],
    "ParcelScanned": ["raw_code"],
    "ParcelHandedOver": [],
    "CustomsStatusRecorded": ["reason"],
    "EventVoided": [],
}
COMMON_OPTIONAL = ["tz_offset_minutes", "location"]


def _with(kind: str, **changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(VALID[kind])
    obj.update(changes)
    return obj


def _rejects(obj: object, field: str, reason: str) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(obj)
    assert info.value.field == field, f"expected field {field!r}, got {info.value}"
    assert reason in info.value.reason, f"expected reason with {reason!r}, got {info.value}"
    assert field in str(info.value)
    return info.value


# --- accepted ------------------------------------------------------------------------------


def test_valid_examples_parse_to_the_expected_values() -> None:
    loc = Location(country="CN", facility_id="HGH-1", city="Hangzhou")
    base = {
        "event_id": "e-1",
        "parcel_id": "CN_0001-x",
        "event_time": T0,
        "tz_offset_minutes": 480,
        "source": "cainiao",
        "location": loc,
    }
    assert parse_event(VALID["ParcelRegistered"]) == ParcelRegistered(
        **base,
        merchant_id="m-1",
        origin=Place("CN", "Hangzhou"),
        destination=Place("ES", "Madrid"),
        service=Service.STANDARD,
        promised_hours=120,
    )
    assert parse_event(VALID["ParcelScanned"]) == ParcelScanned(
        **base, scan=Scan.PICKED_UP, raw_code="10"
    )
    assert parse_event(VALID["ParcelHandedOver"]) == ParcelHandedOver(
        **base, from_party="cainiao", to_party="correos"
    )
    assert parse_event(VALID["CustomsStatusRecorded"]) == CustomsStatusRecorded(
        **base, direction=CustomsDirection.IMPORT, status=CustomsStatus.HELD, reason="docs"
    )
    assert parse_event(VALID["EventVoided"]) == EventVoided(
        **base, voided_event_id="e-0", reason=VoidReason.DID_NOT_OCCUR
    )


@pytest.mark.parametrize(
    "value",
    [
        T0,
        "2026-11-11T09:30:00Z",
        "2026-11-11T09:30:00+00:00",
        "2026-11-11T17:30:00+08:00",
        "2026-11-11T04:30:00-05:00",
        "2026-11-11T09:30:00.000Z",
    ],
)
def test_epoch_millis_and_iso_with_offset_are_the_same_instant(value: object) -> None:
    assert parse_event(_with("ParcelScanned", event_time=value)).event_time == T0


@pytest.mark.parametrize(
    ("value", "millis"),
    [
        ("2026-11-11T09:30:00.1239Z", T0 + 123),
        ("2026-11-11T09:30:00.123999+00:00", T0 + 123),
        ("2026-11-11T09:30:00.999999999Z", T0 + 999),
        ("1969-12-31T23:59:59.9999Z", -1),  # truncation of digits: .999 before the epoch
    ],
)
def test_finer_digits_are_truncated(value: str, millis: int) -> None:
    assert parse_time(value) == millis


@pytest.mark.parametrize("kind", sorted(VALID))
def test_optional_fields_may_be_omitted(kind: str) -> None:
    obj = _with(kind)
    for name in COMMON_OPTIONAL + OPTIONAL[kind]:
        del obj[name]
    if kind == "ParcelRegistered":
        obj["origin"] = {"country": "CN"}  # city is optional too
    event = parse_event(obj)
    assert event.tz_offset_minutes == 0
    assert event.location is None
    for name in OPTIONAL[kind]:
        assert getattr(event, name) is None
    if isinstance(event, ParcelRegistered):
        assert event.origin == Place("CN")
        assert event.effective_promised_hours == 72


def test_optional_fields_may_be_null_and_nested_optionals_omitted() -> None:
    event = parse_event(_with("ParcelScanned", location={"country": "DE"}, raw_code=None))
    assert event.location == Location(country="DE")
    assert (
        parse_event(_with("ParcelScanned", location=None, tz_offset_minutes=None)).location is None
    )


def test_unknown_extra_fields_are_ignored() -> None:
    assert parse_event(_with("ParcelScanned", weight_kg=1.5)) == parse_event(VALID["ParcelScanned"])


@pytest.mark.parametrize("tz", [-720, 0, 840])
def test_tz_offset_bounds_are_accepted(tz: int) -> None:
    assert parse_event(_with("ParcelScanned", tz_offset_minutes=tz)).tz_offset_minutes == tz


@pytest.mark.parametrize("parcel_id", ["a", "A" * 64, "aZ09_-"])
def test_parcel_id_edges_are_accepted(parcel_id: str) -> None:
    assert parse_event(_with("ParcelScanned", parcel_id=parcel_id)).parcel_id == parcel_id


def test_event_id_of_128_characters_is_accepted() -> None:
    assert len(parse_event(_with("ParcelScanned", event_id="é" * 128)).event_id) == 128


@given(strategies.events())
@settings(max_examples=100, deadline=None)
def test_json_form_round_trips(event: Any) -> None:
    assert parse_event(event_to_json(event)) == event


@given(st.integers(TIME_MIN_MS, TIME_MAX_MS))
@settings(max_examples=200, deadline=None)
def test_format_time_round_trips_over_the_whole_range(millis: int) -> None:
    text = format_time(millis)
    assert text is not None and text.endswith("Z") and len(text) == 24
    assert parse_time(text) == millis


def test_format_time() -> None:
    assert format_time(T0 + 5) == "2026-11-11T09:30:00.005Z"
    assert format_time(None) is None
    assert format_time(TIME_MIN_MS) == "0001-01-01T00:00:00.000Z"


# --- rejected ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("ParcelScanned", "type"),
        ("ParcelScanned", "scan"),
        ("ParcelRegistered", "service"),
        ("CustomsStatusRecorded", "direction"),
        ("CustomsStatusRecorded", "status"),
        ("EventVoided", "reason"),
    ],
)
@pytest.mark.parametrize("symbol", ["NOPE", "picked_up", ""])
def test_bad_enum_symbol(kind: str, field: str, symbol: str) -> None:
    error = _rejects(_with(kind, **{field: symbol}), field, "unknown symbol")
    assert repr(symbol) in error.reason
    assert "expected one of" in error.reason


@pytest.mark.parametrize(
    ("parcel_id", "reason"),
    [
        ("", "must not be empty"),
        ("A" * 65, "1..64 characters"),
        ("CN 0001", "[A-Za-z0-9_-]"),
        ("CN/0001", "[A-Za-z0-9_-]"),
        ("CN0001é", "[A-Za-z0-9_-]"),
        ("CN0001\n", "[A-Za-z0-9_-]"),
    ],
)
def test_bad_parcel_id(parcel_id: str, reason: str) -> None:
    _rejects(_with("ParcelScanned", parcel_id=parcel_id), "parcel_id", reason)


@pytest.mark.parametrize(
    ("kind", "field"),
    [(kind, field) for kind in sorted(VALID) for field in COMMON_REQUIRED + REQUIRED[kind]],
)
def test_missing_required_field(kind: str, field: str) -> None:
    obj = _with(kind)
    del obj[field]
    _rejects(obj, field, "missing required field")


@pytest.mark.parametrize(
    ("kind", "field", "value", "reason"),
    [
        ("ParcelScanned", "event_id", 17, "expected a string, got int"),
        ("ParcelScanned", "parcel_id", 17, "expected a string, got int"),
        ("ParcelScanned", "source", None, "expected a string, got NoneType"),
        ("ParcelScanned", "scan", 1, "expected a string, got int"),
        ("ParcelScanned", "raw_code", 10, "expected a string or null, got int"),
        ("ParcelScanned", "tz_offset_minutes", "480", "expected an integer, got str"),
        ("ParcelScanned", "tz_offset_minutes", True, "expected an integer, got bool"),
        ("ParcelScanned", "tz_offset_minutes", 480.0, "expected an integer, got float"),
        ("ParcelScanned", "event_time", True, "epoch milliseconds"),
        ("ParcelScanned", "event_time", 1.5e12, "epoch milliseconds"),
        ("ParcelScanned", "event_time", None, "epoch milliseconds"),
        ("ParcelScanned", "location", "CN", "expected an object or null, got str"),
        ("ParcelRegistered", "promised_hours", "72", "expected an integer, got str"),
        ("ParcelRegistered", "promised_hours", False, "expected an integer, got bool"),
        ("ParcelRegistered", "origin", "CN", "expected an object, got str"),
        ("ParcelRegistered", "merchant_id", ["m"], "expected a string, got list"),
        ("ParcelHandedOver", "to_party", 3, "expected a string, got int"),
        ("CustomsStatusRecorded", "reason", {}, "expected a string or null, got dict"),
        ("EventVoided", "voided_event_id", 7, "expected a string, got int"),
    ],
)
def test_wrong_type(kind: str, field: str, value: object, reason: str) -> None:
    _rejects(_with(kind, **{field: value}), field, reason)


def test_nested_wrong_types_name_the_nested_field() -> None:
    _rejects(
        _with("ParcelScanned", location={"country": "CN", "city": 5}),
        "location.city",
        "expected a string or null",
    )
    _rejects(
        _with("ParcelScanned", location={"country": "CN", "facility_id": 5}),
        "location.facility_id",
        "expected a string or null",
    )
    _rejects(
        _with("ParcelRegistered", destination={"city": "Madrid"}),
        "destination.country",
        "missing required field",
    )


def test_not_an_object() -> None:
    _rejects(["ParcelScanned"], "<event>", "expected a JSON object, got list")


@pytest.mark.parametrize("tz", [-721, 841, -10_000])
def test_tz_offset_out_of_range(tz: int) -> None:
    _rejects(_with("ParcelScanned", tz_offset_minutes=tz), "tz_offset_minutes", "outside -720..840")


@pytest.mark.parametrize(
    "value", ["2026-11-11T09:30:00", "2026-11-11 09:30:00.123", "2026-11-11", "2026-11-11T09:30"]
)
def test_time_without_offset(value: str) -> None:
    _rejects(_with("ParcelScanned", event_time=value), "event_time", "without UTC offset")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2026-13-11T09:30:00Z",
        "2026-11-11T25:00:00Z",
        "1794389400000",
        "11/11/2026",
    ],
)
def test_bad_iso_time(value: str) -> None:
    _rejects(_with("ParcelScanned", event_time=value), "event_time", "not an ISO-8601 time")


@pytest.mark.parametrize("value", [TIME_MAX_MS + 1, TIME_MIN_MS - 1, 2**63, -(2**70)])
def test_time_out_of_range(value: int) -> None:
    _rejects(_with("ParcelScanned", event_time=value), "event_time", "outside years 1..9999")


def test_iso_time_beyond_year_9999_in_utc_is_rejected() -> None:
    _rejects(
        _with("ParcelScanned", event_time="9999-12-31T23:00:00-05:00"),
        "event_time",
        "outside years 1..9999",
    )


def test_event_id_too_long_or_empty() -> None:
    _rejects(_with("ParcelScanned", event_id="e" * 129), "event_id", "longer than 128")
    _rejects(_with("ParcelScanned", event_id=""), "event_id", "must not be empty")
    _rejects(_with("EventVoided", voided_event_id="e" * 129), "voided_event_id", "longer than 128")


@pytest.mark.parametrize("country", ["cn", "CHN", "C", "", "C1", "ÇN"])
@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("ParcelScanned", "location"),
        ("ParcelRegistered", "origin"),
        ("ParcelRegistered", "destination"),
    ],
)
def test_bad_country_code(kind: str, field: str, country: str) -> None:
    obj = _with(kind)
    obj[field] = obj[field] | {"country": country}
    _rejects(obj, f"{field}.country", "country code")


@pytest.mark.parametrize("hours", [0, -1])
def test_promised_hours_must_be_positive(hours: int) -> None:
    _rejects(_with("ParcelRegistered", promised_hours=hours), "promised_hours", "must be positive")
