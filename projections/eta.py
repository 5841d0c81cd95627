"""ETA projections: a per-lane, per-milestone transit-time model learned from delivered parcels.

The model is a set of DDSketch quantile sketches of *time to delivery* (milliseconds from
reaching a forward milestone until delivery), keyed by (lane level key, milestone). Each
observation is added at every lane level, from the most specific to a global prior:

    ("lane", origin_country, origin_city, destination_country, service)
    ("pair", origin_country, destination_country, service)
    ("service", service, "domestic" | "international")
    ("global",)        only for parcels whose lane is not known yet (not registered)

Why DDSketch: its bucket counts simply add, so merging the statistics learned on different
partitions gives the same model in any order and grouping (counts are integer-valued floats,
exact up to 2**53). We keep no min/max/sum: our value *is* the sparse bucket counts, so
``to_bytes`` is canonical and replay is byte-for-byte deterministic. Counts can also be
retracted exactly, so a stream can correct an observation when a delivered parcel's facts
change (e.g. the DELIVERED scan is voided).

Estimates condition on the time already spent since the milestone (a stuck parcel's ETA moves
later as it keeps waiting): the sketch is restricted to values above the elapsed time, with
mass spread uniformly inside the bucket that straddles it. Pure: no clock, time is a parameter.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

HOUR_MS = 3_600_000

FORWARD_MILESTONES: tuple[str, ...] = (
    "REGISTERED",
    "PICKED_UP",
    "AT_ORIGIN_HUB",
    "EXPORT_CUSTOMS",
    "DEPARTED_ORIGIN",
    "ARRIVED_DESTINATION",
    "IMPORT_CUSTOMS",
    "AT_DESTINATION_HUB",
    "OUT_FOR_DELIVERY",
)
"""Milestones from which an ETA is learned and predicted (DELIVERED and returns excluded)."""
_MILESTONE_RANK = {m: i for i, m in enumerate(FORWARD_MILESTONES)}

DEFAULT_RELATIVE_ACCURACY = 0.01
DEFAULT_MIN_COUNT = 30
DEFAULT_MIN_TAIL = 5.0
"""A level whose sketch has fewer observations beyond the elapsed time than this is skipped
in favour of a coarser one (when that coarser one has more), so stuck parcels are not
estimated from one or two outliers."""

LevelKey = tuple[str, ...]
LEVELS: tuple[str, ...] = ("lane", "pair", "service", "global")
GLOBAL_KEY: LevelKey = ("global",)


# --------------------------------------------------------------------------- lanes


@dataclass(frozen=True, slots=True)
class Lane:
    """The lane facts of a parcel (any may be unknown, e.g. before registration)."""

    origin_country: str | None
    origin_city: str | None
    destination_country: str | None
    service: str | None

    def level_keys(self) -> tuple[LevelKey, ...]:
        """Level keys from most specific to the global prior (cached: runs per event)."""
        return _level_keys(self)


@functools.lru_cache(maxsize=65536)
def _level_keys(lane: Lane) -> tuple[LevelKey, ...]:
    oc, city, dc, svc = (
        lane.origin_country,
        lane.origin_city,
        lane.destination_country,
        lane.service,
    )
    keys: list[LevelKey] = []
    if oc is not None and dc is not None and svc is not None:
        if city is not None:
            keys.append(("lane", oc, city, dc, svc))
        keys.append(("pair", oc, dc, svc))
        keys.append(("service", svc, "domestic" if oc == dc else "international"))
    keys.append(GLOBAL_KEY)
    return tuple(keys)


def encode_level_key(level: LevelKey) -> str:
    """Encode a level key as an unambiguous string (e.g. a table or topic key)."""
    return orjson.dumps(list(level)).decode()


def decode_level_key(text: str | bytes) -> LevelKey:
    parts = orjson.loads(text)
    if not isinstance(parts, list) or not parts or parts[0] not in LEVELS:
        raise ValueError(f"not a level key: {text!r}")
    return tuple(str(p) for p in parts)


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True, slots=True)
class Observation:
    """One delivered parcel's time from reaching `milestone` to delivery."""

    lane: Lane
    milestone: str
    duration_ms: int


