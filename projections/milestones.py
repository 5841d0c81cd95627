"""Milestones and which events raise them (tracking contract, section 2).

Kept apart from the fold so that ETA models and alerts can use the ranks without
pulling in the fold's machinery.
"""

from __future__ import annotations

from enum import StrEnum

from projections.events import CustomsDirection, Scan


class Milestone(StrEnum):
    REGISTERED = "REGISTERED"
    PICKED_UP = "PICKED_UP"
    AT_ORIGIN_HUB = "AT_ORIGIN_HUB"
    EXPORT_CUSTOMS = "EXPORT_CUSTOMS"
    DEPARTED_ORIGIN = "DEPARTED_ORIGIN"
    ARRIVED_DESTINATION = "ARRIVED_DESTINATION"
    IMPORT_CUSTOMS = "IMPORT_CUSTOMS"
    AT_DESTINATION_HUB = "AT_DESTINATION_HUB"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERED = "DELIVERED"
    RETURNING = "RETURNING"
    RETURNED = "RETURNED"


FORWARD_RANK: dict[Milestone, int] = {
    Milestone.REGISTERED: 0,
    Milestone.PICKED_UP: 1,
    Milestone.AT_ORIGIN_HUB: 2,
    Milestone.EXPORT_CUSTOMS: 3,
    Milestone.DEPARTED_ORIGIN: 4,
    Milestone.ARRIVED_DESTINATION: 5,
    Milestone.IMPORT_CUSTOMS: 6,
    Milestone.AT_DESTINATION_HUB: 7,
    Milestone.OUT_FOR_DELIVERY: 8,
    Milestone.DELIVERED: 9,
}
"""Rank of each forward milestone; RETURNING and RETURNED are reverse and have none."""

REVERSE_MILESTONES: frozenset[Milestone] = frozenset({Milestone.RETURNING, Milestone.RETURNED})

SCAN_MILESTONE: dict[Scan, Milestone] = {
    Scan.PICKED_UP: Milestone.PICKED_UP,
    Scan.ORIGIN_HUB_ARRIVED: Milestone.AT_ORIGIN_HUB,
    Scan.ORIGIN_HUB_DEPARTED: Milestone.AT_ORIGIN_HUB,
    Scan.LINEHAUL_DEPARTED: Milestone.DEPARTED_ORIGIN,
    Scan.DESTINATION_ARRIVED: Milestone.ARRIVED_DESTINATION,
    Scan.DESTINATION_HUB_ARRIVED: Milestone.AT_DESTINATION_HUB,
    Scan.OUT_FOR_DELIVERY: Milestone.OUT_FOR_DELIVERY,
    Scan.DELIVERY_ATTEMPTED: Milestone.OUT_FOR_DELIVERY,
    Scan.AVAILABLE_FOR_PICKUP: Milestone.OUT_FOR_DELIVERY,
    Scan.DELIVERED: Milestone.DELIVERED,
}
"""Forward milestone set by each scan; RETURN_INITIATED is reverse and absent here."""

CUSTOMS_MILESTONE: dict[CustomsDirection, Milestone] = {
    CustomsDirection.EXPORT: Milestone.EXPORT_CUSTOMS,
    CustomsDirection.IMPORT: Milestone.IMPORT_CUSTOMS,
}
"""Forward milestone set by a customs record of each direction, whatever its status."""

CUSTOMS_HOLD = "CUSTOMS_HOLD"
CUSTOMS_REFUSED = "CUSTOMS_REFUSED"
