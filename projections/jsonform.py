"""The contract's JSON form of events: strict parsing into domain values, and back.

Carriers hand us JSON; every rejection names the field and the reason so the
carrier can fix its feed. Unknown extra fields are ignored (the contract lets
implementations add fields).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from projections.events import (
    BaseEvent,
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
    Place,
    Scan,
    Service,
    VoidReason,
    event_type,
)

PARCEL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
COUNTRY_RE = re.compile(r"[A-Z]{2}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
TZ_MIN, TZ_MAX = -720, 840
EVENT_ID_MAX = 128
# The instants a datetime can show (years 1..9999): outside them no RFC 3339 form exists.
TIME_MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // _MS
TIME_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // _MS

E = TypeVar("E", bound=StrEnum)


class InvalidEvent(ValueError):
    """An event that breaks the contract; `field` and `reason` say how."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field '{field}': {reason}")
        self.field = field
        self.reason = reason


def parse_time(value: object, field: str = "event_time") -> int:
    """ISO-8601 with an offset, or integer epoch millis, to epoch millis (finer digits cut)."""
    if isinstance(value, bool):
        raise InvalidEvent(field, "expected an ISO-8601 time with offset or epoch milliseconds")
    if isinstance(value, int):
        millis = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(field, f"not an ISO-8601 time: {value!r}") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise InvalidEvent(field, f"time without UTC offset: {value!r}")
        millis = (parsed - EPOCH) // _MS
    else:
        raise InvalidEvent(field, "expected an ISO-8601 time with offset or epoch milliseconds")
    if not TIME_MIN_MS <= millis <= TIME_MAX_MS:
        raise InvalidEvent(field, f"{value!r} is outside years 1..9999 UTC")
    return millis


def millis_to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def format_time(ms: int | None) -> str | None:
    """RFC 3339 in UTC with milliseconds, e.g. 2026-11-11T01:30:00.000Z."""
    if ms is None:
        return None
    # isoformat, not strftime: strftime drops the zero padding of years below 1000.
    return millis_to_datetime(ms).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _string(
    obj: Mapping[str, Any],
    key: str,
    *,
    prefix: str = "",
    min_len: int = 0,
    max_len: int | None = None,
) -> str:
    name = prefix + key
    if key not in obj:
        raise InvalidEvent(name, "missing required field")
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidEvent(name, f"expected a string, got {type(value).__name__}")
    if len(value) < min_len:
        raise InvalidEvent(name, "must not be empty")
    if max_len is not None and len(value) > max_len:
        raise InvalidEvent(name, f"longer than {max_len} characters")
    return value


def _optional_string(obj: Mapping[str, Any], key: str, *, prefix: str = "") -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(prefix + key, f"expected a string or null, got {type(value).__name__}")
    return value


def _enum(obj: Mapping[str, Any], key: str, enum: type[E]) -> E:
    value = _string(obj, key)
    try:
        return enum(value)
    except ValueError:
        symbols = ", ".join(m.value for m in enum)
        raise InvalidEvent(key, f"unknown symbol {value!r} (expected one of {symbols})") from None


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(key, f"expected an integer, got {type(value).__name__}")
    return value


def _country(obj: Mapping[str, Any], key: str, prefix: str) -> str:
    value = _string(obj, key, prefix=prefix)
    if not COUNTRY_RE.fullmatch(value):
        raise InvalidEvent(prefix + key, f"not an ISO 3166-1 alpha-2 country code: {value!r}")
    return value