class DeliveredFacts(Protocol):
    """The parts of a folded parcel state (projections.fold.ParcelState) the model learns from."""

    @property
    def delivered_at(self) -> int | None: ...
    @property
    def milestone_times(self) -> tuple[tuple[str, int], ...]: ...
    @property
    def registered_at(self) -> int | None: ...
    @property
    def origin_country(self) -> str | None: ...
    @property
    def origin_city(self) -> str | None: ...
    @property
    def destination_country(self) -> str | None: ...
    @property
    def service(self) -> str | None: ...


def lane_of(facts: Any) -> Lane:
    """Return the lane of anything with the ParcelState lane attributes."""
    return Lane(facts.origin_country, facts.origin_city, facts.destination_country, facts.service)


def observation_from(facts: DeliveredFacts) -> list[Observation]:
    """Observations of a delivered parcel: per forward milestone reached, the time to delivery.

    Only registered parcels teach the model (the lane must be known); a parcel that was
    delivered and later returned still counts (its delivery happened). Milestones reached
    after delivery in event time (inconsistent carrier data) are ignored.
    """
    delivered_at = facts.delivered_at
    if delivered_at is None or facts.service is None:
        return []
    lane = lane_of(facts)
    times = dict(facts.milestone_times)
    if "REGISTERED" not in times and facts.registered_at is not None:
        times["REGISTERED"] = facts.registered_at
    out: list[Observation] = []
    for milestone in FORWARD_MILESTONES:
        at = times.get(milestone)
        if at is not None and at <= delivered_at:
            out.append(Observation(lane, milestone, delivered_at - at))
    return out


# --------------------------------------------------------------------------- sketches


@functools.lru_cache(maxsize=8)
def _mapping(relative_accuracy: float) -> LogarithmicMapping:
    return LogarithmicMapping(relative_accuracy)


class _Arrays:
    """Cumulative bucket arrays of one sketch, for fast conditional quantiles."""

    __slots__ = ("counts", "cum", "lowers", "n", "total", "uppers", "values")

    def __init__(self, mapping: LogarithmicMapping, bins: Sequence[tuple[int, int]]) -> None:
        half_gamma = (1.0 + mapping.gamma) / 2.0
        self.values = [mapping.value(k) for k, _ in bins]
        # bucket k holds values in (gamma**(k-1), gamma**k]; value(k) = gamma**k * 2/(1+gamma)
        self.uppers = [v * half_gamma for v in self.values]
        self.lowers = [u / mapping.gamma for u in self.uppers]
        self.counts = [c for _, c in bins]
        cum: list[int] = []
        running = 0
        for c in self.counts:
            running += c
            cum.append(running)
        self.cum = cum
        self.n = len(bins)
        self.total = running

    def mass_at_most(self, x: float) -> float:
        """Observations <= x, spreading each bucket's count uniformly over its range."""
        j = bisect_left(self.uppers, x)
        if j >= self.n:
            return float(self.total)
        before = self.cum[j - 1] if j else 0
        lo = self.lowers[j]
        if x <= lo:
            return float(before)
        return before + self.counts[j] * (x - lo) / (self.uppers[j] - lo)

    def quantile_above(self, base: float, tail: float, elapsed: float, q: float) -> float:
        """Return the q-quantile of the values above `elapsed` (base = mass at or below it)."""
        i = bisect_left(self.cum, base + q * tail)
        if i >= self.n:
            i = self.n - 1
        v = self.values[i]
        return v if v > elapsed else elapsed


