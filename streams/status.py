"""The JSON face of a ParcelStatus record: what `follow` prints and the API returns."""

from __future__ import annotations

from typing import Any

from projections.jsonform import format_time

TIME_FIELDS = frozenset(
    {
        "delivered_at",
        "last_event_time",
        "registered_at",
        "promised_at",
        "eta_p50",
        "eta_p90",
        "updated_at",
    }
)


def status_to_json(status: dict[str, Any]) -> dict[str, Any]:
    """Times as RFC 3339 UTC strings (like `trackbone fold`), holds sorted."""
    out: dict[str, Any] = {}
    for key, value in status.items():
        if key in TIME_FIELDS:
            out[key] = format_time(value) if value is not None else None
        elif key == "holds":
            out[key] = sorted(value)
        else:
            out[key] = value
    return out