def _object(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    if key not in obj:
        raise InvalidEvent(key, "missing required field")
    value = obj[key]
    if not isinstance(value, dict):
        raise InvalidEvent(key, f"expected an object, got {type(value).__name__}")
    return value


def _place(obj: Mapping[str, Any], key: str) -> Place:
    raw = _object(obj, key)
    prefix = key + "."
    return Place(
        country=_country(raw, "country", prefix), city=_optional_string(raw, "city", prefix=prefix)
    )


def _location(obj: Mapping[str, Any]) -> Location | None:
    raw = obj.get("location")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidEvent("location", f"expected an object or null, got {type(raw).__name__}")
    return Location(
        country=_country(raw, "country", "location."),
        facility_id=_optional_string(raw, "facility_id", prefix="location."),
        city=_optional_string(raw, "city", prefix="location."),
    )


def _common(obj: Mapping[str, Any]) -> dict[str, Any]:
    parcel_id = _string(obj, "parcel_id", min_len=1)
    if not PARCEL_ID_RE.fullmatch(parcel_id):
        raise InvalidEvent("parcel_id", "must be 1..64 characters of [A-Za-z0-9_-]")
    if "event_time" not in obj:
        raise InvalidEvent("event_time", "missing required field")
    tz = 0
    if obj.get("tz_offset_minutes") is not None:
        tz = _int(obj, "tz_offset_minutes")
        if not TZ_MIN <= tz <= TZ_MAX:
            raise InvalidEvent("tz_offset_minutes", f"{tz} is outside {TZ_MIN}..{TZ_MAX}")
    return {
        "event_id": _string(obj, "event_id", min_len=1, max_len=EVENT_ID_MAX),
        "parcel_id": parcel_id,
        "event_time": parse_time(obj["event_time"]),
        "tz_offset_minutes": tz,
        "source": _string(obj, "source"),
        "location": _location(obj),
    }


def _registered(obj: Mapping[str, Any], common: dict[str, Any]) -> ParcelRegistered:
    promised = obj.get("promised_hours")
    if promised is not None:
        promised = _int(obj, "promised_hours")
        if promised <= 0:
            raise InvalidEvent("promised_hours", f"must be positive, got {promised}")
    return ParcelRegistered(
        **common,
        merchant_id=_string(obj, "merchant_id"),
        origin=_place(obj, "origin"),
        destination=_place(obj, "destination"),
        service=_enum(obj, "service", Service),
        promised_hours=promised,
    )


def _scanned(obj: Mapping[str, Any], common: dict[str, Any]) -> ParcelScanned:
    return ParcelScanned(
        **common, scan=_enum(obj, "scan", Scan), raw_code=_optional_string(obj, "raw_code")
    )


def _handed_over(obj: Mapping[str, Any], common: dict[str, Any]) -> ParcelHandedOver:
    return ParcelHandedOver(
        **common, from_party=_string(obj, "from_party"), to_party=_string(obj, "to_party")
    )


def _customs(obj: Mapping[str, Any], common: dict[str, Any]) -> CustomsStatusRecorded:
    return CustomsStatusRecorded(
        **common,
        direction=_enum(obj, "direction", CustomsDirection),
        status=_enum(obj, "status", CustomsStatus),
        reason=_optional_string(obj, "reason"),
    )


def _voided(obj: Mapping[str, Any], common: dict[str, Any]) -> EventVoided:
    return EventVoided(
        **common,
        voided_event_id=_string(obj, "voided_event_id", min_len=1, max_len=EVENT_ID_MAX),
        reason=_enum(obj, "reason", VoidReason),
    )


_PARSERS: dict[EventType, Callable[[Mapping[str, Any], dict[str, Any]], Event]] = {
    EventType.PARCEL_REGISTERED: _registered,
    EventType.PARCEL_SCANNED: _scanned,
    EventType.PARCEL_HANDED_OVER: _handed_over,
    EventType.CUSTOMS_STATUS_RECORDED: _customs,
    EventType.EVENT_VOIDED: _voided,
}


def parse_event(obj: object) -> Event:
    """Validate one event in the contract's JSON form; raise InvalidEvent naming the field."""
    if not isinstance(obj, dict):
        raise InvalidEvent("<event>", f"expected a JSON object, got {type(obj).__name__}")
    kind = _enum(obj, "type", EventType)
    common = _common(obj)
    return _PARSERS[kind](obj, common)


def _place_json(place: Place) -> dict[str, Any]:
    return {"country": place.country, "city": place.city}


def event_to_json(event: BaseEvent) -> dict[str, Any]:
    """Render the contract's JSON form (times as RFC 3339 UTC); parse_event reads it back."""
    out: dict[str, Any] = {
        "type": event_type(event).value,
        "event_id": event.event_id,
        "parcel_id": event.parcel_id,
        "event_time": format_time(event.event_time),
        "tz_offset_minutes": event.tz_offset_minutes,
        "source": event.source,
        "location": None
        if event.location is None
        else {
            "facility_id": event.location.facility_id,
            "country": event.location.country,
            "city": event.location.city,
        },
    }
    match event:
        case ParcelRegistered():
            out |= {
                "merchant_id": event.merchant_id,
                "origin": _place_json(event.origin),
                "destination": _place_json(event.destination),
                "service": event.service.value,
                "promised_hours": event.promised_hours,
            }
        case ParcelScanned():
            out |= {"scan": event.scan.value, "raw_code": event.raw_code}
        case ParcelHandedOver():
            out |= {"from_party": event.from_party, "to_party": event.to_party}
        case CustomsStatusRecorded():
            out |= {
                "direction": event.direction.value,
                "status": event.status.value,
                "reason": event.reason,
            }
        case EventVoided():
            out |= {"voided_event_id": event.voided_event_id, "reason": event.reason.value}
    return out
