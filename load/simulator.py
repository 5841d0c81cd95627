"""A seeded, deterministic Cainiao-like carrier simulator: domain events plus ground truth.

Two time axes matter to a tracking backbone: `event_time` (when something happened)
and arrival (when a carrier got round to sending it). The simulator models both and
yields events in *arrival* order, which is the order they would be produced to Kafka,
so everything downstream sees late batch uploads, duplicates, voids and gaps the way
it would in production; the ground truth says what really happened, for checking the
fold and scoring ETAs.

Memory stays bounded for large runs: each parcel is a generator that advances one
phase at a time (origin, export, line-haul, import, last mile...), driven from one
heap keyed by time, so only the pending events of the current phase are held.
Determinism: one `random.Random(seed)` advanced in heap order (ties broken by a
sequence number), no clock, no global random state.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush
from pathlib import Path
from statistics import NormalDist
from typing import Any, NamedTuple

import orjson

from load.network import (
    DESTINATIONS,
    DOMESTIC_ATTEMPT_FAIL,
    DOMESTIC_CARRIERS,
    DOMESTIC_CITIES,
    DOMESTIC_PICKUP_SHARE,
    EXPLICIT_PROMISES,
    EXPORT_HUBS,
    MERCHANT_PLATFORMS,
    ORIGINS,
    SERVICE_SHARES_DOMESTIC,
    SERVICE_SHARES_INTERNATIONAL,
    City,
    Destination,
    OriginCity,
    domestic_linehaul_hours,
    source_prefix,
)
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
    positional_constructor,
)
from projections.jsonform import event_to_json, format_time, parse_time

HOUR = 3_600_000
MINUTE = 60_000
DAY = 86_400_000
DEFAULT_START = datetime(2026, 11, 10, 16, 0, tzinfo=UTC)
"""Singles Day: 2026-11-11 00:00 in China (+08:00)."""


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("scenario start must be timezone-aware")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class SurgeProfile:
    """Registrations run at `factor` times the baseline rate for `hours` from the offset."""

    start_offset_hours: float = 0.0
    hours: float = 24.0
    factor: float = 10.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything that determines a run: same scenario, byte-identical output."""

    parcels: int = 2000
    seed: int = 0
    start: datetime = DEFAULT_START
    registration_hours: float = 72.0
    """Registrations are spread over [start, start + registration_hours)."""
    surge: SurgeProfile | None = field(default_factory=SurgeProfile)
    diurnal: float = 0.5
    """Amplitude of the daily registration cycle (China time, peak mid-afternoon)."""
    domestic_share: float = 0.3
    explicit_promise_share: float = 0.08
    duplicate_rate: float = 0.02
    """Per event: the carrier sends it again, identical."""
    missing_scan_rate: float = 0.03
    """Per droppable scan (never registration, DELIVERED or RETURN_INITIATED)."""
    late_batch_rate: float = 0.06
    """Per parcel: one phase's scans are held back and uploaded together, late."""
    late_registration_rate: float = 0.01
    false_delivery_rate: float = 0.012
    """Per home delivery: DELIVERED that did not happen, later voided (DID_NOT_OCCUR)."""
    incorrect_data_rate: float = 0.006
    """Per parcel: a hub scan with the wrong facility, voided and re-sent."""
    hold_scale: float = 1.0
    refusal_scale: float = 1.0
    attempt_fail_scale: float = 1.0
    uncollected_rate: float = 0.03
    """Per pickup-point parcel: never collected, returned to sender."""
    door_refusal_rate: float = 0.004
    lost_rate: float = 0.002
    congestion: float = 0.06
    """Dwell stretch per unit of load above baseline (10x surge -> about 1.5x dwell)."""
    id_tag: str | None = None
    """Parcel-id tag; default derived from the seed."""

    def __post_init__(self) -> None:
        _to_ms(self.start)
        if self.parcels < 0:
            raise ValueError("parcels must be >= 0")
        if self.registration_hours <= 0:
            raise ValueError("registration_hours must be positive")
        if self.id_tag is not None and not self.id_tag.replace("-", "").replace("_", "").isalnum():
            raise ValueError("id_tag must be made of [A-Za-z0-9_-]")

    @property
    def start_ms(self) -> int:
        return _to_ms(self.start)


