"""Map ParcelStatus records and domain events to ClickHouse rows (tuples in column order).

Times stay int epoch millis: clickhouse-connect writes ints into DateTime64(3) as
milliseconds, which skips a datetime round trip per value on the sink's hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from projections.events import (
    CustomsStatusRecorded,
    Event,
    EventVoided,
    ParcelHandedOver,
    ParcelScanned,
    event_type,
)
from projections.jsonform import event_to_json

Row = tuple[Any, ...]

PARCEL_EVENTS = "parcel_events"
PARCEL_STATE = "parcel_state"
PARCEL_ETA = "parcel_eta"

EVENT_COLUMNS: tuple[str, ...] = (
    "parcel_id",
    "event_time",
    "event_id",
    "event_type",
    "scan",
    "customs_direction",
    "customs_status",
    "reason",
    "raw_code",
    "from_party",
    "to_party",
    "facility_id",
    "country",
    "city",
    "tz_offset_minutes",
    "source",
    "raw",
    "version",
    "is_deleted",
)

STATE_COLUMNS: tuple[str, ...] = (
    "parcel_id",
    "milestone",
    "delivered_at",
    "holds",
    "attempts",
    "event_count",
    "custodian",
    "registered",
    "last_event_time",
    "origin_country",
    "origin_city",
    "destination_country",
    "destination_city",
    "service",
    "promised_hours",
    "registered_at",
    "promised_at",
    "eta_p50",
    "eta_p90",
    "on_time_probability",
    "eta_basis",
    "version",
    "updated_at",
    "is_deleted",
)

ETA_COLUMNS: tuple[str, ...] = (
    "parcel_id",
    "version",
    "made_at",
    "milestone",
    "eta_p50",
    "eta_p90",
    "on_time_probability",
    "eta_basis",
    "promised_at",
)

COLUMNS: dict[str, tuple[str, ...]] = {
    PARCEL_EVENTS: EVENT_COLUMNS,
    PARCEL_STATE: STATE_COLUMNS,
    PARCEL_ETA: ETA_COLUMNS,
}


def status_row(status: Mapping[str, Any]) -> Row:
    """Build a parcel_state row from a ParcelStatus record dict.

    A status with no effective events left (event_count 0: everything voided) becomes a
    tombstone, so the parcel disappears from ``parcel_state FINAL`` (contract 3.10).
    """
    return (
        status["parcel_id"],
        str(status["milestone"]),
        status.get("delivered_at"),
        sorted(status.get("holds") or ()),
        int(status.get("attempts") or 0),
        int(status.get("event_count") or 0),
        status.get("custodian"),
        bool(status.get("registered")),
        status.get("last_event_time"),
        status.get("origin_country"),
        status.get("origin_city"),
        status.get("destination_country"),
        status.get("destination_city"),
        status.get("service"),
        status.get("promised_hours"),
        status.get("registered_at"),
        status.get("promised_at"),
        status.get("eta_p50"),
        status.get("eta_p90"),
        status.get("on_time_probability"),
        status.get("eta_basis"),
        int(status["version"]),
        int(status.get("updated_at") or status.get("last_event_time") or 0),
        0 if status.get("event_count") else 1,
    )


def eta_row(status: Mapping[str, Any]) -> Row | None:
    """Build a parcel_eta row (the projection as made), or None when the status has none."""
    if status.get("eta_p50") is None and status.get("on_time_probability") is None:
        return None
    return (
        status["parcel_id"],
        int(status["version"]),
        int(status.get("updated_at") or status.get("last_event_time") or 0),
        str(status["milestone"]),
        status.get("eta_p50"),
        status.get("eta_p90"),
        status.get("on_time_probability"),
        status.get("eta_basis"),
        status.get("promised_at"),
    )


def event_row(event: Event, *, version: int, deleted: bool) -> Row:
    """Build a parcel_events row; ``deleted=True`` makes the tombstone that removes it.

    ``version`` must grow with every change to the parcel (the fold's state version),
    so a removal outranks the earlier insertion of the same event at ``FINAL``.
    """
    scan = raw_code = direction = status = reason = from_party = to_party = None
    match event:
        case ParcelScanned():
            scan, raw_code = event.scan.value, event.raw_code
        case CustomsStatusRecorded():
            direction, status, reason = event.direction.value, event.status.value, event.reason
        case ParcelHandedOver():
            from_party, to_party = event.from_party, event.to_party
        case EventVoided():
            reason = event.reason.value
    location = event.location
    return (
        event.parcel_id,
        event.event_time,
        event.event_id,
        event_type(event).value,
        scan,
        direction,
        status,
        reason,
        raw_code,
        from_party,
        to_party,
        None if location is None else location.facility_id,
        None if location is None else location.country,
        None if location is None else location.city,
        event.tz_offset_minutes,
        event.source,
        orjson.dumps(event_to_json(event)).decode(),
        version,
        1 if deleted else 0,
    )


def state_tombstone_row(parcel_id: str, *, version: int, updated_at: int) -> Row:
    """Build the parcel_state row that removes a parcel whose effective set became empty.

    ``status_from_state`` refuses such states, yet an earlier row must disappear from
    ``parcel_state FINAL`` (contract 3.10): write this with the state's new version.
    """
    return status_row(
        {
            "parcel_id": parcel_id,
            "milestone": "REGISTERED",
            "event_count": 0,
            "version": version,
            "updated_at": updated_at,
        }
    )
