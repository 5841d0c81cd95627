"""Micro-benchmark of the incremental fold (`projections.fold.step`) on one core.

Generates simulated parcels (8-12 events each: registration, scans, hand-overs,
customs for cross-border lanes, with about 1% repeated records and 1% voids) as
domain objects, untimed, then times `step` over every event with the states kept
in a dict, for in-order arrival (sorted by event_time, as a healthy stream looks)
and for a uniformly shuffled arrival (the worst case: most events are late).

    python -m load.fold_bench --events 1000000 [--seed 7] [--json]

`run(events, seed)` returns the numbers as a dict for `trackbone bench`.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

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
from projections.fold import Outcome, decode_state, encode_state, step

_START_MS = 1_794_355_200_000  # 2026-11-11T00:00:00Z
_MIN = 60_000
_HOUR = 3_600_000
_LANES = [
    ("CN", "Hangzhou", "CN", "Beijing"),
    ("CN", "Shenzhen", "ES", "Madrid"),
    ("CN", "Guangzhou", "US", "Chicago"),
    ("CN", "Yiwu", "CN", "Shanghai"),
    ("CN", "Hangzhou", "FR", "Paris"),
]
_SOURCES = ["cainiao", "yto", "sto", "zto", "sf-express", "correos", "usps", "laposte"]


class _Journey:
    """One parcel's events as a carrier network would emit them."""

    def __init__(self, rng: random.Random, parcel_id: str, locations: dict[Any, Location]):
        self.rng = rng
        self.parcel_id = parcel_id
        self.locations = locations
        self.source = rng.choice(_SOURCES)
        self.time = _START_MS + rng.randrange(0, 24 * _HOUR)
        self.seq = 0
        self.events: list[Event] = []

    def loc(self, country: str, city: str, kind: str) -> Location:
        key = (country, city, kind)
        if key not in self.locations:
            facility = f"{country}-{city[:3].upper()}-{kind}"
            self.locations[key] = Location(country=country, facility_id=facility, city=city)
        return self.locations[key]

    def next_id(self) -> str:
        self.seq += 1
        return f"{self.source}-{self.parcel_id}-{self.seq:03d}"

    def wait(self, low: int, high: int, unit: int = _MIN) -> int:
        self.time += self.rng.randrange(low, high) * unit
        return self.time

    def scan(self, kind: Scan, where: Location, low: int, high: int, unit: int = _MIN) -> None:
        self.events.append(
            ParcelScanned(
                event_id=self.next_id(),
                parcel_id=self.parcel_id,
                event_time=self.wait(low, high, unit),
                tz_offset_minutes=480,
                source=self.source,
                location=where,
                scan=kind,
                raw_code=f"C{list(Scan).index(kind):02d}",
            )
        )

    def customs(self, direction: CustomsDirection, status: CustomsStatus, where: Location) -> None:
        self.events.append(
            CustomsStatusRecorded(
                event_id=self.next_id(),
                parcel_id=self.parcel_id,
                event_time=self.wait(30, 600),
                source="customs-" + where.country.lower(),
                location=where,
                direction=direction,
                status=status,
            )
        )

    def run(self) -> list[Event]:
        rng = self.rng
        o_c, o_city, d_c, d_city = rng.choice(_LANES)
        cross = o_c != d_c
        self.events.append(
            ParcelRegistered(
                event_id=self.next_id(),
                parcel_id=self.parcel_id,
                event_time=self.time,
                tz_offset_minutes=480,
                source="merchant-api",
                merchant_id=f"M{rng.randrange(5000):05d}",
                origin=Place(country=o_c, city=o_city),
                destination=Place(country=d_c, city=d_city),
                service=rng.choice(list(Service)),
            )
        )
        hub, dest_hub = self.loc(o_c, o_city, "HUB"), self.loc(d_c, d_city, "HUB")
        door = self.loc(d_c, d_city, "DLV")
        self.scan(Scan.PICKED_UP, self.loc(o_c, o_city, "PUP"), 30, 600)
        self.scan(Scan.ORIGIN_HUB_ARRIVED, hub, 60, 300)
        if rng.random() < 0.5:
            self.scan(Scan.ORIGIN_HUB_DEPARTED, hub, 60, 300)
        if cross:
            held = rng.random() < 0.1
            self.customs(
                CustomsDirection.EXPORT, CustomsStatus.HELD if held else CustomsStatus.RELEASED, hub
            )
            if held:
                self.customs(CustomsDirection.EXPORT, CustomsStatus.RELEASED, hub)
        self.events.append(
            ParcelHandedOver(
                event_id=self.next_id(),
                parcel_id=self.parcel_id,
                event_time=self.wait(10, 60),
                source=self.source,
                location=hub,
                from_party=self.source,
                to_party="linehaul-air" if cross else "linehaul-road",
            )
        )
        self.scan(Scan.LINEHAUL_DEPARTED, hub, 30, 240)
        self.scan(Scan.DESTINATION_ARRIVED, dest_hub, 4, 40, _HOUR)
        if cross:
            self.customs(CustomsDirection.IMPORT, CustomsStatus.RELEASED, dest_hub)
        self.scan(Scan.DESTINATION_HUB_ARRIVED, dest_hub, 30, 600)
        self.scan(Scan.OUT_FOR_DELIVERY, door, 60, 900)
        if rng.random() < 0.15:
            self.scan(Scan.DELIVERY_ATTEMPTED, door, 60, 300)
            self.scan(Scan.OUT_FOR_DELIVERY, door, 600, 1200)
        if rng.random() < 0.03:
            self.scan(Scan.RETURN_INITIATED, dest_hub, 60, 600)
        self.scan(Scan.DELIVERED, door, 30, 300)
        extra: list[Event] = []
        for event in self.events:
            roll = rng.random()
            if roll < 0.01:
                extra.append(event)  # producer retry: an exact repeat
            elif roll < 0.02:
                extra.append(
                    EventVoided(
                        event_id=f"void-{event.event_id}",
                        parcel_id=self.parcel_id,
                        event_time=event.event_time + rng.randrange(1, 120) * _MIN,
                        source=event.source,
                        voided_event_id=event.event_id,
                        reason=VoidReason.INCORRECT_DATA,
                    )
                )
        return self.events + extra


