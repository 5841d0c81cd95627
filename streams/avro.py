"""Avro single-object encoding of the contract's events and of ParcelStatus.

Every Kafka value is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint
of the writer schema's Parsing Canonical Form + the Avro binary body (Avro spec,
"Single-object encoding"). The fingerprint tells a reader which schema, and
which version of it, wrote the bytes, so old messages stay readable: every
version under ``schemas/`` and ``schemas/history/`` is known and resolved against
the current schema of the same name.

Times stay int epoch millis end to end: the codec parses copies of the schemas
with ``logicalType`` stripped, so fastavro reads and writes plain longs instead
of building datetimes. Parsing Canonical Form drops ``logicalType``, so the
fingerprints are those of the published ``.avsc`` files.

Decoding is on the stream's hot path: schemas are parsed once, at import. Events of
a current schema are read by readers built from the schema files straight into the
domain event (see "cheap event decoding"); other writer versions go through fastavro
with schema resolution. `status_bytes` writes a ParcelStatus straight from a fold
state; `encode_status` (from a dict) uses fastavro.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form

import schemas
from projections.events import (
    EVENT_CLASSES,
    CustomsDirection,
    CustomsStatus,
    CustomsStatusRecorded,
    Event,
    EventType,
    EventVoided,
    Location,
    ParcelHandedOver,
    ParcelRegistered,
    ParcelScanned,
    Scan,
    Service,
    VoidReason,
    event_type,
    intern_location,
    intern_place,
    positional_constructor,
)
from projections.jsonform import (
    COUNTRY_RE,
    EVENT_ID_MAX,
    PARCEL_ID_RE,
    TIME_MAX_MS,
    TIME_MIN_MS,
    TZ_MAX,
    TZ_MIN,
)

if TYPE_CHECKING:
    from projections.fold import ParcelState

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

TOPIC_BASE_BY_TYPE: dict[EventType, str] = {
    EventType.PARCEL_REGISTERED: "tracking.registrations",
    EventType.PARCEL_SCANNED: "tracking.scans",
    EventType.PARCEL_HANDED_OVER: "tracking.handoffs",
    EventType.CUSTOMS_STATUS_RECORDED: "tracking.customs",
    EventType.EVENT_VOIDED: "tracking.corrections",
}
"""Input topic of each event type, before Settings.topics adds its prefix."""

STATUS_ETA_FIELDS = ("eta_p50", "eta_p90", "on_time_probability", "eta_basis")


class DecodeError(ValueError):
    """Bytes that are not a valid single-object Avro message of a known schema."""


class EncodeError(ValueError):
    """A value that its schema (or the contract) cannot carry."""


def topic_base_for(event: Event) -> str:
    """Input topic (without prefix) that carries events of this type."""
    return TOPIC_BASE_BY_TYPE[event_type(event)]


def _strip_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(v) for v in schema]
    return schema


def canonical_form(schema: Mapping[str, Any]) -> str:
    """Avro Parsing Canonical Form of a schema given as JSON."""
    return str(to_parsing_canonical_form(parse_schema(dict(schema))))


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """CRC-64-AVRO fingerprint of the schema's canonical form, as the 8 header bytes."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def _record_name(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    return name.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class _Writer:
    """One schema version, parsed once, that messages may have been written with."""

    name: str
    fingerprint: bytes
    parsed: Any
    reader: Any
    """The current schema of the same name, or None when this is the current one."""
    convert: Callable[[dict[str, Any]], Any] | None


