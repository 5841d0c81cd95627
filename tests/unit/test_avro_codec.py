"""The Avro codec (streams/avro.py): single-object framing, round trips, evolution, bad bytes."""

from __future__ import annotations

import copy
import io
import json
from types import SimpleNamespace
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from projections.events import (
    EVENT_CLASSES,
    EventType,
    EventVoided,
    Location,
    ParcelScanned,
    Scan,
    event_type,
)
from projections.jsonform import event_to_json, parse_event
from streams import avro
from streams.avro import (
    MAGIC,
    TOPIC_BASE_BY_TYPE,
    Codec,
    DecodeError,
    EncodeError,
    decode_event,
    decode_status,
    encode_event,
    encode_status,
    event_to_record,
    record_to_event,
    status_from_state,
    topic_base_for,
)
from streams.settings import Topics
from tests import strategies

FAST = settings(max_examples=150, deadline=None)

SCAN = ParcelScanned(
    event_id="evt-1",
    parcel_id="CN0001",
    event_time=1_794_389_400_123,
    tz_offset_minutes=480,
    source="cainiao",
    location=Location(country="CN", facility_id="HGH-1", city="Hangzhou"),
    scan=Scan.ORIGIN_HUB_ARRIVED,
    raw_code="A10",
)


# --- an independent CRC-64-AVRO (Rabin) fingerprint, straight from the Avro spec -----------

_EMPTY_64 = 0xC15D213AA4D7A795


def rabin64(data: bytes) -> int:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY_64 & -(fp & 1))
        table.append(fp)
    fp = _EMPTY_64
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_reference_fingerprint_matches_avro_test_vectors() -> None:
    # From Avro's share/test/data/schema-tests.txt (signed 64-bit as Java prints them).
    assert rabin64(b'"null"') == 7195948357588979594
    assert rabin64(b'"int"') == 8247732601305521295
    assert rabin64(b'"string"') == -8142146995180207161 + 2**64


def _frame(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """Single-object bytes built without the codec: fastavro body + spec header."""
    parsed = parse_schema(copy.deepcopy(schema))
    pcf = to_parsing_canonical_form(parsed)
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + rabin64(pcf.encode()).to_bytes(8, "little"))
    schemaless_writer(buf, parsed, record)
    return buf.getvalue()


@pytest.mark.parametrize("kind", list(EventType))
def test_header_is_marker_and_fingerprint_of_canonical_form(kind: EventType) -> None:
    schema = schemas.load_schema(kind.value)
    pcf = to_parsing_canonical_form(parse_schema(schema))
    expected = rabin64(pcf.encode()).to_bytes(8, "little")
    assert avro.schema_fingerprint(schema) == expected
    assert avro._CODEC.fingerprint(kind.value) == expected


@given(strategies.events())
@FAST
def test_event_header_bytes(event: Any) -> None:
    data = encode_event(event)
    schema = schemas.load_schema(event_type(event).value)
    pcf = to_parsing_canonical_form(parse_schema(schema))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == rabin64(pcf.encode()).to_bytes(8, "little")


def test_stripping_logical_types_keeps_the_fingerprint() -> None:
    # The codec reads int millis through a copy without logicalType; PCF ignores it.
    for name in schemas.names():
        schema = schemas.load_schema(name)
        stripped = avro._strip_logical_types(schema)
        assert "logicalType" in json.dumps(schema) or name not in schemas.EVENT_SCHEMAS
        assert avro.schema_fingerprint(stripped) == avro.schema_fingerprint(schema)


# --- round trips ---------------------------------------------------------------------------


@given(strategies.events())
@FAST
def test_every_event_round_trips_through_avro(event: Any) -> None:
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert type(decoded) is type(event)


@pytest.mark.parametrize("kind", list(EventType))
def test_each_event_type_round_trips(kind: EventType) -> None:
    strategy = {
        EventType.PARCEL_REGISTERED: strategies.registrations(),
        EventType.PARCEL_SCANNED: strategies.scans(),
        EventType.PARCEL_HANDED_OVER: strategies.handoffs(),
        EventType.CUSTOMS_STATUS_RECORDED: strategies.customs(),
        EventType.EVENT_VOIDED: strategies.voids(),
    }[kind]

    @given(strategy)
    @settings(max_examples=40, deadline=None)
    def check(event: Any) -> None:
        assert isinstance(event, EVENT_CLASSES[kind])
        assert decode_event(encode_event(event)) == event

    check()