class Sketch:
    """An immutable DDSketch of durations (ms); its value is the sparse bucket counts.

    Built on the `ddsketch` library's public pieces (LogarithmicMapping, DenseStore,
    BaseDDSketch) so we keep a reference to the positive store and read its bins without
    private attributes. Never mutated after construction, so caches on it are safe.
    """

    __slots__ = ("_arrays", "_bins", "_dd", "_store", "relative_accuracy")

    def __init__(self, relative_accuracy: float, store: DenseStore) -> None:
        self.relative_accuracy = relative_accuracy
        self._store = store
        self._dd = BaseDDSketch(_mapping(relative_accuracy), store, DenseStore(), 0.0)
        self._bins: tuple[tuple[int, int], ...] | None = None
        self._arrays: _Arrays | None = None

    # -- construction
    @classmethod
    def of(
        cls, durations_ms: Iterable[int], relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    ) -> Sketch:
        return cls(relative_accuracy, DenseStore()).with_values(durations_ms)

    @classmethod
    def from_bins(
        cls, bins: Iterable[tuple[int, int]], relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    ) -> Sketch:
        """Rebuild from sparse (key, count) pairs, as `bins` gives them."""
        pairs = sorted((int(k), int(c)) for k, c in bins)
        if not pairs:
            return cls(relative_accuracy, DenseStore())
        lo = pairs[0][0]
        counts = [0] * (pairs[-1][0] - lo + 1)
        for key, count in pairs:
            if count <= 0 or counts[key - lo]:
                raise ValueError(f"bucket {key}: non-positive or repeated count {count}")
            counts[key - lo] = count
        return cls.from_dense(lo, counts, relative_accuracy)

    def _copy_store(self) -> DenseStore:
        store = DenseStore()
        if self._store.count:
            store.copy(self._store)
        return store

    def with_values(self, durations_ms: Iterable[int]) -> Sketch:
        """Return a new sketch with the durations added (0 ms counts as 1 ms: log buckets)."""
        new = Sketch(self.relative_accuracy, self._copy_store())
        for d in durations_ms:
            if d < 0:
                raise ValueError(f"negative duration {d}")
            new._dd.add(d if d >= 1 else 1)
        return new

    def without_values(self, durations_ms: Iterable[int]) -> Sketch:
        """Return a new sketch without previously added durations (counts subtract exactly)."""
        store = self._copy_store()
        mapping = _mapping(self.relative_accuracy)
        for d in durations_ms:
            store.add(mapping.key(d if d >= 1 else 1), -1.0)
        new = Sketch(self.relative_accuracy, store)
        if any(c < 0 for _, c in new._raw_bins()):
            raise ValueError("retracted a duration that was never added")
        return new

    def merged(self, other: Sketch) -> Sketch:
        """Return the sketch of both sketches' values (DDSketch.merge: bucket counts add)."""
        new = Sketch(self.relative_accuracy, self._copy_store())
        new._dd.merge(other._dd)
        return new

    # -- value
    def _raw_bins(self) -> list[tuple[int, int]]:
        out = []
        offset = self._store.offset
        for i, c in enumerate(self._store.bins):
            if c:
                if not float(c).is_integer():
                    raise ValueError(f"non-integral bucket count {c}")
                out.append((i + offset, int(c)))
        return out

    def dense(self) -> tuple[int, list[int]]:
        """(first key, counts of every key from first to last non-empty): the codec's form."""
        store = self._store
        raw = store.bins
        if not store.count:
            return 0, []
        lo = max(store.min_key - store.offset, 0)  # the added range; trim zeros retractions left
        hi = min(store.max_key - store.offset + 1, len(raw))
        while lo < hi and not raw[lo]:
            lo += 1
        while hi > lo and not raw[hi - 1]:
            hi -= 1
        return lo + store.offset, list(map(int, raw[lo:hi]))

    @classmethod
    def from_dense(
        cls, first_key: int, counts: list[int], relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    ) -> Sketch:
        """Rebuild from `dense()` (validated: counts are non-negative, ends non-empty)."""
        store = DenseStore()
        if counts:
            if not counts[0] or not counts[-1] or min(counts) < 0:
                raise ValueError("dense counts must be non-negative with non-empty ends")
            # DenseStore's documented attributes, set directly: adding bin by bin re-centres
            # the array on every range extension and made decoding ~20x slower.
            store.bins = list(map(float, counts))
            store.offset = store.min_key = first_key
            store.max_key = first_key + len(counts) - 1
            store.count = float(sum(counts))
        return cls(relative_accuracy, store)

    @property
    def bins(self) -> tuple[tuple[int, int], ...]:
        """Canonical sparse (key, count) pairs, ascending keys: independent of add order."""
        if self._bins is None:
            self._bins = tuple(self._raw_bins())
        return self._bins

    @property
    def count(self) -> int:
        return int(self._store.count)

    def quantile(self, q: float) -> float | None:
        """DDSketch's own quantile (value at rank q*(count-1)), None when empty."""
        value: float | None = self._dd.get_quantile_value(q)
        return value

    def _arrays_(self) -> _Arrays:
        arrays = self._arrays
        if arrays is None:
            arrays = self._arrays = _Arrays(_mapping(self.relative_accuracy), self.bins)
        return arrays

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return self.relative_accuracy == other.relative_accuracy and self.bins == other.bins

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sketch(count={self.count}, buckets={len(self.bins)})"


