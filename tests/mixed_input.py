"""A deterministic mixed input for end-to-end tests: the real world's mess in small.

Out-of-order arrival, duplicate sends, voids before and after their events,
conflicting repeats, invalid JSON lines; raw garbage bytes are produced separately.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

BASE_MS = 1_794_355_200_000  # 2026-11-11T00:00:00Z

SCAN_PATH = [
    "PICKED_UP",
    "ORIGIN_HUB_ARRIVED",
    "ORIGIN_HUB_DEPARTED",
    "LINEHAUL_DEPARTED",
    "DESTINATION_ARRIVED",
    "DESTINATION_HUB_ARRIVED",
    "OUT_FOR_DELIVERY",
    "DELIVERY_ATTEMPTED",
    "OUT_FOR_DELIVERY",
    "DELIVERED",
]


@dataclass
class MixedInput:
    lines: list[bytes]
    invalid_lines: int
    conflicts: int
    duplicates: int
    parcel_ids: list[str]


def _event(kind: str, pid: str, eid: str, t: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": eid,
        "parcel_id": pid,
        "event_time": t,
        "tz_offset_minutes": 480,
        "source": "test-carrier",
        "location": {"facility_id": "CN-HGH-SORT1", "country": "CN", "city": "Hangzhou"},
        **fields,
    }


def build(parcels: int, seed: int, tag: str) -> MixedInput:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    pids = [f"{tag}-{i:05d}" for i in range(parcels)]
    for i, pid in enumerate(pids):
        t = BASE_MS + i * 60_000
        dest = rng.choice(["CN", "ES", "FR", "US", "BR"])
        events.append(
            _event(
                "ParcelRegistered",
                pid,
                f"{pid}-reg",
                t,
                merchant_id="m1",
                origin={"country": "CN", "city": "Hangzhou"},
                destination={"country": dest, "city": None},
                service=rng.choice(["EXPRESS", "STANDARD", "ECONOMY"]),
                promised_hours=None,
            )
        )
        steps = rng.randint(2, len(SCAN_PATH))
        for k, scan in enumerate(SCAN_PATH[:steps]):
            t += rng.randint(1, 20) * 3_600_000
            events.append(_event("ParcelScanned", pid, f"{pid}-s{k}", t, scan=scan, raw_code=None))
            if scan == "DESTINATION_ARRIVED" and rng.random() < 0.5:
                events.append(
                    _event(
                        "CustomsStatusRecorded",
                        pid,
                        f"{pid}-c{k}",
                        t + 1,
                        direction="IMPORT",
                        status=rng.choice(["HELD", "RELEASED", "SUBMITTED"]),
                        reason=None,
                    )
                )
            if rng.random() < 0.15:
                events.append(
                    _event(
                        "ParcelHandedOver",
                        pid,
                        f"{pid}-h{k}",
                        t + 2,
                        from_party="a",
                        to_party=f"p{k}",
                    )
                )
        if rng.random() < 0.3:
            # void the last scan: half the time the void comes first
            target = events[-1]["event_id"]
            void = _event(
                "EventVoided",
                pid,
                f"{pid}-v",
                t + 5,
                voided_event_id=target,
                reason="DID_NOT_OCCUR",
            )
            events.insert(len(events) - 1 if rng.random() < 0.5 else len(events), void)
    rng.shuffle(events)  # out of order arrival, across parcels and within them
    duplicates = 0
    conflicts = 0
    out: list[bytes] = []
    for ev in events:
        out.append(orjson.dumps(ev))
        if rng.random() < 0.05:
            out.append(orjson.dumps(ev))
            duplicates += 1
        elif ev["type"] == "ParcelScanned" and rng.random() < 0.02:
            out.append(orjson.dumps(ev | {"raw_code": "DIFFERENT"}))
            conflicts += 1
    invalid = [
        b"{not json",
        orjson.dumps(_event("ParcelScanned", "bad id!", "x1", BASE_MS, scan="PICKED_UP")),
        orjson.dumps(_event("ParcelScanned", pids[0], "x2", BASE_MS, scan="TELEPORTED")),
        orjson.dumps(
            _event("ParcelScanned", pids[0], "x3", "2026-11-11T09:30:00", scan="PICKED_UP")
        ),
        orjson.dumps({"type": "ParcelScanned", "parcel_id": pids[0]}),
    ]
    for bad in invalid:
        out.insert(rng.randrange(len(out)), bad)
    return MixedInput(out, len(invalid), conflicts, duplicates, pids)


def write(path: Path, mixed: MixedInput) -> Path:
    path.write_bytes(b"\n".join(mixed.lines) + b"\n")
    return path
