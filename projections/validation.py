"""Contract checks on decoded events that Avro's type system cannot express.

Avro guarantees types and enum symbols; it does not guarantee the parcel id
alphabet, id lengths, offset range or country codes. The stream applies these
checks to every decoded record so that a carrier bypassing ``trackbone produce``
still cannot put an invalid event into a parcel's state.
"""

from __future__ import annotations

from projections.events import BaseEvent, EventVoided, Location, ParcelRegistered, Place
from projections.jsonform import (
    COUNTRY_RE,
    EVENT_ID_MAX,
    PARCEL_ID_RE,
    TZ_MAX,
    TZ_MIN,
    InvalidEvent,
)


def _country(value: str, field: str) -> None:
    if not COUNTRY_RE.fullmatch(value):
        raise InvalidEvent(field, f"not an ISO 3166-1 alpha-2 country code: {value!r}")


def validate_event(event: BaseEvent) -> None:
    """Raise InvalidEvent (naming the field) unless the event obeys the contract."""
    if not PARCEL_ID_RE.fullmatch(event.parcel_id):
        raise InvalidEvent("parcel_id", "must be 1..64 characters of [A-Za-z0-9_-]")
    if not 1 <= len(event.event_id) <= EVENT_ID_MAX:
        raise InvalidEvent("event_id", f"must be 1..{EVENT_ID_MAX} characters")
    if not TZ_MIN <= event.tz_offset_minutes <= TZ_MAX:
        raise InvalidEvent(
            "tz_offset_minutes", f"{event.tz_offset_minutes} is outside {TZ_MIN}..{TZ_MAX}"
        )
    location: Location | None = event.location
    if location is not None:
        _country(location.country, "location.country")
    if isinstance(event, ParcelRegistered):
        for name, place in (("origin", event.origin), ("destination", event.destination)):
            assert isinstance(place, Place)
            _country(place.country, f"{name}.country")
        if event.promised_hours is not None and event.promised_hours <= 0:
            raise InvalidEvent("promised_hours", f"must be positive, got {event.promised_hours}")
    if isinstance(event, EventVoided) and not 1 <= len(event.voided_event_id) <= EVENT_ID_MAX:
        raise InvalidEvent("voided_event_id", f"must be 1..{EVENT_ID_MAX} characters")