# --------------------------------------------------------------------------- lane statistics


SketchKey = tuple[LevelKey, str]


class StatsSource(Protocol):
    """Anything that can hand out the sketch of a (level key, milestone)."""

    def sketch(self, level: LevelKey, milestone: str) -> Sketch | None: ...


@dataclass(frozen=True, slots=True)
class LaneStats:
    """Sketches per (level key, milestone). An immutable value: operations return new ones.

    It may hold every level key (batch evaluation) or only one (a stream table keyed by
    level key: see `add(..., level=)` and `split_by_level`).
    """

    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    sketches: Mapping[SketchKey, Sketch] = field(default_factory=dict)

    def sketch(self, level: LevelKey, milestone: str) -> Sketch | None:
        return self.sketches.get((level, milestone))

    def levels(self) -> frozenset[LevelKey]:
        return frozenset(level for level, _ in self.sketches)

    def count(self, level: LevelKey, milestone: str) -> int:
        s = self.sketches.get((level, milestone))
        return 0 if s is None else s.count


def empty_stats(relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> LaneStats:
    return LaneStats(relative_accuracy, {})


def _grouped(
    observations: Iterable[Observation], level: LevelKey | None
) -> dict[SketchKey, list[int]]:
    groups: dict[SketchKey, list[int]] = {}
    for obs in observations:
        if obs.milestone not in _MILESTONE_RANK:
            raise ValueError(f"not a forward milestone: {obs.milestone!r}")
        for key in obs.lane.level_keys():
            if level is None or key == level:
                groups.setdefault((key, obs.milestone), []).append(obs.duration_ms)
    return groups


def add(
    stats: LaneStats, observations: Iterable[Observation], *, level: LevelKey | None = None
) -> LaneStats:
    """Stats with the observations added at each of their lane levels (only `level` if given).

    Batch observations: each call copies the outer mapping once.
    """
    groups = _grouped(observations, level)
    if not groups:
        return stats
    sketches = dict(stats.sketches)
    for key, durations in groups.items():
        old = sketches.get(key)
        base = old if old is not None else Sketch(stats.relative_accuracy, DenseStore())
        sketches[key] = base.with_values(durations)
    return LaneStats(stats.relative_accuracy, sketches)


def retract(
    stats: LaneStats, observations: Iterable[Observation], *, level: LevelKey | None = None
) -> LaneStats:
    """Stats with previously added observations removed (exact: counts subtract).

    Lets a stream correct the model when a delivered parcel's facts change, so the model
    stays a function of the final set of delivered parcels. Raises ValueError when retracting
    something that was never added.
    """
    groups = _grouped(observations, level)
    if not groups:
        return stats
    sketches = dict(stats.sketches)
    for key, durations in groups.items():
        old = sketches.get(key)
        if old is None:
            raise ValueError(f"retracting from an empty sketch {key}")
        new = old.without_values(durations)
        if new.count:
            sketches[key] = new
        else:
            del sketches[key]
    return LaneStats(stats.relative_accuracy, sketches)


def merge(a: LaneStats, b: LaneStats) -> LaneStats:
    """Union of two stats (commutative and associative, exactly)."""
    if a.relative_accuracy != b.relative_accuracy:
        raise ValueError(
            f"cannot merge stats of relative accuracy {a.relative_accuracy} "
            f"and {b.relative_accuracy}"
        )
    if not b.sketches:
        return a
    if not a.sketches:
        return b
    sketches = dict(a.sketches)
    for key, sb in b.sketches.items():
        sa = sketches.get(key)
        sketches[key] = sb if sa is None else sa.merged(sb)
    return LaneStats(a.relative_accuracy, sketches)


def split_by_level(stats: LaneStats) -> dict[LevelKey, LaneStats]:
    """One stats value per level key (the layout of a stream table keyed by level key)."""
    parts: dict[LevelKey, dict[SketchKey, Sketch]] = {}
    for key, sketch in stats.sketches.items():
        parts.setdefault(key[0], {})[key] = sketch
    return {lvl: LaneStats(stats.relative_accuracy, sk) for lvl, sk in parts.items()}


@dataclass(frozen=True, slots=True)
class LevelIndex:
    """A StatsSource over stats stored per level key (e.g. decoded values of a global table)."""

    by_level: Mapping[LevelKey, LaneStats]

    def sketch(self, level: LevelKey, milestone: str) -> Sketch | None:
        stats = self.by_level.get(level)
        return None if stats is None else stats.sketches.get((level, milestone))


_FORMAT = 1


def to_bytes(stats: LaneStats) -> bytes:
    """Canonical compact encoding: equal stats give equal bytes, whatever their history.

    JSON: {"v":1,"a":alpha,"s":[[level, milestone, first_key, [count, ...]], ...]}, sketches
    sorted by (level, milestone rank), counts dense from the first to the last non-empty
    bucket (zeros inside are cheap in JSON and decoding needs no per-bucket Python work).
    """
    entries = []
    for level, milestone in sorted(stats.sketches, key=lambda k: (k[0], _MILESTONE_RANK[k[1]])):
        first, counts = stats.sketches[(level, milestone)].dense()
        entries.append([list(level), milestone, first, counts])
    return orjson.dumps({"v": _FORMAT, "a": stats.relative_accuracy, "s": entries})


@functools.lru_cache(maxsize=256)
def from_bytes_cached(data: bytes) -> LaneStats:
    """from_bytes, memoised by content: a stream re-reading unchanged table values skips
    decoding and keeps each sketch's quantile arrays warm (safe: LaneStats is immutable).

    Small on purpose: every update makes a new value, so a large memo fills with stale
    statistics (4,096 of them made a soaked worker's memory grow by ~14 MiB per thousand
    parcels); what is re-read is the current value of each lane level read.
    """
    return from_bytes(data)


def from_bytes(data: bytes) -> LaneStats:
    try:
        doc = orjson.loads(data)
        if doc.get("v") != _FORMAT:
            raise ValueError("unknown format version")
        alpha = float(doc["a"])
        sketches: dict[SketchKey, Sketch] = {}
        for level, milestone, first, counts in doc["s"]:
            if milestone not in _MILESTONE_RANK:
                raise ValueError(f"not a forward milestone: {milestone!r}")
            sketches[(tuple(level), milestone)] = Sketch.from_dense(int(first), counts, alpha)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"not an encoded LaneStats (format {_FORMAT}): {exc}") from exc
    return LaneStats(alpha, sketches)


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True, slots=True)
class Estimate:
    """An ETA: delivery-time quantiles (epoch ms) and the chance of meeting the promise.

    `basis` is the lane level used ("lane", "pair", "service", "global") or "prior" (no
    data: derived from the promise). `extrapolated` is True when the parcel has waited
    longer than any observation of that basis, so the quantiles are a heuristic tail.
    """

    eta_p50_ms: int
    eta_p90_ms: int
    on_time_probability: float | None
    basis: str
    observations: int = 0
    extrapolated: bool = False

    def status_fields(self) -> dict[str, Any]:
        """Return the ParcelStatus ETA fields."""
        return {
            "eta_p50": self.eta_p50_ms,
            "eta_p90": self.eta_p90_ms,
            "on_time_probability": self.on_time_probability,
            "eta_basis": self.basis,
        }