def test_decoded_enums_are_domain_members_and_times_are_ints() -> None:
    decoded = decode_event(encode_event(SCAN))
    assert isinstance(decoded, ParcelScanned)
    assert decoded.scan is Scan.ORIGIN_HUB_ARRIVED
    assert type(decoded.event_time) is int
    assert decoded.location == SCAN.location


@given(strategies.events())
@FAST
def test_json_form_round_trips(event: Any) -> None:
    as_json = event_to_json(event)
    assert parse_event(as_json) == event
    assert parse_event(json.loads(json.dumps(as_json))) == event


# --- evolution -----------------------------------------------------------------------------


def _scanned_v2() -> dict[str, Any]:
    """A plausible next ParcelScanned: one added field with a default."""
    schema = schemas.load_schema("ParcelScanned")
    schema["fields"].append(
        {"name": "scanner_id", "type": ["null", "string"], "default": None, "doc": "test"}
    )
    return schema


def _current_schemas() -> dict[str, dict[str, Any]]:
    return {name: schemas.load_schema(name) for name in schemas.names()}


@given(strategies.scans())
@settings(max_examples=50, deadline=None)
def test_current_reader_reads_a_newer_writer_with_an_added_field(event: ParcelScanned) -> None:
    v2 = _scanned_v2()
    record = event_to_record(event) | {"scanner_id": "gun-7"}
    data = _frame(v2, record)
    # The newer writer is known (e.g. shipped with the producer's schemas): it resolves.
    reader = Codec(_current_schemas(), older=[v2])
    name, decoded = reader.decode(data)
    assert name == "ParcelScanned"
    assert "scanner_id" not in decoded
    assert record_to_event(name, decoded) == event
    # The shipped codec does not know that writer: a clear error, never a misread.
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        decode_event(data)


@given(strategies.scans())
@settings(max_examples=50, deadline=None)
def test_newer_reader_reads_current_messages_with_the_default(event: ParcelScanned) -> None:
    current = _current_schemas()
    newer = Codec(current | {"ParcelScanned": _scanned_v2()}, older=[current["ParcelScanned"]])
    name, decoded = newer.decode(encode_event(event))
    assert name == "ParcelScanned"
    assert decoded == event_to_record(event) | {"scanner_id": None}


def test_unknown_enum_symbol_of_a_newer_writer_is_a_decode_error() -> None:
    newer = schemas.load_schema("ParcelScanned")
    scan_field = next(f for f in newer["fields"] if f["name"] == "scan")
    scan_field["type"]["symbols"].append("LOST")
    codec = Codec(_current_schemas(), older=[newer])
    record = event_to_record(SCAN)
    assert codec.decode(_frame(newer, record))[1] == record
    with pytest.raises(DecodeError, match=r"does not fit the reader.*LOST"):
        codec.decode(_frame(newer, record | {"scan": "LOST"}))


@given(strategies.status_records())
@settings(max_examples=60, deadline=None)
def test_parcel_status_v1_messages_decode_with_the_current_reader(status: dict[str, Any]) -> None:
    v1 = dict(schemas.history("ParcelStatus"))[1]
    v1_fields = {f["name"] for f in v1["fields"]}
    old = {k: v for k, v in status.items() if k in v1_fields}
    decoded = decode_status(_frame(v1, old))
    assert decoded == old | dict.fromkeys(avro.STATUS_ETA_FIELDS)


# --- status --------------------------------------------------------------------------------


@given(strategies.status_records())
@settings(max_examples=100, deadline=None)
def test_status_round_trips(status: dict[str, Any]) -> None:
    data = encode_status(status)
    assert data[:2] == MAGIC
    assert decode_status(data) == status


def _status_fields() -> list[str]:
    return [f["name"] for f in schemas.load_schema("ParcelStatus")["fields"]]


