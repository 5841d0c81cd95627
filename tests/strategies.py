"""Hypothesis strategies for valid domain events under the contract's constraints.

Shared by the codec, JSON-form, fold and sink tests. Every generated event is one
a carrier may legally send: parse_event(event_to_json(e)) == e and the Avro codec
accepts it. Pass narrower strategies (e.g. ``parcel_ids=st.just("P1")``) to
concentrate events on a few parcels, ids or instants.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

from projections.events import (
    CustomsDirection,
    CustomsStatus,
    CustomsStatusRecorded,
    Event,
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

PARCEL_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
TIME_MIN = 946_684_800_000  # 2000-01-01T00:00:00Z
TIME_MAX = 4_102_444_800_000  # 2100-01-01T00:00:00Z

# Free text: any Unicode but surrogates (not encodable as UTF-8); short, to keep examples fast.
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
optional_text = st.none() | text


def parcel_ids() -> st.SearchStrategy[str]:
    """Tracking numbers: 1..64 characters of [A-Za-z0-9_-]."""
    return st.text(PARCEL_ID_ALPHABET, min_size=1, max_size=64)


def event_ids() -> st.SearchStrategy[str]:
    """Producer ids: 1..128 characters of any (non-surrogate) Unicode."""
    return st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=128)


def times(min_value: int = TIME_MIN, max_value: int = TIME_MAX) -> st.SearchStrategy[int]:
    """Event times, epoch millis UTC."""
    return st.integers(min_value, max_value)


def tz_offsets() -> st.SearchStrategy[int]:
    return st.integers(-720, 840)


def countries() -> st.SearchStrategy[str]:
    """Two uppercase letters (shape of ISO 3166-1 alpha-2)."""
    return st.text(string.ascii_uppercase, min_size=2, max_size=2)


def places() -> st.SearchStrategy[Place]:
    return st.builds(Place, country=countries(), city=optional_text)


def locations() -> st.SearchStrategy[Location]:
    return st.builds(Location, country=countries(), facility_id=optional_text, city=optional_text)


# The builders below take strategies named like these functions; keep a handle on the defaults.
_any_parcel_id, _any_event_id, _any_time = parcel_ids, event_ids, times


def _common(
    parcel_ids: st.SearchStrategy[str] | None,
    event_ids: st.SearchStrategy[str] | None,
    times: st.SearchStrategy[int] | None,
) -> dict[str, st.SearchStrategy[object]]:
    return {
        "event_id": event_ids if event_ids is not None else _any_event_id(),
        "parcel_id": parcel_ids if parcel_ids is not None else _any_parcel_id(),
        "event_time": times if times is not None else _any_time(),
        "tz_offset_minutes": tz_offsets(),
        "source": text,
        "location": st.none() | locations(),
    }


def registrations(
    parcel_ids: st.SearchStrategy[str] | None = None,
    event_ids: st.SearchStrategy[str] | None = None,
    times: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[ParcelRegistered]:
    return st.builds(
        ParcelRegistered,
        **_common(parcel_ids, event_ids, times),
        merchant_id=text,
        origin=places(),
        destination=places(),
        service=st.sampled_from(Service),
        promised_hours=st.none() | st.integers(1, 24 * 60),
    )


def scans(
    parcel_ids: st.SearchStrategy[str] | None = None,
    event_ids: st.SearchStrategy[str] | None = None,
    times: st.SearchStrategy[int] | None = None,
    kinds: st.SearchStrategy[Scan] | None = None,
) -> st.SearchStrategy[ParcelScanned]:
    return st.builds(
        ParcelScanned,
        **_common(parcel_ids, event_ids, times),
        scan=kinds if kinds is not None else st.sampled_from(Scan),
        raw_code=optional_text,
    )


def handoffs(
    parcel_ids: st.SearchStrategy[str] | None = None,
    event_ids: st.SearchStrategy[str] | None = None,
    times: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[ParcelHandedOver]:
    return st.builds(
        ParcelHandedOver, **_common(parcel_ids, event_ids, times), from_party=text, to_party=text
    )


def customs(
    parcel_ids: st.SearchStrategy[str] | None = None,
    event_ids: st.SearchStrategy[str] | None = None,
    times: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[CustomsStatusRecorded]:
    return st.builds(
        CustomsStatusRecorded,
        **_common(parcel_ids, event_ids, times),
        direction=st.sampled_from(CustomsDirection),
        status=st.sampled_from(CustomsStatus),
        reason=optional_text,
    )


def voids(
    parcel_ids: st.SearchStrategy[str] | None = None,
    event_ids: st.SearchStrategy[str] | None = None,
    times: st.SearchStrategy[int] | None = None,
    voided_event_ids: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[EventVoided]:
    return st.builds(
        EventVoided,
        **_common(parcel_ids, event_ids, times),
        voided_event_id=voided_event_ids if voided_event_ids is not None else _any_event_id(),
        reason=st.sampled_from(VoidReason),
    )


def events(
    parcel_ids: st.SearchStrategy[str] | None = None,
    event_ids: st.SearchStrategy[str] | None = None,
    times: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[Event]:
    """Any valid event of any type; narrow the ids or times to make events collide."""
    return st.one_of(
        registrations(parcel_ids, event_ids, times),
        scans(parcel_ids, event_ids, times),
        handoffs(parcel_ids, event_ids, times),
        customs(parcel_ids, event_ids, times),
        voids(parcel_ids, event_ids, times, voided_event_ids=event_ids),
    )


def status_records() -> st.SearchStrategy[dict[str, object]]:
    """ParcelStatus record dicts (current schema shape, times as int millis)."""
    optional_time = st.none() | times()
    return st.fixed_dictionaries(
        {
            "parcel_id": parcel_ids(),
            "milestone": st.sampled_from(
                ["REGISTERED", "PICKED_UP", "DELIVERED", "RETURNING", "RETURNED"]
            ),
            "delivered_at": optional_time,
            "holds": st.lists(
                st.sampled_from(["CUSTOMS_HOLD", "CUSTOMS_REFUSED"]), unique=True
            ).map(sorted),
            "attempts": st.integers(0, 20),
            "event_count": st.integers(1, 500),
            "custodian": optional_text,
            "registered": st.booleans(),
            "last_event_time": times(),
            "origin_country": st.none() | countries(),
            "origin_city": optional_text,
            "destination_country": st.none() | countries(),
            "destination_city": optional_text,
            "service": st.none() | st.sampled_from([s.value for s in Service]),
            "promised_hours": st.none() | st.integers(1, 24 * 60),
            "registered_at": optional_time,
            "promised_at": optional_time,
            "version": st.integers(1, 2**40),
            "updated_at": times(),
            "eta_p50": optional_time,
            "eta_p90": optional_time,
            "on_time_probability": st.none() | st.floats(0.0, 1.0),
            "eta_basis": st.none() | st.sampled_from(["lane", "route", "service", "global"]),
        }
    )