def simulate(events: int, seed: int) -> list[Event]:
    """At least `events` events of realistic parcels, ordered by event_time."""
    rng = random.Random(seed)
    locations: dict[Any, Location] = {}
    out: list[Event] = []
    parcel_no = 0
    while len(out) < events:
        parcel_no += 1
        out.extend(_Journey(rng, f"LP{seed:02d}{parcel_no:010d}CN", locations).run())
    out.sort(key=lambda e: e.event_time)
    return out


def _time_steps(stream: list[Event], *, codec: bool) -> tuple[float, float, dict[str, Any]]:
    """Fold the stream; return (wall seconds, CPU seconds, final states or stored bytes).

    CPU seconds are reported too because the machine may be shared: wall time then
    counts other processes' turns, CPU time does not.
    """
    states: dict[str, Any] = {}
    gc.collect()
    gc.disable()  # the fold allocates no cycles; keep collector pauses out of the number
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        get = states.get
        if codec:  # a store that only keeps bytes, as a RocksDB-backed table does
            applied = Outcome.APPLIED
            for event in stream:
                raw = get(event.parcel_id)
                result = step(None if raw is None else decode_state(raw), event)
                if result.outcome is applied:
                    states[event.parcel_id] = encode_state(result.state)  # type: ignore[arg-type]
        else:
            for event in stream:
                states[event.parcel_id] = step(get(event.parcel_id), event).state
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.enable()
    return wall, cpu, states


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def run(events: int = 1_000_000, seed: int = 7, codec_events: int = 100_000) -> dict[str, Any]:
    """Time `step` for in-order and shuffled arrival; also with decode/encode per event."""
    made = time.perf_counter()
    in_order = simulate(events, seed)
    shuffled = list(in_order)
    random.Random(seed + 1).shuffle(shuffled)
    generate_s = time.perf_counter() - made

    ordered_wall, ordered_cpu, states = _time_steps(in_order, codec=False)
    shuffled_wall, shuffled_cpu, shuffled_states = _time_steps(shuffled, codec=False)
    if states != shuffled_states:
        raise AssertionError("in-order and shuffled arrival gave different states")
    visible = [s for s in states.values() if s.is_visible]
    sizes = [len(encode_state(s)) for s in visible[:20_000]]
    ten = [len(encode_state(s)) for s in visible[:100_000] if s.event_count == 10]

    # The codec runs use whole parcels (a prefix of parcel ids), so both orders see
    # complete parcels.
    chosen: set[str] = set()
    for event in in_order:
        if len(chosen) * len(in_order) >= codec_events * len(states):
            break
        chosen.add(event.parcel_id)
    codec_in_order = [e for e in in_order if e.parcel_id in chosen]
    codec_shuffled = [e for e in shuffled if e.parcel_id in chosen]
    codec_wall, codec_cpu, _ = _time_steps(codec_in_order, codec=True)
    codec_sh_wall, codec_sh_cpu, _ = _time_steps(codec_shuffled, codec=True)
    n = len(in_order)
    return {
        "benchmark": "fold_step",
        "python": sys.version.split()[0],
        "events": n,
        "parcels": len(states),
        "events_per_parcel": round(n / max(1, len(states)), 2),
        "seed": seed,
        "generate_s": round(generate_s, 2),
        "in_order_s": round(ordered_wall, 3),
        "in_order_events_per_s": _rate(n, ordered_wall),
        "in_order_events_per_cpu_s": _rate(n, ordered_cpu),
        "shuffled_s": round(shuffled_wall, 3),
        "shuffled_events_per_s": _rate(n, shuffled_wall),
        "shuffled_events_per_cpu_s": _rate(n, shuffled_cpu),
        "with_codec_events": len(codec_in_order),
        "with_codec_in_order_events_per_s": _rate(len(codec_in_order), codec_wall),
        "with_codec_in_order_events_per_cpu_s": _rate(len(codec_in_order), codec_cpu),
        "with_codec_shuffled_events_per_s": _rate(len(codec_shuffled), codec_sh_wall),
        "with_codec_shuffled_events_per_cpu_s": _rate(len(codec_shuffled), codec_sh_cpu),
        "encoded_bytes_per_parcel_mean": round(sum(sizes) / max(1, len(sizes)), 1),
        "encoded_bytes_10_event_parcel_mean": round(sum(ten) / max(1, len(ten)), 1),
        "goals": {"in_order_events_per_s": 150_000, "shuffled_events_per_s": 50_000},
    }


def _print_human(result: dict[str, Any], write: Callable[[str], Any]) -> None:
    for key, value in result.items():
        write(f"{key:>36}: {value}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.fold_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed")
    parser.add_argument(
        "--codec-events",
        type=int,
        default=100_000,
        help="events of the in-order stream also timed with decode/encode per event",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.events, args.seed, args.codec_events)
    if args.json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        _print_human(result, sys.stdout.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