def test_status_from_a_plain_state_object() -> None:
    state = SimpleNamespace(
        parcel_id="P1",
        milestone="DELIVERED",
        holds=frozenset({"CUSTOMS_REFUSED", "CUSTOMS_HOLD"}),
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
    status = status_from_state(state, {"eta_p50": 3_000, "on_time_probability": 0.9})
    assert set(status) == set(_status_fields())
    assert status["holds"] == ["CUSTOMS_HOLD", "CUSTOMS_REFUSED"]
    assert status["updated_at"] == 2_000
    assert status["eta_p50"] == 3_000 and status["eta_p90"] is None
    assert decode_status(encode_status(status)) == status
    with pytest.raises(ValueError, match="P1"):
        status_from_state(SimpleNamespace(parcel_id="P1", last_event_time=None))


@given(st.lists(strategies.events(parcel_ids=st.just("PX1")), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_status_from_folded_state(events: list[Any]) -> None:
    fold = pytest.importorskip("projections.fold")
    state = fold.fold(events)
    if state is None or not state.event_count:
        return
    status = status_from_state(state)
    assert set(status) == set(_status_fields())
    decoded = decode_status(encode_status(status))
    assert decoded == status
    assert decoded["milestone"] == str(state.milestone)
    assert decoded["last_event_time"] == state.last_event_time
    assert decoded["holds"] == sorted(state.holds)


# --- bad bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty message"),
        (b"\xc3", "truncated header"),
        (b"\xc3\x01\x00\x01", "truncated header"),
        (b"{}", "not Avro single-object encoding"),
        (b'{"event_id": "e1", "parcel_id": "P1"}', "marker 7b22"),
        (b"\xc3\x02" + bytes(8) + b"\x00", "marker c302"),
        (b"\xc3\x01" + bytes(8) + b"\x00", "unknown writer schema fingerprint 0000000000000000"),
    ],
)
def test_bad_framing_is_a_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_event(data)
    with pytest.raises(DecodeError):
        decode_status(data)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


def test_every_truncation_is_a_decode_error() -> None:
    data = encode_event(SCAN)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_event(data[:cut])


def test_trailing_bytes_are_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        decode_event(encode_event(SCAN) + b"\x00")


@given(st.sampled_from(list(EventType)), st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_garbage_body_is_a_decode_error_or_a_valid_event(kind: EventType, body: bytes) -> None:
    data = MAGIC + avro._CODEC.fingerprint(kind.value) + body
    try:
        event = decode_event(data)
    except DecodeError:
        return
    assert isinstance(event, EVENT_CLASSES[kind])
    assert decode_event(encode_event(event)) == event


def test_status_bytes_are_not_an_event_and_back() -> None:
    status = status_from_state(
        SimpleNamespace(
            parcel_id="P1",
            milestone="REGISTERED",
            holds=frozenset(),
            attempts=0,
            delivered_at=None,
            custodian=None,
            registered=False,
            event_count=1,
            last_event_time=5,
            origin_country=None,
            origin_city=None,
            destination_country=None,
            destination_city=None,
            service=None,
            promised_hours=None,
            registered_at=None,
            promised_at=None,
            version=1,
        )
    )
    with pytest.raises(DecodeError, match="not an event"):
        decode_event(encode_status(status))
    with pytest.raises(DecodeError, match="not a ParcelStatus"):
        decode_status(encode_event(SCAN))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"parcel_id": "bad id!"}, "parcel_id"),
        ({"parcel_id": "x" * 65}, "parcel_id"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "e" * 129}, "event_id"),
        ({"tz_offset_minutes": 841}, "tz_offset_minutes"),
        ({"location": {"facility_id": None, "country": "cn", "city": None}}, "location.country"),
    ],
)
def test_avro_records_that_break_the_contract_are_rejected(
    change: dict[str, Any], field: str
) -> None:
    record = event_to_record(SCAN) | change
    data = _frame(schemas.load_schema("ParcelScanned"), record)
    with pytest.raises(DecodeError, match=f"'{field}'"):
        decode_event(data)
    bad = ParcelScanned(
        **(
            {k: getattr(SCAN, k) for k in ("event_id", "parcel_id", "source", "scan")}
            | {"event_time": SCAN.event_time}
            | {k: v for k, v in change.items() if k != "location"}
        ),
        location=Location(country="cn") if "location" in change else None,
    )
    with pytest.raises(EncodeError, match=f"'{field}'"):
        encode_event(bad)


def test_void_with_too_long_target_is_rejected_on_encode() -> None:
    void = EventVoided(
        event_id="v1",
        parcel_id="P1",
        event_time=0,
        source="ops",
        voided_event_id="x" * 129,
        reason=avro.VoidReason.DID_NOT_OCCUR,
    )
    with pytest.raises(EncodeError, match="voided_event_id"):
        encode_event(void)


# --- topics --------------------------------------------------------------------------------


def test_every_event_type_has_an_input_topic_of_the_contract() -> None:
    assert set(TOPIC_BASE_BY_TYPE) == set(EventType)
    assert set(TOPIC_BASE_BY_TYPE.values()) == set(Topics().inputs)
    assert topic_base_for(SCAN) == "tracking.scans"