NO_ESTIMATE_MILESTONES = frozenset({"DELIVERED", "RETURNING", "RETURNED"})


def _piecewise(
    xs: Sequence[float], fs: Sequence[float], now: float, deadline: float | None
) -> tuple[float, float, float | None] | None:
    """p50, p90, P(<= deadline) of a piecewise-linear CDF (knots xs, fs) conditioned on > now."""

    def cdf(x: float) -> float:
        if x <= xs[0]:
            return 0.0
        for i in range(1, len(xs)):
            if x <= xs[i]:
                return fs[i - 1] + (fs[i] - fs[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])
        return 1.0

    def inverse(f: float) -> float:
        for i in range(1, len(xs)):
            if f <= fs[i]:
                return xs[i - 1] + (xs[i] - xs[i - 1]) * (f - fs[i - 1]) / (fs[i] - fs[i - 1])
        return xs[-1]

    f_now = cdf(now)
    if f_now >= 1.0:
        return None
    rest = 1.0 - f_now
    p50 = max(inverse(f_now + 0.5 * rest), now)
    p90 = max(inverse(f_now + 0.9 * rest), now)
    prob = None
    if deadline is not None:
        prob = 0.0 if deadline <= now else min(1.0, max(0.0, (cdf(deadline) - f_now) / rest))
    return p50, p90, prob


