"""The cheap codec paths (status_bytes, schema-built event readers) against the fastavro ones."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from projections import fold
from projections.events import EVENT_CLASSES, Event, EventType, intern_location
from streams import avro
from streams.avro import (
    MAGIC,
    DecodeError,
    EncodeError,
    decode_event,
    decode_status,
    encode_event,
    encode_status,
    status_bytes,
    status_from_state,
)
from tests import strategies
from tests.unit.test_state_format import GOLDEN_EVENTS

ETAS = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "eta_p50": strategies.times(),
        "eta_p90": strategies.times(),
        "on_time_probability": st.floats(0.0, 1.0),
        "eta_basis": st.sampled_from(["lane", "route", "global"]),
    },
)


def fastavro_status(status: dict[str, Any]) -> bytes:
    """ParcelStatus bytes written by fastavro with the parsed current schema."""
    writer = avro._CODEC._current[schemas.STATUS_SCHEMA]
    buf = io.BytesIO()
    buf.write(MAGIC + writer.fingerprint)
    schemaless_writer(buf, writer.parsed, status)
    return buf.getvalue()


def fastavro_event(data: bytes) -> Event:
    """The event through fastavro and the record converters (the path before the readers)."""
    writer = avro._CODEC._writers[data[2:10]]
    record = schemaless_reader(io.BytesIO(data[10:]), writer.parsed, None)
    assert writer.convert is not None
    event: Event = writer.convert(record)  # type: ignore[arg-type]
    return event


def test_status_layout_matches_the_schema_file() -> None:
    # If this fails the schema changed: status_bytes has fallen back to the dict path
    # (still correct) and _STATUS_LAYOUT with status_bytes should follow the schema.
    assert avro._STATUS_FAST


@given(st.lists(strategies.events(parcel_ids=st.just("PX1")), min_size=1, max_size=12), ETAS)
@settings(max_examples=150, deadline=None)
def test_status_bytes_equal_the_dict_path(events: list[Any], eta: dict[str, Any] | None) -> None:
    state = None
    for event in events:
        state = fold.step(state, event).state
        assert state is not None
        if not state.is_visible:
            continue
        status = status_from_state(state, eta)
        data = status_bytes(state, eta)
        assert data == fastavro_status(status) == encode_status(status)
        assert decode_status(data) == status


def test_status_bytes_of_a_plain_object_with_a_set_of_holds() -> None:
    state = SimpleNamespace(
        parcel_id="P1",
        milestone="DELIVERED",
        holds={"CUSTOMS_REFUSED", "CUSTOMS_HOLD"},
        attempts=1,
        delivered_at=2_000,
        custodian="courier",
        registered=True,
        event_count=4,
        last_event_time=2_000,
        origin_country="CN",
        origin_city="Hangzhou",
        destination_country="ES",
        destination_city=None,
        service="STANDARD",
        promised_hours=72,
        registered_at=1_000,
        promised_at=1_000 + 72 * 3_600_000,
        version=5,
    )
    eta = {"eta_p50": 3_000, "on_time_probability": 0.9}
    assert status_bytes(state, eta) == fastavro_status(status_from_state(state, eta))  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="P1"):
        status_bytes(SimpleNamespace(**{**vars(state), "attempts": 1 << 31}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="P1"):
        status_bytes(SimpleNamespace(parcel_id="P1", last_event_time=None))  # type: ignore[arg-type]


def test_every_current_event_schema_has_a_fast_reader() -> None:
    assert sorted(reader.name for reader in avro._FAST_READERS.values()) == sorted(
        schemas.EVENT_SCHEMAS
    )


@given(strategies.events())
@settings(max_examples=300, deadline=None)
def test_fast_reader_gives_the_fastavro_event(event: Any) -> None:
    data = encode_event(event)
    decoded = decode_event(data)
    assert decoded == fastavro_event(data) == event
    assert type(decoded) is type(event)
    if decoded.location is not None:
        loc = decoded.location
        assert loc is intern_location(loc.country, loc.facility_id, loc.city)


ONE_OF_EACH = {type(event): event for event in GOLDEN_EVENTS}


@pytest.mark.parametrize("kind", list(EventType))
def test_fast_reader_refuses_what_fastavro_refuses(kind: EventType) -> None:
    example = ONE_OF_EACH[EVENT_CLASSES[kind]]
    data = encode_event(example)
    assert avro._FAST_READERS[data[2:10]].read(data) == example
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_event(data[:cut])
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        decode_event(data + b"\x00")
    assert decode_event(bytearray(data)) == example  # not bytes: the fastavro path


def test_bad_location_country_is_a_contract_violation_on_the_fast_path() -> None:
    event = GOLDEN_EVENTS[1]  # a scan with a location
    record = avro.event_to_record(event)
    record["location"] = ("trackbone.events.Location", {**record["location"], "country": "cn"})
    data = avro._CODEC.encode("ParcelScanned", record)
    with pytest.raises(DecodeError, match=r"'location\.country'"):
        decode_event(data)


@given(
    st.integers(-(1 << 63), (1 << 63) - 1)
    | st.sampled_from([0, -1, 63, 64, -64, -65, 1 << 35, (1 << 41) - 1, 1 << 41, -(1 << 63)])
)
@settings(max_examples=400, deadline=None)
def test_long_writer_matches_fastavro(value: int) -> None:
    buf = io.BytesIO()
    schemaless_writer(buf, "long", value)
    assert avro._write_long(value) == buf.getvalue()
    assert avro._read_long(buf.getvalue(), 0) == (value, len(buf.getvalue()))


def test_long_and_int_writers_refuse_out_of_range_values() -> None:
    with pytest.raises(ValueError):
        avro._write_long(1 << 63)
    with pytest.raises(ValueError):
        avro._write_int(1 << 31)
    with pytest.raises(ValueError):
        avro._write_int(True)