class SimEvent(NamedTuple):
    """One event as produced: the domain event, when it arrives, and what it is for.

    A NamedTuple rather than a frozen dataclass: one is built per event on the hot
    path and a tuple is several times cheaper to create.
    """

    event: Event
    arrival_ms: int
    kind: str
    """`normal`, `duplicate` (identical re-send), `late` (part of a late batch),
    `false_delivery` (a DELIVERED later voided), `void`, `wrong` (voided as incorrect data)."""


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What really happened to one parcel."""

    parcel_id: str
    origin_country: str
    origin_city: str
    destination_country: str
    destination_city: str
    service: str
    promised_hours: int
    """Effective promise (contract default when the registration carries none)."""
    explicit_promise: bool
    registered_at: int
    promised_at: int
    delivered_at: int | None
    returned: bool
    returned_at: int | None
    customs_held: bool
    customs_refused: bool
    lost: bool
    failed_attempts: int
    false_delivery: bool
    milestones: tuple[tuple[str, int], ...]
    """Real time each milestone was first reached (scans may be missing from the feed)."""

    @property
    def domestic(self) -> bool:
        return self.origin_country == self.destination_country

    @property
    def on_time(self) -> bool | None:
        if self.delivered_at is None:
            return None
        return self.delivered_at <= self.promised_at

    def to_json(self) -> dict[str, Any]:
        return {
            "parcel_id": self.parcel_id,
            "origin_country": self.origin_country,
            "origin_city": self.origin_city,
            "destination_country": self.destination_country,
            "destination_city": self.destination_city,
            "service": self.service,
            "promised_hours": self.promised_hours,
            "explicit_promise": self.explicit_promise,
            "registered_at": format_time(self.registered_at),
            "promised_at": format_time(self.promised_at),
            "delivered_at": format_time(self.delivered_at),
            "returned": self.returned,
            "returned_at": format_time(self.returned_at),
            "customs_held": self.customs_held,
            "customs_refused": self.customs_refused,
            "lost": self.lost,
            "failed_attempts": self.failed_attempts,
            "false_delivery": self.false_delivery,
            "milestones": {name: format_time(t) for name, t in self.milestones},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> GroundTruth:
        def opt(key: str) -> int | None:
            value = obj.get(key)
            return None if value is None else parse_time(value, key)

        return cls(
            parcel_id=obj["parcel_id"],
            origin_country=obj["origin_country"],
            origin_city=obj["origin_city"],
            destination_country=obj["destination_country"],
            destination_city=obj["destination_city"],
            service=obj["service"],
            promised_hours=obj["promised_hours"],
            explicit_promise=obj["explicit_promise"],
            registered_at=parse_time(obj["registered_at"], "registered_at"),
            promised_at=parse_time(obj["promised_at"], "promised_at"),
            delivered_at=opt("delivered_at"),
            returned=obj["returned"],
            returned_at=opt("returned_at"),
            customs_held=obj["customs_held"],
            customs_refused=obj["customs_refused"],
            lost=obj["lost"],
            failed_attempts=obj["failed_attempts"],
            false_delivery=obj["false_delivery"],
            milestones=tuple((k, parse_time(v, k)) for k, v in obj["milestones"].items()),
        )


@dataclass(slots=True)
class SimStats:
    """Counters of what a run produced (mutable: filled while the run streams)."""

    parcels: int = 0
    domestic: int = 0
    events: int = 0
    duplicates: int = 0
    voids: int = 0
    false_deliveries: int = 0
    incorrect_data: int = 0
    late_uploads: int = 0
    late_batches: int = 0
    late_registrations: int = 0
    missing_scans: int = 0
    holds: int = 0
    refusals: int = 0
    returns: int = 0
    lost: int = 0
    failed_attempts: int = 0
    delivered: int = 0
    on_time: int = 0
    lanes: set[tuple[str, str]] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "lanes"
        }
        out["lanes"] = len(self.lanes)
        out["destination_countries"] = len({dest for _, dest in self.lanes})
        out["on_time_share"] = round(self.on_time / self.delivered, 4) if self.delivered else None
        return out


# --------------------------------------------------------------------------- time helpers


def _local_hour(t: int, tz: int) -> float:
    return ((t + tz * MINUTE) % DAY) / HOUR


def _next_local(t: int, tz: int, hour: float) -> int:
    """Return the first instant >= t whose local time of day is `hour`."""
    local = t + tz * MINUTE
    candidate = local - local % DAY + int(hour * HOUR)
    if candidate < local:
        candidate += DAY
    return candidate - tz * MINUTE


def _open(t: int, tz: int, opens: float, closes: float) -> int:
    """Return t if within local opening hours, else the next opening."""
    hour = _local_hour(t, tz)
    if opens <= hour < closes:
        return t
    return _next_local(t, tz, opens)


def _normal_table(size: int) -> tuple[float, ...]:
    """Return standard normal quantiles at the midpoints of `size` equal slices."""
    dist = NormalDist()
    return tuple(dist.inv_cdf((k + 0.5) / size) for k in range(size))


_NORMAL_SIZE = 1 << 14
_NORMAL = _normal_table(_NORMAL_SIZE)
"""Drawing z by table index costs one `random()`: several times cheaper than Gaussian
sampling, and the tails (cut at about 4 sigma) are more than this model needs."""


_EXP_ARRIVAL = tuple(math.exp(1.1 * z) for z in _NORMAL)


# Field order: event_id, parcel_id, event_time, source, tz_offset_minutes, location, then
# the type's own fields (checked by the unit tests against the keyword constructors).
_new_scan = positional_constructor(ParcelScanned)
_new_handover = positional_constructor(ParcelHandedOver)
_new_customs = positional_constructor(CustomsStatusRecorded)
_CUSTOMS = "cainiao-customs"


# --------------------------------------------------------------------------- weighted picks


class _Picker:
    """Weighted choice by bisect on cumulative weights (fast, deterministic)."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, pairs: list[tuple[Any, float]]) -> None:
        self.items = [item for item, _ in pairs]
        running = 0.0
        self.cum = []
        for _, weight in pairs:
            running += weight
            self.cum.append(running)
        self.total = running

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


_SCAN_CODES = {
    Scan.PICKED_UP: ("ACCEPT", 10),
    Scan.ORIGIN_HUB_ARRIVED: ("SC_INBOUND_SUCCESS", 20),
    Scan.ORIGIN_HUB_DEPARTED: ("SC_OUTBOUND_SUCCESS", 21),
    Scan.LINEHAUL_DEPARTED: ("LH_DEPART", 30),
    Scan.DESTINATION_ARRIVED: ("LH_ARRIVE", 40),
    Scan.DESTINATION_HUB_ARRIVED: ("DELIVERY_INBOUND", 50),
    Scan.OUT_FOR_DELIVERY: ("DELIVERING", 60),
    Scan.DELIVERY_ATTEMPTED: ("DELIVERY_FAILED", 61),
    Scan.AVAILABLE_FOR_PICKUP: ("STATION_INBOUND", 70),
    Scan.DELIVERED: ("SIGNED", 80),
    Scan.RETURN_INITIATED: ("RETURN", 90),
}


_PICKUP_HOURS = {Service.EXPRESS: 1.0, Service.STANDARD: 2.0, Service.ECONOMY: 3.0}
_CUSTOMS_FACTOR = {Service.EXPRESS: 0.6, Service.STANDARD: 1.0, Service.ECONOMY: 1.3}
_LASTMILE_FACTOR = {Service.EXPRESS: 0.6, Service.STANDARD: 1.0, Service.ECONOMY: 1.6}


@dataclass(slots=True)
class _Parcel:
    """Per-parcel mutable context while its journey runs."""

    pid: str
    merchant: str = ""
    n: int = 0
    late_phase: int = -1
    """Which phase's scans are uploaded late (-1: none)."""
    late_until: int = 0
    phase: int = 0
    false_delivery: bool = False
    milestones: dict[str, int] = field(default_factory=dict)

    def mark(self, milestone: str, t: int) -> None:
        if milestone not in self.milestones:
            self.milestones[milestone] = t