def _tail_heuristic(
    now: int, elapsed: int, promised_at: int | None, basis: str, count: int
) -> Estimate:
    """Beyond all observations: delivery expected a fraction of the wait so far from now.

    Scale-free guess (log-normal-like tails): p50 = now + 10% of the wait, p90 = now + 50%,
    all mass within one more wait. It keeps the ETA moving later while the parcel is stuck.
    """
    scale = max(elapsed, HOUR_MS)
    xs = (now, now + 0.1 * scale, now + 0.5 * scale, now + scale)
    res = _piecewise(xs, (0.0, 0.5, 0.9, 1.0), now, promised_at)
    assert res is not None
    p50, p90, prob = res
    return Estimate(round(p50), round(p90), prob, basis, count, True)


def prior_estimate(
    *,
    milestone_at: int,
    now_ms: int,
    promised_at: int | None,
    registered_at: int | None = None,
) -> Estimate | None:
    """No data: the promise is the median; p90 is 25% of the promised duration later."""
    if promised_at is None:
        return None
    duration = promised_at - registered_at if registered_at is not None else 24 * HOUR_MS
    duration = max(duration, HOUR_MS)
    start = promised_at - duration
    xs = (start, promised_at, promised_at + 0.25 * duration, promised_at + 0.5 * duration)
    res = _piecewise(xs, (0.0, 0.5, 0.9, 1.0), now_ms, promised_at)
    if res is None:
        return _tail_heuristic(now_ms, now_ms - milestone_at, promised_at, "prior", 0)
    p50, p90, prob = res
    return Estimate(round(p50), round(p90), prob, "prior")


def estimate(
    stats: StatsSource,
    *,
    lane: Lane,
    milestone: str,
    milestone_at: int,
    now_ms: int,
    promised_at: int | None,
    registered_at: int | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    min_tail: float = DEFAULT_MIN_TAIL,
) -> Estimate | None:
    """ETA of a parcel that reached `milestone` at `milestone_at`, seen at `now_ms`.

    eta = milestone_at + quantile(time to delivery | milestone, lane, time to delivery >
    now - milestone_at). The lane level is the most specific one whose sketch has at least
    `min_count` observations and at least `min_tail` of them beyond the elapsed time (else the
    first with `min_count`); without any, the promise-derived prior. A known lane never uses
    the global level (see below); an unregistered parcel has only that one. In a stream pass
    `now_ms = last_event_time` to stay replay-deterministic. None for delivered or returning
    parcels and for parcels with neither data nor a promise.
    """
    if milestone not in _MILESTONE_RANK:
        return None
    elapsed = now_ms - milestone_at
    chosen: tuple[_Arrays, float, float, str] | None = None
    keys = lane.level_keys()
    if len(keys) > 1:
        # A known lane never borrows from the global level: it mixes domestic parcels (about
        # a day) with international ones (about three), and while the model is young it
        # holds only the fast domestic ones; the promise is a far better guess (eta-eval,
        # cold start: PICKED_UP MAE 31 h via global vs 14 h via the prior).
        keys = keys[:-1]
    for level in keys:
        sketch = stats.sketch(level, milestone)
        if sketch is None:
            continue
        arrays = sketch._arrays_()
        if arrays.total < min_count:
            continue
        if elapsed > 0:
            base = arrays.mass_at_most(elapsed)
            tail = arrays.total - base
        else:
            base, tail = 0.0, float(arrays.total)
        if chosen is None or tail > chosen[2]:
            chosen = (arrays, base, tail, level[0])
        if tail >= min_tail:
            break
    if chosen is None:
        return prior_estimate(
            milestone_at=milestone_at,
            now_ms=now_ms,
            promised_at=promised_at,
            registered_at=registered_at,
        )
    arrays, base, tail, basis = chosen
    if tail <= 0.0:
        return _tail_heuristic(now_ms, elapsed, promised_at, basis, arrays.total)
    floor = elapsed if elapsed > 0 else 0
    p50 = arrays.quantile_above(base, tail, floor, 0.5)
    p90 = arrays.quantile_above(base, tail, floor, 0.9)
    prob: float | None = None
    if promised_at is not None:
        deadline = promised_at - milestone_at
        if deadline <= floor:
            prob = 0.0
        else:
            p = (arrays.mass_at_most(deadline) - base) / tail
            prob = 1.0 if p > 1.0 else (0.0 if p < 0.0 else p)
    return Estimate(milestone_at + round(p50), milestone_at + round(p90), prob, basis, arrays.total)