class Codec:
    """Single-object encoder/decoder over the current schemas and older writer versions.

    `current` maps a schema name to its current (reader and writer) schema; `older`
    are further writer schemas (older or newer versions) whose messages must stay
    readable; each resolves against the current schema of the same record name.
    The module-level functions use the codec built from ``schemas/``; tests and
    tools build others (e.g. to try a schema change).
    """

    def __init__(
        self,
        current: Mapping[str, Mapping[str, Any]],
        older: Iterable[Mapping[str, Any]] = (),
        converters: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
    ) -> None:
        self._converters = dict(converters or {})
        self._current: dict[str, _Writer] = {}
        self._writers: dict[bytes, _Writer] = {}
        for name, schema in current.items():
            if _record_name(schema) != name:
                raise ValueError(f"schema {name!r} defines record {schema['name']!r}")
            parsed = parse_schema(_strip_logical_types(schema))
            writer = _Writer(
                name, schema_fingerprint(schema), parsed, None, self._converters.get(name)
            )
            self._current[name] = writer
            self._writers[writer.fingerprint] = writer
        for schema in older:
            self.register_writer(schema)

    def register_writer(self, schema: Mapping[str, Any]) -> bytes:
        """Make messages written with `schema` readable; return its fingerprint."""
        name = _record_name(schema)
        if name not in self._current:
            raise ValueError(f"writer schema {name!r} has no current schema to resolve against")
        fp = schema_fingerprint(schema)
        if fp not in self._writers:
            current = self._current[name]
            self._writers[fp] = _Writer(
                name,
                fp,
                parse_schema(_strip_logical_types(schema)),
                current.parsed,
                current.convert,
            )
        return fp

    def fingerprint(self, name: str) -> bytes:
        """Fingerprint of the current schema `name` (what encode writes)."""
        return self._current[name].fingerprint

    def known_fingerprints(self) -> dict[bytes, str]:
        """Every readable writer fingerprint and the schema name it resolves to."""
        return {fp: writer.name for fp, writer in self._writers.items()}

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Single-object encode a record (times as int millis) with the current schema."""
        writer = self._current[name]
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(writer.fingerprint)
        try:
            schemaless_writer(buf, writer.parsed, record)
        except Exception as exc:
            raise EncodeError(f"{name}: cannot encode record: {exc!r}") from exc
        return buf.getvalue()

    def _read(self, data: bytes | bytearray | memoryview) -> tuple[_Writer, dict[str, Any]]:
        if len(data) < HEADER_SIZE:
            if not data:
                raise DecodeError("empty message: expected Avro single-object encoding")
            if bytes(data[:2]) != MAGIC[: len(data)]:
                raise DecodeError(f"not Avro single-object encoding: starts with {_show(data)}")
            raise DecodeError(f"truncated header: {len(data)} bytes, need {HEADER_SIZE}")
        if data[0] != 0xC3 or data[1] != 0x01:
            raise DecodeError(
                f"not Avro single-object encoding: marker {_show(data[:2])}, expected c301"
            )
        fp = bytes(data[2:HEADER_SIZE])
        writer = self._writers.get(fp)
        if writer is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fp.hex()} (CRC-64-AVRO, little-endian); "
                f"known: {len(self._writers)} versions of {', '.join(sorted(self._current))}"
            )
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            record: dict[str, Any] = schemaless_reader(buf, writer.parsed, writer.reader)  # type: ignore[assignment]
        except SchemaResolutionError as exc:
            # e.g. an enum symbol the current schema does not have
            raise DecodeError(
                f"{writer.name}: writer data does not fit the reader: {exc}"
            ) from None
        except Exception as exc:
            raise DecodeError(f"{writer.name}: corrupt or truncated body: {exc!r}") from None
        if buf.tell() != len(data):
            raise DecodeError(
                f"{writer.name}: {len(data) - buf.tell()} trailing bytes after the record"
            )
        return writer, record

    def decode(self, data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]:
        """Decode to (schema name, record in the current schema's shape), unconverted."""
        writer, record = self._read(data)
        return writer.name, record


def _show(data: bytes | bytearray | memoryview) -> str:
    return bytes(data[:8]).hex() or "<empty>"


# --- records <-> domain events -------------------------------------------------------------

_SERVICE = {m.value: m for m in Service}
_SCAN = {m.value: m for m in Scan}
_DIRECTION = {m.value: m for m in CustomsDirection}
_CUSTOMS_STATUS = {m.value: m for m in CustomsStatus}
_VOID_REASON = {m.value: m for m in VoidReason}


class ContractViolation(ValueError):
    """A record that Avro can carry but the contract forbids."""


def _check_id(value: str, field: str) -> None:
    if not 1 <= len(value) <= EVENT_ID_MAX:
        raise ContractViolation(f"field '{field}': must be 1..{EVENT_ID_MAX} characters")


_COUNTRIES_SEEN: set[str] = set()
"""Country codes already found valid: a set lookup instead of a regex per event."""


def _check_country(value: str, field: str) -> None:
    if value in _COUNTRIES_SEEN:
        return
    if COUNTRY_RE.fullmatch(value) is None:
        raise ContractViolation(
            f"field '{field}': not an ISO 3166-1 alpha-2 country code: {value!r}"
        )
    if len(_COUNTRIES_SEEN) < 4096:
        _COUNTRIES_SEEN.add(value)


def _check_fields(
    event_id: str, parcel_id: str, event_time: int, tz: int, location: Any | None, country: Any
) -> None:
    """The contract's rules on the fields every event has (`country` of the location)."""
    _check_id(event_id, "event_id")
    if PARCEL_ID_RE.fullmatch(parcel_id) is None:
        raise ContractViolation("field 'parcel_id': must be 1..64 characters of [A-Za-z0-9_-]")
    if not TIME_MIN_MS <= event_time <= TIME_MAX_MS:
        raise ContractViolation(f"field 'event_time': {event_time} is out of range")
    if not TZ_MIN <= tz <= TZ_MAX:
        raise ContractViolation(f"field 'tz_offset_minutes': {tz} is outside {TZ_MIN}..{TZ_MAX}")
    if location is not None:
        _check_country(country, "location.country")


def _check_common(rec: Mapping[str, Any]) -> None:
    location = rec["location"]
    _check_fields(
        rec["event_id"],
        rec["parcel_id"],
        rec["event_time"],
        rec["tz_offset_minutes"],
        location,
        None if location is None else location["country"],
    )


def _location_from(rec: dict[str, Any]) -> Location | None:
    loc = rec["location"]
    if loc is None:
        return None
    return intern_location(loc["country"], loc["facility_id"], loc["city"])


def _registered_from(rec: dict[str, Any]) -> ParcelRegistered:
    _check_common(rec)
    origin, destination = rec["origin"], rec["destination"]
    _check_country(origin["country"], "origin.country")
    _check_country(destination["country"], "destination.country")
    promised = rec["promised_hours"]
    if promised is not None and promised <= 0:
        raise ContractViolation(f"field 'promised_hours': must be positive, got {promised}")
    return ParcelRegistered(
        event_id=rec["event_id"],
        parcel_id=rec["parcel_id"],
        event_time=rec["event_time"],
        tz_offset_minutes=rec["tz_offset_minutes"],
        source=rec["source"],
        location=_location_from(rec),
        merchant_id=rec["merchant_id"],
        origin=intern_place(origin["country"], origin["city"]),
        destination=intern_place(destination["country"], destination["city"]),
        service=_SERVICE[rec["service"]],
        promised_hours=promised,
    )


def _scanned_from(rec: dict[str, Any]) -> ParcelScanned:
    _check_common(rec)
    return ParcelScanned(
        event_id=rec["event_id"],
        parcel_id=rec["parcel_id"],
        event_time=rec["event_time"],
        tz_offset_minutes=rec["tz_offset_minutes"],
        source=rec["source"],
        location=_location_from(rec),
        scan=_SCAN[rec["scan"]],
        raw_code=rec["raw_code"],
    )


def _handed_over_from(rec: dict[str, Any]) -> ParcelHandedOver:
    _check_common(rec)
    return ParcelHandedOver(
        event_id=rec["event_id"],
        parcel_id=rec["parcel_id"],
        event_time=rec["event_time"],
        tz_offset_minutes=rec["tz_offset_minutes"],
        source=rec["source"],
        location=_location_from(rec),
        from_party=rec["from_party"],
        to_party=rec["to_party"],
    )


def _customs_from(rec: dict[str, Any]) -> CustomsStatusRecorded:
    _check_common(rec)
    return CustomsStatusRecorded(
        event_id=rec["event_id"],
        parcel_id=rec["parcel_id"],
        event_time=rec["event_time"],
        tz_offset_minutes=rec["tz_offset_minutes"],
        source=rec["source"],
        location=_location_from(rec),
        direction=_DIRECTION[rec["direction"]],
        status=_CUSTOMS_STATUS[rec["status"]],
        reason=rec["reason"],
    )


def _voided_from(rec: dict[str, Any]) -> EventVoided:
    _check_common(rec)
    _check_id(rec["voided_event_id"], "voided_event_id")
    return EventVoided(
        event_id=rec["event_id"],
        parcel_id=rec["parcel_id"],
        event_time=rec["event_time"],
        tz_offset_minutes=rec["tz_offset_minutes"],
        source=rec["source"],
        location=_location_from(rec),
        voided_event_id=rec["voided_event_id"],
        reason=_VOID_REASON[rec["reason"]],
    )


_FROM_RECORD: dict[str, Callable[[dict[str, Any]], Any]] = {
    EventType.PARCEL_REGISTERED.value: _registered_from,
    EventType.PARCEL_SCANNED.value: _scanned_from,
    EventType.PARCEL_HANDED_OVER.value: _handed_over_from,
    EventType.CUSTOMS_STATUS_RECORDED.value: _customs_from,
    EventType.EVENT_VOIDED.value: _voided_from,
}


def event_to_record(event: Event) -> dict[str, Any]:
    """Build the Avro record of an event (current schema shape, times as int millis)."""
    loc = event.location
    rec: dict[str, Any] = {
        "event_id": event.event_id,
        "parcel_id": event.parcel_id,
        "event_time": event.event_time,
        "tz_offset_minutes": event.tz_offset_minutes,
        "source": event.source,
        "location": None
        if loc is None
        else {"facility_id": loc.facility_id, "country": loc.country, "city": loc.city},
    }
    match event:
        case ParcelScanned():
            rec["scan"] = event.scan.value
            rec["raw_code"] = event.raw_code
        case ParcelRegistered():
            rec["merchant_id"] = event.merchant_id
            rec["origin"] = {"country": event.origin.country, "city": event.origin.city}
            rec["destination"] = {
                "country": event.destination.country,
                "city": event.destination.city,
            }
            rec["service"] = event.service.value
            rec["promised_hours"] = event.promised_hours
        case ParcelHandedOver():
            rec["from_party"] = event.from_party
            rec["to_party"] = event.to_party
        case CustomsStatusRecorded():
            rec["direction"] = event.direction.value
            rec["status"] = event.status.value
            rec["reason"] = event.reason
        case EventVoided():
            rec["voided_event_id"] = event.voided_event_id
            rec["reason"] = event.reason.value
    return rec


def record_to_event(name: str, record: dict[str, Any]) -> Event:
    """Build the domain event of a current-schema record; ValueError if it breaks the contract."""
    converted: Event = _FROM_RECORD[name](record)
    return converted


def default_codec() -> Codec:
    """Build a codec over every schema version shipped in ``schemas/`` (current + history)."""
    current = {name: schemas.load_schema(name) for name in schemas.names()}
    older = [schema for name in schemas.names() for _, schema in schemas.history(name)]
    return Codec(current, older, converters=_FROM_RECORD)


_CODEC = default_codec()
_LOCATION_TYPE = "trackbone.events.Location"
_EVENT_NAMES = frozenset(schemas.EVENT_SCHEMAS)


def encode_event(event: Event) -> bytes:
    """Single-object encoding of a domain event with its current schema."""
    record = event_to_record(event)
    name = event_type(event).value
    try:
        _check_common(record)
        if isinstance(event, EventVoided):
            _check_id(event.voided_event_id, "voided_event_id")
    except ContractViolation as exc:
        raise EncodeError(f"{name}: {exc}") from None
    if record["location"] is not None:
        # fastavro's tuple notation names the union branch; otherwise it validates the
        # record against each branch first, a quarter of the encoding time.
        record["location"] = (_LOCATION_TYPE, record["location"])
    return _CODEC.encode(name, record)


def decode_event(data: bytes | bytearray | memoryview) -> Event:
    """Domain event from single-object bytes of any known event schema version.

    Messages of a current event schema are read by the schema-built readers below,
    the rest (and anything odd about the framing) through fastavro.
    """
    if type(data) is bytes and len(data) >= HEADER_SIZE and data[0] == 0xC3 and data[1] == 1:
        reader = _FAST_READERS.get(data[2:HEADER_SIZE])
        if reader is not None:
            try:
                return reader.read(data)
            except DecodeError:
                raise
            except ContractViolation as exc:
                raise DecodeError(f"{reader.name}: {exc}") from None
            except (IndexError, ValueError, TypeError) as exc:
                raise DecodeError(f"{reader.name}: corrupt or truncated body: {exc!r}") from None
    writer, record = _CODEC._read(data)
    convert = writer.convert
    if writer.name not in _EVENT_NAMES or convert is None:
        raise DecodeError(f"not an event: the fingerprint is schema {writer.name!r}")
    try:
        event: Event = convert(record)
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(f"{writer.name}: {exc}") from None
    return event


def encode_status(status: Mapping[str, Any]) -> bytes:
    """Single-object encoding of a ParcelStatus record dict (times as int millis).

    From a fold state, `status_bytes` gives the same bytes at a fraction of the cost.
    """
    return _CODEC.encode(schemas.STATUS_SCHEMA, status)


def decode_status(data: bytes | bytearray | memoryview | None) -> dict[str, Any]:
    """ParcelStatus record dict (current shape, times as int millis) from any known version.

    A null value on the status topic is a tombstone (every event of the parcel voided),
    not a status: readers check for None first (the key is the parcel id).
    """
    if data is None:
        raise DecodeError("a tombstone (null value: the parcel was removed), not a ParcelStatus")
    name, record = _CODEC.decode(data)
    if name != schemas.STATUS_SCHEMA:
        raise DecodeError(f"not a ParcelStatus: the fingerprint is schema {name!r}")
    return record


def status_from_state(state: ParcelState, eta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the ParcelStatus record of a fold state (projections.fold.ParcelState).

    `eta` may carry eta_p50, eta_p90 (int millis), on_time_probability and eta_basis;
    missing keys are null. ``updated_at`` is the state's last event time: the
    backbone keeps wall clocks out of what it derives from events.
    """
    last = state.last_event_time
    if last is None:
        raise ValueError(f"parcel {state.parcel_id!r}: a state without events has no status")
    eta = eta or {}
    service = state.service
    return {
        "parcel_id": state.parcel_id,
        "milestone": str(state.milestone),
        "delivered_at": state.delivered_at,
        "holds": sorted(state.holds),
        "attempts": state.attempts,
        "event_count": state.event_count,
        "custodian": state.custodian,
        "registered": state.registered,
        "last_event_time": last,
        "origin_country": state.origin_country,
        "origin_city": state.origin_city,
        "destination_country": state.destination_country,
        "destination_city": state.destination_city,
        "service": None if service is None else str(service),
        "promised_hours": state.promised_hours,
        "registered_at": state.registered_at,
        "promised_at": state.promised_at,
        "version": state.version,
        "updated_at": last,
        **{key: eta.get(key) for key in STATUS_ETA_FIELDS},
    }


# --- cheap ParcelStatus encoding ------------------------------------------------------------
#
# A status is written for almost every input event. fastavro's writer costs about 10 us
# a status, mostly fixed per-field overhead; a schema-driven writer in Python (one
# encoder per field) measured the same, so `encode_status` keeps fastavro. What pays is
# not encoding what did not change: `status_bytes` writes the fields straight from the
# state and takes the pieces that repeat from one status of a parcel to the next from
# small caches. It writes the layout below, which is checked against the schema file
# (the source of truth) at import; should they ever differ it uses the dict path.

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_pack_double = struct.Struct("<d").pack
_ONE_BYTE = tuple(bytes((n,)) for n in range(128))
"""Zigzag-encoded values below 128 are one byte: most counts, lengths and versions."""


def _varint(n: int) -> bytes:
    """Unsigned varint of a zigzagged value."""
    if n < 128:
        return _ONE_BYTE[n]
    if 1 << 35 <= n < 1 << 42:  # six bytes: epoch-millisecond times (until 2039)
        return bytes(
            (
                n & 0x7F | 0x80,
                n >> 7 & 0x7F | 0x80,
                n >> 14 & 0x7F | 0x80,
                n >> 21 & 0x7F | 0x80,
                n >> 28 & 0x7F | 0x80,
                n >> 35,
            )
        )
    out = bytearray()
    while n >= 128:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _write_long(value: int) -> bytes:
    """Avro long: zigzag varint, refusing what is not a 64-bit integer."""
    if not _LONG_MIN <= value <= _LONG_MAX or type(value) is bool:
        raise ValueError(f"{value!r} is not an Avro long")
    return _varint((value << 1) ^ (value >> 63))


def _write_int(value: int) -> bytes:
    """Avro int: as a long, within 32 bits."""
    if not _INT_MIN <= value <= _INT_MAX or type(value) is bool:
        raise ValueError(f"{value!r} is not an Avro int")
    return _varint((value << 1) ^ (value >> 63))


def _write_string(value: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    data = value.encode()
    return _write_long(len(data)) + data


def _write_optional_string(value: str | None) -> bytes:
    """Union ["null", "string"]: branch index, then the value."""
    return b"\x00" if value is None else b"\x02" + _write_string(value)


def _write_optional_int(value: int | None) -> bytes:
    return b"\x00" if value is None else b"\x02" + _write_int(value)


def _write_optional_long(value: int | None) -> bytes:
    return b"\x00" if value is None else b"\x02" + _write_long(value)


def _write_optional_double(value: float | None) -> bytes:
    if value is None:
        return b"\x00"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a double")
    return b"\x02" + _pack_double(value)


def _write_strings(values: list[str]) -> bytes:
    """Array of strings: one block of len(values) items, then the end marker."""
    if not values:
        return b"\x00"
    return b"".join([_write_long(len(values)), *map(_write_string, values), b"\x00"])


def _shape(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "|".join(map(_shape, schema))
    if schema.get("type") == "array":
        return f"array<{_shape(schema['items'])}>"
    return _shape(schema["type"])


_STATUS_LAYOUT = (
    ("parcel_id", "string"),
    ("milestone", "string"),
    ("delivered_at", "null|long"),
    ("holds", "array<string>"),
    ("attempts", "int"),
    ("event_count", "int"),
    ("custodian", "null|string"),
    ("registered", "boolean"),
    ("last_event_time", "long"),
    ("origin_country", "null|string"),
    ("origin_city", "null|string"),
    ("destination_country", "null|string"),
    ("destination_city", "null|string"),
    ("service", "null|string"),
    ("promised_hours", "null|int"),
    ("registered_at", "null|long"),
    ("promised_at", "null|long"),
    ("version", "long"),
    ("updated_at", "long"),
    ("eta_p50", "null|long"),
    ("eta_p90", "null|long"),
    ("on_time_probability", "null|double"),
    ("eta_basis", "null|string"),
)
"""The ParcelStatus layout `status_bytes` writes; compared with the schema at import."""

_STATUS_FAST = (
    tuple(
        (spec["name"], _shape(spec["type"]))
        for spec in schemas.load_schema(schemas.STATUS_SCHEMA)["fields"]
    )
    == _STATUS_LAYOUT
)
_STATUS_HEADER = MAGIC + _CODEC.fingerprint(schemas.STATUS_SCHEMA)
_CACHE_LIMIT = 1 << 16
_milestone_bytes: dict[str, bytes] = {}
_custodian_bytes: dict[str | None, bytes] = {None: b"\x00"}
"""Custodians repeat (carriers, line-hauls, couriers) -> their union encoding."""
_holds_bytes: dict[frozenset[str], bytes] = {}
_lane_bytes: dict[tuple[Any, ...], bytes] = {}
"""Lane, service and promise of recent parcels (constant once registered) -> bytes."""
_NO_ETA = b"\x00\x00\x00\x00"


def _remember(cache: dict[Any, bytes], key: Any, value: bytes) -> bytes:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def status_bytes(state: ParcelState, eta: Mapping[str, Any] | None = None) -> bytes:
    """`encode_status(status_from_state(state, eta))` in one go, without the dict.

    The same bytes (a unit test holds it to that), at a fraction of the cost: the
    pieces that repeat from one status of a parcel to the next (milestone, holds,
    custodian, lane and promise) are encoded once and looked up after. Prefer it
    wherever the dict itself is not needed. If the ParcelStatus schema ever stops
    matching `_STATUS_LAYOUT`, this falls back to the dict path.
    """
    if not _STATUS_FAST:
        return encode_status(status_from_state(state, eta))
    last = state.last_event_time
    if last is None:
        raise ValueError(f"parcel {state.parcel_id!r}: a state without events has no status")
    try:
        milestone = state.milestone
        milestone_b = _milestone_bytes.get(milestone)
        if milestone_b is None:
            milestone_b = _remember(_milestone_bytes, milestone, _write_string(str(milestone)))
        holds = state.holds
        if type(holds) is not frozenset:  # e.g. a set on a plain object
            holds = frozenset(holds)
        holds_b = _holds_bytes.get(holds) if holds else b"\x00"
        if holds_b is None:
            holds_b = _remember(_holds_bytes, holds, _write_strings(sorted(holds)))
        custodian = state.custodian
        custodian_b = _custodian_bytes.get(custodian)
        if custodian_b is None:
            custodian_b = _remember(_custodian_bytes, custodian, _write_optional_string(custodian))
        service = state.service
        lane = (
            state.origin_country,
            state.origin_city,
            state.destination_country,
            state.destination_city,
            None if service is None else str(service),
            state.promised_hours,
            state.registered_at,
            state.promised_at,
        )
        lane_b = _lane_bytes.get(lane)
        if lane_b is None:
            lane_b = _remember(
                _lane_bytes,
                lane,
                b"".join(
                    [
                        *map(_write_optional_string, lane[:5]),
                        _write_optional_int(lane[5]),
                        _write_optional_long(lane[6]),
                        _write_optional_long(lane[7]),
                    ]
                ),
            )
        delivered = state.delivered_at
        last_b = _write_long(last)
        if eta:
            eta_b = b"".join(
                [
                    _write_optional_long(eta.get("eta_p50")),
                    _write_optional_long(eta.get("eta_p90")),
                    _write_optional_double(eta.get("on_time_probability")),
                    _write_optional_string(eta.get("eta_basis")),
                ]
            )
        else:
            eta_b = _NO_ETA
        return b"".join(
            [
                _STATUS_HEADER,
                _write_string(state.parcel_id),
                milestone_b,
                b"\x00" if delivered is None else b"\x02" + _write_long(delivered),
                holds_b,
                _write_int(state.attempts),
                _write_int(state.event_count),
                custodian_b,
                b"\x01" if state.registered else b"\x00",
                last_b,
                lane_b,
                _write_long(state.version),
                last_b,
                eta_b,
            ]
        )
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"ParcelStatus of {state.parcel_id!r}: {exc}") from None


# --- cheap event decoding ------------------------------------------------------------------
#
# decode_event runs once per input record. Through fastavro it costs about 7 us: the reader
# itself, then a dict per record (and per location) that is converted to the domain event.
# For messages written with a current event schema (no resolution needed, i.e. nearly
# all) the readers below, built from the same schema files, read the body straight into
# the event's constructor arguments: about half the cost. Anything they do not handle
# (other writer versions, a schema shape without a reader here) takes the fastavro path.

_Read = Callable[[bytes, int], tuple[Any, int]]


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro int/long (zigzag varint) at `pos`: (value, next position)."""
    byte = data[pos]
    if byte < 128:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    n = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 128:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    byte = data[pos]
    if byte < 128:
        size = (byte >> 1) ^ -(byte & 1)
        pos += 1
    else:
        size, pos = _read_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError(f"string of {size} bytes at {pos} does not fit the message")
    return data[pos:end].decode(), end


def _read_null(data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


_PRIMITIVE_READERS: dict[str, _Read] = {
    "string": _read_string,
    "long": _read_long,
    "int": _read_long,
    "null": _read_null,
}
_DOMAIN_ENUMS: dict[str, Mapping[str, Any]] = {
    "Service": _SERVICE,
    "Scan": _SCAN,
    "CustomsDirection": _DIRECTION,
    "CustomsStatus": _CUSTOMS_STATUS,
    "VoidReason": _VOID_REASON,
}
_NESTED_RECORDS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "Location": (intern_location, ("country", "facility_id", "city")),
    "Place": (intern_place, ("country", "city")),
}
"""Nested records the events carry: interned, built from their fields in this order."""


def _optional_reader(null_first: bool, inner: _Read) -> _Read:
    null_tag, value_tag = (0, 2) if null_first else (2, 0)

    def read_optional(data: bytes, pos: int) -> tuple[Any, int]:
        tag = data[pos]
        if tag == null_tag:
            return None, pos + 1
        if tag == value_tag:
            return inner(data, pos + 1)
        raise ValueError(f"union branch tag {tag} at {pos}")

    return read_optional


def _union_reader(branches: list[_Read]) -> _Read:
    def read_union(data: bytes, pos: int) -> tuple[Any, int]:
        index, pos = _read_long(data, pos)
        if not 0 <= index < len(branches):
            raise ValueError(f"union branch {index} at {pos}")
        return branches[index](data, pos)

    return read_union


def _enum_reader(members: tuple[Any, ...]) -> _Read:
    def read_enum(data: bytes, pos: int) -> tuple[Any, int]:
        index, pos = _read_long(data, pos)
        if index < 0:
            raise ValueError(f"enum index {index} at {pos}")
        return members[index], pos

    return read_enum


def _record_reader(make: Callable[..., Any], readers: list[_Read], order: list[int]) -> _Read:
    arrange = itemgetter(*order) if len(order) > 1 else lambda values: (values[order[0]],)

    def read_record(data: bytes, pos: int) -> tuple[Any, int]:
        values = []
        for read in readers:
            value, pos = read(data, pos)
            values.append(value)
        return make(*arrange(values)), pos

    return read_record


def _compile_reader(schema: Any, named: dict[str, _Read]) -> _Read | None:
    """Reader of one (logical-type-stripped) schema, or None for a shape not handled."""
    if isinstance(schema, str):
        return _PRIMITIVE_READERS.get(schema) or named.get(schema.rsplit(".", 1)[-1])
    if isinstance(schema, list):
        branches = [_compile_reader(branch, named) for branch in schema]
        known = [branch for branch in branches if branch is not None]
        if len(known) != len(branches):
            return None
        if len(schema) == 2 and "null" in schema:
            null_first = schema[0] == "null"
            return _optional_reader(null_first, known[1 if null_first else 0])
        return _union_reader(known)
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    name = str(schema.get("name", "")).rsplit(".", 1)[-1]
    if kind == "enum":
        domain = _DOMAIN_ENUMS.get(name)
        if domain is None or any(symbol not in domain for symbol in schema["symbols"]):
            return None
        named[name] = _enum_reader(tuple(domain[symbol] for symbol in schema["symbols"]))
        return named[name]
    if kind == "record":
        spec = _NESTED_RECORDS.get(name)
        if spec is None:
            return None
        make, params = spec
        names = [f["name"] for f in schema["fields"]]
        readers = [_compile_reader(f["type"], named) for f in schema["fields"]]
        if sorted(names) != sorted(params) or None in readers:
            return None
        order = [names.index(param) for param in params]
        named[name] = _record_reader(make, readers, order)  # type: ignore[arg-type]
        return named[name]
    if isinstance(kind, str) and kind not in ("array", "map", "fixed"):
        return _compile_reader(kind, named)
    return None


def _contract_check(name: str, names: list[str]) -> Callable[[list[Any]], None]:
    """Positional form of the contract checks that `record_to_event` makes."""
    i_id, i_parcel, i_time, i_tz, i_loc = (
        names.index(field)
        for field in ("event_id", "parcel_id", "event_time", "tz_offset_minutes", "location")
    )

    def check_common(values: list[Any]) -> None:
        location = values[i_loc]
        _check_fields(
            values[i_id],
            values[i_parcel],
            values[i_time],
            values[i_tz],
            location,
            None if location is None else location.country,
        )

    if name == EventType.PARCEL_REGISTERED.value:
        i_origin, i_dest, i_hours = (
            names.index(field) for field in ("origin", "destination", "promised_hours")
        )

        def check_registered(values: list[Any]) -> None:
            check_common(values)
            _check_country(values[i_origin].country, "origin.country")
            _check_country(values[i_dest].country, "destination.country")
            promised = values[i_hours]
            if promised is not None and promised <= 0:
                raise ContractViolation(f"field 'promised_hours': must be positive, got {promised}")

        return check_registered
    if name == EventType.EVENT_VOIDED.value:
        i_target = names.index("voided_event_id")

        def check_voided(values: list[Any]) -> None:
            check_common(values)
            _check_id(values[i_target], "voided_event_id")

        return check_voided
    return check_common


@dataclass(frozen=True, slots=True)
class _EventReader:
    """Reads one current event schema's body straight into the domain event."""

    name: str
    readers: tuple[_Read, ...]
    check: Callable[[list[Any]], None]
    build: Callable[..., Event]

    def read(self, data: bytes) -> Event:
        pos = HEADER_SIZE
        values = []
        for read in self.readers:
            value, pos = read(data, pos)
            values.append(value)
        if pos != len(data):
            raise DecodeError(f"{self.name}: {len(data) - pos} trailing bytes after the record")
        self.check(values)
        return self.build(*values)


def _event_reader(name: str) -> _EventReader | None:
    schema = _strip_logical_types(schemas.load_schema(name))
    names = [f["name"] for f in schema["fields"]]
    named: dict[str, _Read] = {}
    readers = [_compile_reader(f["type"], named) for f in schema["fields"]]
    known = [read for read in readers if read is not None]
    if len(known) != len(readers):
        return None
    try:
        build = positional_constructor(EVENT_CLASSES[EventType(name)], names)
    except TypeError:  # the schema's fields are not the class's: use the fastavro path
        return None
    return _EventReader(name, tuple(known), _contract_check(name, names), build)


_FAST_READERS: dict[bytes, _EventReader] = {
    _CODEC.fingerprint(name): reader
    for name in schemas.EVENT_SCHEMAS
    if (reader := _event_reader(name)) is not None
}
"""Current event schemas by fingerprint; other writers go through fastavro."""