Items = list[SimEvent]


def _drain(buf: Items) -> Items:
    """Move a phase's events out, so the suspended journey frame does not keep them alive."""
    items = buf[:]
    buf.clear()
    return items


Journey = Generator[tuple[int, Items], None, GroundTruth]

# Phases used for late batches.
PH_ORIGIN, PH_EXPORT, PH_LINEHAUL, PH_IMPORT, PH_LASTMILE, PH_RETURN = range(6)
_LATE_PHASES = (PH_ORIGIN, PH_ORIGIN, PH_EXPORT, PH_IMPORT, PH_LASTMILE, PH_LASTMILE, PH_LASTMILE)


class Simulation:
    """One run of a scenario; iterate `events()` once. Stats fill as it streams."""

    def __init__(
        self, scenario: Scenario, on_truth: Callable[[GroundTruth], None] | None = None
    ) -> None:
        self.scenario = scenario
        self.on_truth = on_truth
        self.stats = SimStats()
        self.rng = random.Random(scenario.seed)
        self.start = scenario.start_ms
        tag = scenario.id_tag if scenario.id_tag is not None else f"{scenario.seed % 1000:03d}"
        self.tag = tag
        self._locations: dict[tuple[str | None, str, str], Location] = {}
        self._origins = _Picker([(o, w) for o, w in ORIGINS])
        self._dests = _Picker([(d, d.weight) for d in DESTINATIONS])
        self._dest_cities = {
            d.country: _Picker([(c, c.weight) for c in d.cities]) for d in DESTINATIONS
        }
        self._carriers = {d.country: _Picker(list(d.carriers)) for d in DESTINATIONS}
        self._dom_cities = _Picker([((c, r), c.weight) for c, r in DOMESTIC_CITIES])
        self._dom_carriers = _Picker(list(DOMESTIC_CARRIERS))
        self._dom_regional = {
            o.domestic_region: _Picker(
                [((c, r), c.weight) for c, r in DOMESTIC_CITIES if r == o.domestic_region]
            )
            for o, _ in ORIGINS
        }
        self._svc_intl = _Picker(list(SERVICE_SHARES_INTERNATIONAL))
        self._svc_dom = _Picker(list(SERVICE_SHARES_DOMESTIC))
        self._platforms = _Picker(list(MERCHANT_PLATFORMS))
        self._prefix: dict[str, str] = {}
        self._raw: dict[tuple[str, int], str] = {}
        self._duplicate_rate = scenario.duplicate_rate
        self._load_bucket = 10 * MINUTE
        self._load = self._load_table()

    # ----------------------------------------------------------------- arrival process

    def intensity(self, t: int) -> float:
        """Relative registration rate at t (baseline 1), without the daily cycle."""
        surge = self.scenario.surge
        if surge is None:
            return 1.0
        begin = self.start + int(surge.start_offset_hours * HOUR)
        if begin <= t < begin + int(surge.hours * HOUR):
            return surge.factor
        return 1.0

    def _load_table(self) -> list[float]:
        """Network load relative to baseline: registration intensity smoothed over ~12 h."""
        horizon = int((self.scenario.registration_hours + 96) * HOUR)
        tau = 12 * HOUR
        alpha = 1 - math.exp(-self._load_bucket / tau)
        level = 1.0
        table = []
        for k in range(horizon // self._load_bucket + 1):
            t = self.start + k * self._load_bucket
            level += alpha * (self.intensity(t) - level)
            table.append(level)
        return table

    def load(self, t: int) -> float:
        k = (t - self.start) // self._load_bucket
        if 0 <= k < len(self._load):
            return self._load[k]
        return 1.0

    def _registration_times(self) -> list[int]:
        """N registration instants drawn from the (surge x daily cycle) density, sorted."""
        sc = self.scenario
        bucket = MINUTE
        n_buckets = max(1, int(sc.registration_hours * HOUR) // bucket)
        cum: list[float] = []
        running = 0.0
        for k in range(n_buckets):
            t = self.start + k * bucket
            hour = _local_hour(t, 480)
            daily = 1.0 + sc.diurnal * math.cos((hour - 14.0) / 24.0 * 2 * math.pi)
            running += self.intensity(t) * max(0.05, daily)
            cum.append(running)
        rng = self.rng
        times = []
        for _ in range(sc.parcels):
            u = rng.random() * running
            k = bisect.bisect_right(cum, u)
            k = min(k, n_buckets - 1)
            times.append(self.start + k * bucket + int(rng.random() * bucket))
        times.sort()
        return times

    # ----------------------------------------------------------------- driver

    def events(self) -> Iterator[SimEvent]:
        """All events of the run in arrival order (ties: production order)."""
        times = self._registration_times()
        heap: list[tuple[int, int, int, Any]] = []
        seq = 0
        if times:
            heappush(heap, (times[0], 0, 2, 0))
            seq = 1
        stats = self.stats
        n = len(times)
        while heap:
            _key, _, code, payload = heappop(heap)
            if code == 0:
                stats.events += 1
                yield payload
                continue
            if code == 2:
                idx = payload
                gen = self._journey(idx, times[idx])
                if idx + 1 < n:
                    heappush(heap, (times[idx + 1], seq, 2, idx + 1))
                    seq += 1
            else:
                gen = payload
            try:
                clock, items = next(gen)
            except StopIteration as stop:
                truth: GroundTruth = stop.value
                self._count_truth(truth)
                if self.on_truth is not None:
                    self.on_truth(truth)
                continue
            for item in items:
                heappush(heap, (item.arrival_ms, seq, 0, item))
                seq += 1
            heappush(heap, (clock, seq, 1, gen))
            seq += 1

    def _count_truth(self, truth: GroundTruth) -> None:
        stats = self.stats
        if truth.delivered_at is not None:
            stats.delivered += 1
            if truth.delivered_at <= truth.promised_at:
                stats.on_time += 1
        if truth.returned:
            stats.returns += 1
        if truth.lost:
            stats.lost += 1
        if truth.customs_held:
            stats.holds += 1
        if truth.customs_refused:
            stats.refusals += 1
        stats.failed_attempts += truth.failed_attempts

    # ----------------------------------------------------------------- emission helpers

    def _loc(self, country: str, facility: str | None, city: str) -> Location:
        key = (facility, country, city)
        loc = self._locations.get(key)
        if loc is None:
            loc = Location(country=country, facility_id=facility, city=city)
            self._locations[key] = loc
        return loc

    def _eid(self, p: _Parcel, source: str) -> str:
        prefix = self._prefix.get(source)
        if prefix is None:
            prefix = self._prefix[source] = source_prefix(source)
        p.n += 1
        return f"{prefix}-{p.pid}-{p.n:02d}"

    def _push(self, buf: Items, p: _Parcel, event: Event, kind: str | None = None) -> None:
        """Queue an event with its arrival time: prompt, or held back in a late batch."""
        rng = self.rng
        t = event.event_time
        if p.phase == p.late_phase and t < p.late_until:
            self.stats.late_uploads += 1
            arrival = p.late_until + int(rng.random() * 2 * MINUTE)
            buf.append(SimEvent(event, arrival, kind or "late"))
        else:
            # Usually seconds to minutes; the lognormal tail gives the odd hour-late send.
            arrival = t + int(20_000 * _EXP_ARRIVAL[int(rng.random() * _NORMAL_SIZE)])
            buf.append(SimEvent(event, arrival, kind or "normal"))
        if rng.random() < self._duplicate_rate:
            self.stats.duplicates += 1
            z = _NORMAL[int(rng.random() * _NORMAL_SIZE)]
            delay = int(5 * MINUTE * math.exp(1.5 * z))
            buf.append(SimEvent(event, arrival + delay, "duplicate"))

    def _scan(
        self,
        buf: Items,
        p: _Parcel,
        t: int,
        scan: Scan,
        source: str,
        loc: Location,
        tz: int,
        *,
        droppable: bool = True,
        kind: str | None = None,
    ) -> ParcelScanned | None:
        if droppable and self.rng.random() < self.scenario.missing_scan_rate:
            self.stats.missing_scans += 1
            return None
        name, code = _SCAN_CODES[scan]
        raw = self._raw.get((source, code))
        if raw is None:
            raw = name if source.startswith("cainiao") else f"{self._prefix_of(source)}{code:02d}"
            self._raw[(source, code)] = raw
        event = _new_scan(self._eid(p, source), p.pid, t, source, tz, loc, scan, raw)
        self._push(buf, p, event, kind)
        return event

    def _prefix_of(self, source: str) -> str:
        prefix = self._prefix.get(source)
        if prefix is None:
            prefix = self._prefix[source] = source_prefix(source)
        return prefix

    def _handover(
        self,
        buf: Items,
        p: _Parcel,
        t: int,
        src: str,
        dst: str,
        source: str,
        loc: Location,
        tz: int,
    ) -> None:
        if self.rng.random() < self.scenario.missing_scan_rate:
            self.stats.missing_scans += 1
            return
        event = _new_handover(self._eid(p, source), p.pid, t, source, tz, loc, src, dst)
        self._push(buf, p, event)

    def _customs(
        self,
        buf: Items,
        p: _Parcel,
        t: int,
        direction: CustomsDirection,
        status: CustomsStatus,
        loc: Location,
        tz: int,
        reason: str | None = None,
        *,
        droppable: bool = False,
    ) -> None:
        if droppable and self.rng.random() < self.scenario.missing_scan_rate:
            self.stats.missing_scans += 1
            return
        event = _new_customs(
            self._eid(p, _CUSTOMS), p.pid, t, _CUSTOMS, tz, loc, direction, status, reason
        )
        self._push(buf, p, event)

    def _void(
        self, buf: Items, p: _Parcel, t: int, target: Event, reason: VoidReason, source: str
    ) -> None:
        self.stats.voids += 1
        event = EventVoided(
            event_id=self._eid(p, source),
            parcel_id=p.pid,
            event_time=t,
            source=source,
            tz_offset_minutes=target.tz_offset_minutes,
            location=target.location,
            voided_event_id=target.event_id,
            reason=reason,
        )
        self._push(buf, p, event, "void")

    def _ln(self, median_hours: float, sigma: float) -> int:
        """Draw a lognormal duration in ms with the given median (hours)."""
        z = _NORMAL[int(self.rng.random() * _NORMAL_SIZE)]
        return int(median_hours * HOUR * math.exp(sigma * z))

    def _stretch(self, t: int, factor: float, lag_hours: float = 0.0) -> float:
        """Dwell multiplier from network load (surge congestion)."""
        load = self.load(t - int(lag_hours * HOUR))
        return 1.0 + self.scenario.congestion * factor * max(0.0, load - 1.0)

    def _start_phase(self, p: _Parcel, phase: int, t: int) -> None:
        p.phase = phase
        if phase == p.late_phase:
            p.late_until = t + self._ln(8.0, 0.6)

    # ----------------------------------------------------------------- journeys

    def _journey(self, idx: int, t_reg: int) -> Journey:
        sc = self.scenario
        rng = self.rng
        origin: OriginCity = self._origins.pick(rng)
        domestic = rng.random() < sc.domestic_share
        dest: Destination | None = None
        if domestic:
            if rng.random() < 0.45:  # regional e-commerce: much of it stays in the region
                dest_city, dest_region = self._dom_regional[origin.domestic_region].pick(rng)
            else:
                dest_city, dest_region = self._dom_cities.pick(rng)
            service = Service(self._svc_dom.pick(rng))
            pid = f"CN{self.tag}{idx:09d}"
        else:
            dest = self._dests.pick(rng)
            dest_city = self._dest_cities[dest.country].pick(rng)
            dest_region = ""
            service = Service(self._svc_intl.pick(rng))
            pid = f"LP{self.tag}{idx:09d}"
        platform: str = self._platforms.pick(rng)
        merchant = f"{platform}:M{origin.city.code}{int(rng.random() * origin.merchants):05d}"
        p = _Parcel(pid, merchant)
        if rng.random() < sc.late_batch_rate:
            p.late_phase = _LATE_PHASES[int(rng.random() * len(_LATE_PHASES))]
            self.stats.late_batches += 1
        explicit = rng.random() < sc.explicit_promise_share
        promised: int | None = None
        if explicit:
            choices = EXPLICIT_PROMISES[(domestic, service.value)]
            promised = choices[int(rng.random() * len(choices))]
        stats = self.stats
        stats.parcels += 1
        if domestic:
            stats.domestic += 1
        stats.lanes.add((f"CN-{origin.city.code}", dest_city.country))

        registration = ParcelRegistered(
            event_id=self._eid(p, platform),
            parcel_id=pid,
            event_time=t_reg,
            source=platform,
            tz_offset_minutes=origin.city.tz,
            location=self._loc("CN", None, origin.city.name),
            merchant_id=merchant,
            origin=Place(country="CN", city=origin.city.name),
            destination=Place(country=dest_city.country, city=dest_city.name),
            service=service,
            promised_hours=promised,
        )
        p.mark("REGISTERED", t_reg)
        buf: Items = []
        if rng.random() < sc.late_registration_rate:
            stats.late_registrations += 1
            buf.append(SimEvent(registration, t_reg + self._ln(6.0, 0.8), "late"))
        else:
            self._push(buf, p, registration)
        effective = registration.effective_promised_hours
        # Hand the buffer over before the long-lived sub-generators start, so this frame
        # does not keep emitted events alive for the parcel's whole journey.
        del registration
        yield t_reg, _drain(buf)
        del buf
        if domestic:
            outcome = yield from self._domestic(
                p, [], t_reg, origin, dest_city, dest_region, service
            )
        else:
            assert dest is not None
            outcome = yield from self._international(p, [], t_reg, origin, dest, dest_city, service)
        delivered_at, returned_at, held, refused, lost, attempts = outcome
        return GroundTruth(
            parcel_id=pid,
            origin_country="CN",
            origin_city=origin.city.name,
            destination_country=dest_city.country,
            destination_city=dest_city.name,
            service=service.value,
            promised_hours=effective,
            explicit_promise=explicit,
            registered_at=t_reg,
            promised_at=t_reg + effective * HOUR,
            delivered_at=delivered_at,
            returned=returned_at is not None,
            returned_at=returned_at,
            customs_held=held,
            customs_refused=refused,
            lost=lost,
            failed_attempts=attempts,
            false_delivery=p.false_delivery,
            milestones=tuple(p.milestones.items()),
        )

    def _origin_leg(
        self, p: _Parcel, buf: Items, t: int, origin: OriginCity, service: Service, carrier: str
    ) -> tuple[int, Location]:
        """Pickup at the merchant and the origin sorting centre; returns departure time."""
        city = origin.city
        tz = city.tz
        rng = self.rng
        self._start_phase(p, PH_ORIGIN, t)
        domestic = carrier != "cainiao"
        median = _PICKUP_HOURS[service] * (0.7 if domestic else 1.0)
        t = _open(t + self._ln(median, 0.6), tz, 7.5, 22.0)
        t += int(rng.random() * 40 * MINUTE)
        here = self._loc("CN", None, city.name)
        p.mark("PICKED_UP", t)
        self._scan(buf, p, t, Scan.PICKED_UP, carrier, here, tz)
        self._handover(buf, p, t, p.merchant, carrier, carrier, here, tz)
        sort_no = 1 + (int(p.pid[-1]) & 1 if city.code in ("SZX", "YIW", "CAN") else 0)
        sort = self._loc("CN", f"CN-{city.code}-SORT{sort_no}", city.name)
        t += self._ln(1.0 if domestic else 1.5, 0.4)
        p.mark("AT_ORIGIN_HUB", t)
        self._scan(buf, p, t, Scan.ORIGIN_HUB_ARRIVED, carrier, sort, tz)
        t += int(self._ln(1.2 if domestic else 1.8, 0.5) * self._stretch(t, 1.0))
        self._scan(buf, p, t, Scan.ORIGIN_HUB_DEPARTED, carrier, sort, tz)
        return t, sort

    def _international(
        self,
        p: _Parcel,
        buf: Items,
        t: int,
        origin: OriginCity,
        dest: Destination,
        city: City,
        service: Service,
    ) -> Generator[tuple[int, Items], None, tuple[int | None, int | None, bool, bool, bool, int]]:
        sc = self.scenario
        rng = self.rng
        var = dest.variability
        cn = 480
        t, _sort = self._origin_leg(p, buf, t, origin, service, "cainiao")
        yield t, _drain(buf)
        if rng.random() < sc.lost_rate * 0.3:
            return None, None, False, False, True, 0

        # Export hub and export customs.
        buf = []
        self._start_phase(p, PH_EXPORT, t)
        hub = EXPORT_HUBS[origin.export_hub]
        exp_loc = self._loc("CN", hub.code, hub.city.name)
        t += int(self._ln(origin.truck_hours_to_export, 0.25) * self._stretch(t, 0.5))
        self._scan(buf, p, t, Scan.ORIGIN_HUB_ARRIVED, "cainiao", exp_loc, cn)
        t += self._ln(0.6, 0.5)
        p.mark("EXPORT_CUSTOMS", t)
        self._customs(
            buf, p, t, CustomsDirection.EXPORT, CustomsStatus.SUBMITTED, exp_loc, cn, droppable=True
        )
        t += int(self._ln(1.5, 0.5) * self._stretch(t, hub.congestion))
        if rng.random() < 0.004 * sc.hold_scale:
            self._customs(
                buf,
                p,
                t,
                CustomsDirection.EXPORT,
                CustomsStatus.HELD,
                exp_loc,
                cn,
                "document check",
            )
            held_export = True
            t += self._ln(14.0, 0.5)
        else:
            held_export = False
        self._customs(buf, p, t, CustomsDirection.EXPORT, CustomsStatus.RELEASED, exp_loc, cn)
        if service is Service.ECONOMY:
            t += self._ln(8.0, 0.5)  # consolidation: waits for a full container
        # Next scheduled departure after a 2 h cut-off; surge load bumps parcels to later flights.
        ready = t + 3 * HOUR // 2
        departures = dest.departures_cn
        if service is Service.EXPRESS and len(departures) == 1:
            departures = (departures[0], (departures[0] + 12) % 24)
        dep = min(_next_local(ready, cn, h) for h in departures)
        load = self.load(dep)
        bump = min(0.6, 0.03 * max(0.0, load - 1.0)) * (0.4 if service is Service.EXPRESS else 1.0)
        while rng.random() < bump:
            dep = min(_next_local(dep + MINUTE, cn, h) for h in departures)
            bump *= 0.6
        t = dep + int(rng.random() * 50 * MINUTE)
        yield t, _drain(buf)

        # Line-haul.
        buf = []
        self._start_phase(p, PH_LINEHAUL, t)
        airline = f"airline:{dest.airlines[int(rng.random() * len(dest.airlines))]}"
        self._handover(buf, p, t, "cainiao", airline, "cainiao", exp_loc, cn)
        p.mark("DEPARTED_ORIGIN", t)
        self._scan(buf, p, t, Scan.LINEHAUL_DEPARTED, airline, exp_loc, cn, droppable=False)
        if rng.random() < sc.lost_rate * 0.3:
            yield t, _drain(buf)
            return None, None, held_export, False, True, 0
        t += self._ln(dest.flight_hours, 0.08) + int(rng.random() * 2 * HOUR)
        gw = dest.gateway
        gw_loc = self._loc(dest.country, f"{dest.country}-{dest.gateway_code}-GW", gw.name)
        t += self._ln(1.5, 0.4)
        p.mark("ARRIVED_DESTINATION", t)
        self._scan(buf, p, t, Scan.DESTINATION_ARRIVED, airline, gw_loc, gw.tz)
        yield t, _drain(buf)

        # Import customs.
        buf = []
        self._start_phase(p, PH_IMPORT, t)
        t += self._ln(1.0, 0.5)
        p.mark("IMPORT_CUSTOMS", t)
        self._customs(
            buf,
            p,
            t,
            CustomsDirection.IMPORT,
            CustomsStatus.SUBMITTED,
            gw_loc,
            gw.tz,
            droppable=True,
        )
        svc_customs = _CUSTOMS_FACTOR[service]
        clear = self._ln(dest.customs_hours * 0.7 * svc_customs, var) * self._stretch(t, 0.8, 40)
        held = held_export
        hold_p = dest.hold_rate * sc.hold_scale * (1.4 if service is Service.ECONOMY else 1.0)
        if rng.random() < hold_p:
            held = True
            t += int(clear * 0.5)
            reason = ("valuation query", "missing invoice", "restricted item", "duty unpaid")[
                int(rng.random() * 4)
            ]
            self._customs(
                buf, p, t, CustomsDirection.IMPORT, CustomsStatus.HELD, gw_loc, gw.tz, reason
            )
            t += self._ln(30.0, 0.6)
            if rng.random() < dest.refusal_rate * sc.refusal_scale:
                self._customs(
                    buf,
                    p,
                    t,
                    CustomsDirection.IMPORT,
                    CustomsStatus.REFUSED,
                    gw_loc,
                    gw.tz,
                    "import not permitted",
                )
                yield t, _drain(buf)
                returned_at = yield from self._return_international(
                    p, t, dest, gw_loc, gw.tz, airline, origin
                )
                return None, returned_at, True, True, False, 0
        else:
            t += int(clear)
        self._customs(buf, p, t, CustomsDirection.IMPORT, CustomsStatus.RELEASED, gw_loc, gw.tz)
        yield t, _drain(buf)

        # Destination hub and last mile.
        buf = []
        self._start_phase(p, PH_LASTMILE, t)
        carrier: str = self._carriers[dest.country].pick(rng)
        svc_lm = _LASTMILE_FACTOR[service]
        t += int(self._ln(dest.lastmile_hours * 0.75 * svc_lm, var) * self._stretch(t, 0.8, 48))
        hub_loc = self._loc(dest.country, f"{dest.country}-{city.code}-HUB1", city.name)
        p.mark("AT_DESTINATION_HUB", t)
        self._hub_arrival(buf, p, t, carrier, hub_loc, city)
        self._handover(buf, p, t, airline, carrier, carrier, hub_loc, city.tz)
        yield t, _drain(buf)
        buf = []
        if rng.random() < sc.lost_rate * 0.4:
            return None, None, held, False, True, 0
        result = yield from self._last_mile(
            p, buf, t, carrier, city, service, dest.pickup_share, dest.attempt_fail, 1
        )
        delivered_at, returning_at, attempts = result
        if returning_at is not None:
            returned_at = yield from self._return_international(
                p, returning_at, dest, hub_loc, city.tz, carrier, origin
            )
            return None, returned_at, held, False, False, attempts
        return delivered_at, None, held, False, False, attempts

    def _hub_arrival(
        self, buf: Items, p: _Parcel, t: int, carrier: str, hub_loc: Location, city: City
    ) -> None:
        """DESTINATION_HUB_ARRIVED, now and then first sent with the wrong facility."""
        rng = self.rng
        if rng.random() < self.scenario.incorrect_data_rate:
            self.stats.incorrect_data += 1
            wrong_loc = self._loc(city.country, f"{city.country}-{city.code}-HUB2", city.name)
            wrong = self._scan(
                buf,
                p,
                t,
                Scan.DESTINATION_HUB_ARRIVED,
                carrier,
                wrong_loc,
                city.tz,
                droppable=False,
                kind="wrong",
            )
            assert wrong is not None
            fix = t + self._ln(2.0, 0.5)
            self._void(buf, p, fix, wrong, VoidReason.INCORRECT_DATA, carrier)
            corrected = ParcelScanned(
                event_id=self._eid(p, carrier),
                parcel_id=p.pid,
                event_time=t,
                source=carrier,
                tz_offset_minutes=city.tz,
                location=hub_loc,
                scan=Scan.DESTINATION_HUB_ARRIVED,
                raw_code=wrong.raw_code,
            )
            buf.append(SimEvent(corrected, max(fix, t) + int(rng.random() * 10 * MINUTE), "normal"))
            return
        self._scan(buf, p, t, Scan.DESTINATION_HUB_ARRIVED, carrier, hub_loc, city.tz)

    def _last_mile(
        self,
        p: _Parcel,
        buf: Items,
        t: int,
        carrier: str,
        city: City,
        service: Service,
        pickup_share: float,
        attempt_fail: float,
        waves_per_day: int,
    ) -> Generator[tuple[int, Items], None, tuple[int | None, int | None, int]]:
        """Out for delivery until delivered, or until a return starts.

        Returns (delivered_at, return_started_at, failed_attempts).
        """
        sc = self.scenario
        rng = self.rng
        tz = city.tz
        here = self._loc(city.country, None, city.name)
        station = self._loc(city.country, f"{city.country}-{city.code}-DS1", city.name)
        to_pickup = rng.random() < pickup_share
        attempts = 0
        domestic = city.country == "CN"
        waves = (7.0, 10.0, 13.0, 16.0, 19.0) if domestic else (7.5, 10.5, 13.5, 16.5)
        t += int(self._ln(1.0 if domestic else 1.5, 0.5) * self._stretch(t, 0.5, 48))
        false_done = False
        while True:
            ofd = min(_next_local(t, tz, h) for h in waves) + int(rng.random() * 75 * MINUTE)
            t = ofd
            p.mark("OUT_FOR_DELIVERY", t)
            self._scan(buf, p, t, Scan.OUT_FOR_DELIVERY, carrier, station, tz)
            if to_pickup:
                t += self._ln(2.5, 0.5)
                point = self._loc(
                    city.country,
                    f"{city.country}-{city.code}-PP{int(rng.random() * 400):03d}",
                    city.name,
                )
                self._scan(
                    buf, p, t, Scan.AVAILABLE_FOR_PICKUP, carrier, point, tz, droppable=False
                )
                yield t, _drain(buf)
                buf = []
                if rng.random() < sc.uncollected_rate:
                    t += (3 if city.country == "CN" else 10) * DAY + self._ln(4.0, 0.5)
                    return None, t, attempts
                collect = self._ln(2.0 if domestic else 6.0, 0.9)
                t = _open(t + collect, tz, 8.0, 22.0) + int(rng.random() * HOUR)
                p.mark("DELIVERED", t)
                self._scan(buf, p, t, Scan.DELIVERED, carrier, point, tz, droppable=False)
                yield t, _drain(buf)
                return t, None, attempts
            # Rounds end by 21:00 local.
            t = min(
                t + self._ln(2.0 if domestic else 2.5, 0.5),
                _next_local(ofd, tz, 21.0) - int(rng.random() * HOUR),
            )
            if not false_done and rng.random() < sc.false_delivery_rate:
                # Marked delivered at the wrong door; the recipient complains, carrier voids it.
                false_done = True
                p.false_delivery = True
                self.stats.false_deliveries += 1
                fake = self._scan(
                    buf,
                    p,
                    t,
                    Scan.DELIVERED,
                    carrier,
                    here,
                    tz,
                    droppable=False,
                    kind="false_delivery",
                )
                assert fake is not None
                t += self._ln(20.0, 0.5)
                self._void(buf, p, t, fake, VoidReason.DID_NOT_OCCUR, carrier)
                yield t, _drain(buf)
                buf = []
                continue
            if rng.random() < sc.door_refusal_rate:
                self._scan(buf, p, t, Scan.DELIVERY_ATTEMPTED, carrier, here, tz, droppable=False)
                attempts += 1
                t += self._ln(1.0, 0.5)
                yield t, _drain(buf)
                return None, t, attempts
            if rng.random() < attempt_fail * sc.attempt_fail_scale:
                attempts += 1
                self._scan(buf, p, t, Scan.DELIVERY_ATTEMPTED, carrier, here, tz, droppable=False)
                yield t, _drain(buf)
                buf = []
                if attempts >= 3 or rng.random() < 0.4:
                    to_pickup = True
                t += HOUR
                continue
            p.mark("DELIVERED", t)
            self._scan(buf, p, t, Scan.DELIVERED, carrier, here, tz, droppable=False)
            self._handover(buf, p, t, carrier, "recipient", carrier, here, tz)
            yield t, _drain(buf)
            return t, None, attempts

    def _return_international(
        self,
        p: _Parcel,
        t: int,
        dest: Destination,
        loc: Location,
        tz: int,
        holder: str,
        origin: OriginCity,
    ) -> Generator[tuple[int, Items], None, int]:
        """Back to the merchant: RETURN_INITIATED abroad, ... DELIVERED at the origin."""
        buf: Items = []
        self._start_phase(p, PH_RETURN, t)
        t += self._ln(6.0, 0.5)
        p.mark("RETURNING", t)
        self._scan(buf, p, t, Scan.RETURN_INITIATED, "cainiao", loc, tz, droppable=False)
        self._handover(buf, p, t, holder, "cainiao", "cainiao", loc, tz)
        yield t, _drain(buf)
        buf = []
        t += self._ln(60.0, 0.4)
        gw = self._loc(dest.country, f"{dest.country}-{dest.gateway_code}-GW", dest.gateway.name)
        self._scan(buf, p, t, Scan.LINEHAUL_DEPARTED, "cainiao", gw, dest.gateway.tz)
        t += self._ln(dest.flight_hours + 30.0, 0.3)
        hub = EXPORT_HUBS[origin.export_hub]
        self._scan(
            buf,
            p,
            t,
            Scan.DESTINATION_ARRIVED,
            "cainiao",
            self._loc("CN", hub.code, hub.city.name),
            480,
        )
        yield t, _drain(buf)
        return (yield from self._return_final(p, t, origin, "cainiao"))

    def _return_final(
        self, p: _Parcel, t: int, origin: OriginCity, carrier: str
    ) -> Generator[tuple[int, Items], None, int]:
        buf: Items = []
        city = origin.city
        sort = self._loc("CN", f"CN-{city.code}-SORT1", city.name)
        t += self._ln(12.0, 0.4)
        self._scan(buf, p, t, Scan.DESTINATION_HUB_ARRIVED, carrier, sort, city.tz)
        t = _next_local(t, city.tz, 9.0) + int(self.rng.random() * 2 * HOUR)
        self._scan(buf, p, t, Scan.OUT_FOR_DELIVERY, carrier, sort, city.tz)
        t += self._ln(3.0, 0.4)
        here = self._loc("CN", None, city.name)
        p.mark("RETURNED", t)
        self._scan(buf, p, t, Scan.DELIVERED, carrier, here, city.tz, droppable=False)
        self._handover(buf, p, t, carrier, p.merchant, carrier, here, city.tz)
        yield t, _drain(buf)
        return t

    def _domestic(
        self,
        p: _Parcel,
        buf: Items,
        t: int,
        origin: OriginCity,
        city: City,
        region: str,
        service: Service,
    ) -> Generator[tuple[int, Items], None, tuple[int | None, int | None, bool, bool, bool, int]]:
        sc = self.scenario
        rng = self.rng
        carrier: str = self._dom_carriers.pick(rng)
        t, sort = self._origin_leg(p, buf, t, origin, service, carrier)
        yield t, _drain(buf)
        buf = []
        self._start_phase(p, PH_LINEHAUL, t)
        same_city = city.code == origin.city.code
        if not same_city:
            hours = domestic_linehaul_hours(origin.domestic_region, region)
            if service is Service.EXPRESS and hours > 8:
                hours = 4.0 + hours * 0.15  # by air
            if service is Service.ECONOMY:
                hours *= 1.4
            t += self._ln(0.5, 0.5)
            p.mark("DEPARTED_ORIGIN", t)
            self._scan(buf, p, t, Scan.LINEHAUL_DEPARTED, carrier, sort, city.tz)
            t += int(self._ln(hours * 0.6, 0.25) * self._stretch(t, 0.4))
            dest_sort = self._loc("CN", f"CN-{city.code}-SORT1", city.name)
            p.mark("ARRIVED_DESTINATION", t)
            self._scan(buf, p, t, Scan.DESTINATION_ARRIVED, carrier, dest_sort, city.tz)
            t += int(self._ln(1.0, 0.5) * self._stretch(t, 1.0, 12))
        else:
            t += self._ln(1.0, 0.4)
        if rng.random() < sc.lost_rate:
            yield t, _drain(buf)
            return None, None, False, False, True, 0
        station_no = 1 + int(rng.random() * 12)
        station = self._loc("CN", f"CN-{city.code}-DS{station_no:02d}", city.name)
        p.mark("AT_DESTINATION_HUB", t)
        self._scan(buf, p, t, Scan.DESTINATION_HUB_ARRIVED, carrier, station, city.tz)
        yield t, _drain(buf)
        buf = []
        self._start_phase(p, PH_LASTMILE, t)
        result = yield from self._last_mile(
            p, buf, t, carrier, city, service, DOMESTIC_PICKUP_SHARE, DOMESTIC_ATTEMPT_FAIL, 2
        )
        delivered_at, returning_at, attempts = result
        if returning_at is not None:
            buf = []
            self._start_phase(p, PH_RETURN, returning_at)
            t = returning_at
            here = self._loc("CN", None, city.name)
            p.mark("RETURNING", t)
            self._scan(buf, p, t, Scan.RETURN_INITIATED, carrier, here, city.tz, droppable=False)
            t += self._ln(6.0, 0.5)
            if not same_city:
                self._scan(buf, p, t, Scan.LINEHAUL_DEPARTED, carrier, here, city.tz)
                t += self._ln(domestic_linehaul_hours(origin.domestic_region, region), 0.3)
            yield t, _drain(buf)
            returned_at = yield from self._return_final(p, t, origin, carrier)
            return None, returned_at, False, False, False, attempts
        return delivered_at, None, False, False, False, attempts


# --------------------------------------------------------------------------- public API


def simulate(
    scenario: Scenario, on_truth: Callable[[GroundTruth], None] | None = None
) -> Iterator[SimEvent]:
    """Events of the scenario in arrival order; `on_truth` gets each parcel's truth when done."""
    return Simulation(scenario, on_truth).events()


def ground_truth(scenario: Scenario) -> list[GroundTruth]:
    """Run the scenario and return every parcel's truth, sorted by parcel id."""
    truths: list[GroundTruth] = []
    for _ in simulate(scenario, truths.append):
        pass
    truths.sort(key=lambda truth: truth.parcel_id)
    return truths


def run(scenario: Scenario) -> tuple[list[SimEvent], list[GroundTruth], SimStats]:
    """Everything in memory (for tests and small runs)."""
    truths: list[GroundTruth] = []
    sim = Simulation(scenario, truths.append)
    events = list(sim.events())
    return events, truths, sim.stats


def truth_path(path: str | Path) -> Path:
    """`events.jsonl` -> `events.truth.jsonl` (other names get `.truth.jsonl` appended)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return path.with_suffix(".truth.jsonl")
    return path.with_name(path.name + ".truth.jsonl")


def write_jsonl(
    scenario: Scenario,
    path: str | Path,
    progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Write events (contract JSON form, arrival order) and `truth_path(path)`; return a summary.

    `progress(registered, completed, events)` is called every few thousand events
    (parcels registered so far, parcels whose journey has ended, events written).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = [0]
    out_of_order = 0
    latest: dict[str, int] = {}
    with path.open("wb") as events_out, truth_path(path).open("wb") as truth_out:

        def on_truth(truth: GroundTruth) -> None:
            done[0] += 1
            truth_out.write(orjson.dumps(truth.to_json()) + b"\n")

        sim = Simulation(scenario, on_truth)
        dumps = orjson.dumps
        lines: list[bytes] = []
        count = 0
        for item in sim.events():
            event = item.event
            lines.append(dumps(event_to_json(event)))
            prev = latest.get(event.parcel_id)
            if prev is not None and event.event_time < prev:
                out_of_order += 1
            elif prev is None or event.event_time > prev:
                latest[event.parcel_id] = event.event_time
            count += 1
            if len(lines) >= 4096:
                events_out.write(b"\n".join(lines) + b"\n")
                lines.clear()
                if progress is not None:
                    progress(sim.stats.parcels, done[0], count)
        if lines:
            events_out.write(b"\n".join(lines) + b"\n")
        if progress is not None:
            progress(sim.stats.parcels, done[0], count)
    summary = sim.stats.to_json()
    summary["out_of_order"] = out_of_order
    summary["events_file"] = str(path)
    summary["truth_file"] = str(truth_path(path))
    return summary