class ParcelFacts(DeliveredFacts, Protocol):
    """The ParcelState fields an estimate reads."""

    @property
    def milestone(self) -> str: ...
    @property
    def last_event_time(self) -> int | None: ...
    @property
    def promised_at(self) -> int | None: ...


def estimate_for(
    stats: StatsSource,
    state: ParcelFacts,
    *,
    now_ms: int | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
) -> Estimate | None:
    """Estimate for a folded parcel state; `now_ms` defaults to its last event time."""
    milestone = str(state.milestone)
    if milestone not in _MILESTONE_RANK:
        return None
    times = state.milestone_times
    milestone_at: int | None = None
    for m, t in times:
        if m == milestone:
            milestone_at = t
            break
    if milestone_at is None:
        milestone_at = (
            state.registered_at if state.registered_at is not None else state.last_event_time
        )
    now = now_ms if now_ms is not None else state.last_event_time
    if milestone_at is None or now is None:
        return None
    return estimate(
        stats,
        lane=lane_of(state),
        milestone=milestone,
        milestone_at=milestone_at,
        now_ms=now,
        promised_at=state.promised_at,
        registered_at=state.registered_at,
        min_count=min_count,
    )


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """A prediction made at a milestone, with the parcel's actual delivery (ground truth)."""

    milestone: str
    eta_p50_ms: int
    eta_p90_ms: int
    promised_at: int | None
    delivered_at: int


def _metrics(records: Sequence[PredictionRecord]) -> dict[str, Any]:
    n = len(records)
    mae = sum(abs(r.eta_p50_ms - r.delivered_at) for r in records) / n / HOUR_MS
    coverage = sum(1 for r in records if r.delivered_at <= r.eta_p90_ms) / n
    promised = [(r.promised_at, r.delivered_at) for r in records if r.promised_at is not None]
    out: dict[str, Any] = {"n": n, "mae_hours": mae, "coverage_p90": coverage}
    if promised:
        nb = len(promised)
        base_mae = sum(abs(p - d) for p, d in promised) / nb / HOUR_MS
        out["baseline_n"] = nb
        out["baseline_mae_hours"] = base_mae
        out["baseline_coverage"] = sum(1 for p, d in promised if d <= p) / nb
        out["mae_reduction"] = (1.0 - mae / base_mae) if base_mae > 0 else None
    return out


def evaluate(predictions: Iterable[PredictionRecord]) -> dict[str, dict[str, Any]]:
    """Per milestone (and "ALL"): MAE of eta_p50 in hours, share delivered by eta_p90, and the
    same for the naive baseline (the promise), plus the relative MAE reduction.
    """
    by_milestone: dict[str, list[PredictionRecord]] = {}
    everything: list[PredictionRecord] = []
    for r in predictions:
        by_milestone.setdefault(r.milestone, []).append(r)
        everything.append(r)
    order = {m: i for i, m in enumerate(FORWARD_MILESTONES)}
    result = {
        m: _metrics(rs)
        for m, rs in sorted(by_milestone.items(), key=lambda kv: order.get(kv[0], 99))
    }
    if everything:
        result["ALL"] = _metrics(everything)
    return result
