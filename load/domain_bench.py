"""Per-event cost of the domain work a worker does, on Avro-encoded simulated traffic.

For every event of the simulator's stream (arrival order, as a healthy input looks:
mostly in order, some late batches, repeats and voids) the timed loop does what the
worker does per record: decode its Avro bytes, `step` the parcel's in-memory state,
encode the new state (the table write) when the record was accepted, and build and
encode the ParcelStatus when something visible changed. ETA estimates are not part
of it (eta fields are null). Simulation and Avro encoding of the input are untimed.

Each part is timed by difference between passes without timers inside the loop (see
`domain_costs`), in CPU time because the machine may be shared. `decode_state_miss_us`
is the cost of decoding a stored state (a cache miss), over the states written.

    python -m load.domain_bench --events 50000 [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import orjson

from projections.fold import Outcome, decode_state, encode_state, step
from streams import avro

_EVENTS_PER_PARCEL_GUESS = 14
"""As load/bench.py: sizes the simulated scenario for the requested event count."""


def simulate_messages(events: int, seed: int) -> tuple[list[bytes], int]:
    """Avro single-object bytes of at least `events` simulated events, in arrival order."""
    from load.simulator import Scenario, simulate

    parcels = max(1, math.ceil(events / _EVENTS_PER_PARCEL_GUESS))
    scenario = Scenario(
        parcels=parcels, seed=seed, id_tag=f"D{seed}", registration_hours=max(24.0, parcels / 500)
    )
    produced = []
    for item in simulate(scenario):
        produced.append(item.event)
        if len(produced) >= events:
            break
    return [avro.encode_event(e) for e in produced], len({e.parcel_id for e in produced})


def _status_path() -> tuple[str, Callable[[Any], bytes]]:
    """The cheapest status path this code offers (`status_bytes` where it exists)."""
    fast = getattr(avro, "status_bytes", None)
    if fast is not None:
        return "status_bytes", lambda state: fast(state, None)
    status_from_state, encode_status = avro.status_from_state, avro.encode_status
    return "status_from_state+encode_status", lambda state: encode_status(
        status_from_state(state, None)
    )


def _pass(messages: list[bytes], status: Callable[[Any], bytes], parts: int) -> tuple[float, float]:
    """Run the first `parts` parts of the per-event work over fresh states: (wall s, CPU s).

    No timers inside the loop: the cost of a part is the difference between passes
    (see `domain_costs`).
    """
    decode_event = avro.decode_event
    applied = Outcome.APPLIED
    states: dict[str, Any] = {}
    get = states.get
    wall, cpu = time.perf_counter(), time.process_time()
    if parts == 1:
        for raw in messages:
            decode_event(raw)
    elif parts == 2:
        for raw in messages:
            event = decode_event(raw)
            result = step(get(event.parcel_id), event)
            if result.outcome is applied:
                states[event.parcel_id] = result.state
    else:
        with_status = parts >= 4
        for raw in messages:
            event = decode_event(raw)
            result = step(get(event.parcel_id), event)
            if result.outcome is applied:
                state = result.state
                states[event.parcel_id] = state
                encode_state(state)  # type: ignore[arg-type]
                if with_status and result.changed and state.is_visible:  # type: ignore[union-attr]
                    status(state)
    return time.perf_counter() - wall, time.process_time() - cpu


def _outputs(messages: list[bytes]) -> tuple[list[bytes], list[Any]]:
    """Untimed: every state written and every state that gets a status, in stream order."""
    applied = Outcome.APPLIED
    states: dict[str, Any] = {}
    written: list[bytes] = []
    statused: list[Any] = []
    for raw in messages:
        event = avro.decode_event(raw)
        result = step(states.get(event.parcel_id), event)
        if result.outcome is applied:
            state = result.state
            states[event.parcel_id] = state
            written.append(encode_state(state))  # type: ignore[arg-type]
            if result.changed and state.is_visible:  # type: ignore[union-attr]
                statused.append(state)
    return written, statused


def _per_call_us(fn: Callable[[Any], Any], items: list[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - started) / max(1, len(items)) * 1e6


def constructor_costs(calls: int = 200_000) -> dict[str, float]:
    """Per-call us of building a ParcelState and a scan: generated builder vs plain code.

    `positional_constructor` (projections.events) builds its function with ``exec``;
    the alternatives are the dataclass ``__init__`` and a plain loop over the slot
    setters. The generated builders stay only as long as this says they pay.
    """
    import dataclasses

    from projections import events
    from projections import fold as fold_module
    from projections.events import Location, ParcelScanned, Scan
    from projections.fold import fold

    # (named so since this branch; before, the same builder was fold._fast_constructor)
    builder_of = getattr(events, "positional_constructor", None) or fold_module._fast_constructor

    scan = ParcelScanned(
        event_id="e1",
        parcel_id="P1",
        event_time=1_794_355_200_000,
        tz_offset_minutes=480,
        source="yto",
        location=Location(country="CN", facility_id="CN-HAN-HUB", city="Hangzhou"),
        scan=Scan.PICKED_UP,
        raw_code="C00",
    )
    state = fold([scan])
    if state is None:
        raise AssertionError("a scan alone makes a visible state")
    out: dict[str, float] = {}
    subjects: tuple[tuple[str, Any], ...] = (("state", state), ("scan", scan))
    for label, obj in subjects:
        cls = type(obj)
        specs = dataclasses.fields(cls)
        values = [getattr(obj, f.name) for f in specs]
        kwargs = {f.name: getattr(obj, f.name) for f in specs if f.init}
        setters = [getattr(cls, f.name).__set__ for f in specs]

        def setter_loop(*args: Any, cls: type = cls, setters: list[Any] = setters) -> Any:
            built: Any = object.__new__(cls)
            for setter, value in zip(setters, args, strict=True):
                setter(built, value)
            return built

        ways: dict[str, tuple[Callable[..., Any], list[Any], dict[str, Any]]] = {
            "exec_builder": (builder_of(cls), values, {}),
            "init": (cls, [], kwargs),
            "setter_loop": (setter_loop, values, {}),
        }
        for way, (build, args, kw) in ways.items():
            if build(*args, **kw) != obj:
                raise AssertionError(f"{way} does not rebuild the {label}")
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(calls):
                    build(*args, **kw)
                best = min(best, time.perf_counter() - started)
            out[f"{label}_{way}_us"] = round(best / calls * 1e6, 3)
    return out


def domain_costs(
    events: int = 50_000, seed: int = 7, repeat: int = 3, constructor_calls: int = 200_000
) -> dict[str, Any]:
    """Time the per-event domain work; JSON-able numbers in microseconds per event.

    Four passes over the stream, each on fresh states and without timers inside the
    loop: decode; decode + step; + state encode; + status. Each pass runs `repeat`
    times and the fastest counts (interference from other processes only adds). A
    part's cost is the difference between consecutive passes, per event of the stream
    (so the parts add up to the total), in CPU time, which other processes on a
    shared machine do not inflate; `domain_wall_us_per_event` is the wall-clock total.
    """
    made = time.perf_counter()
    messages, parcels = simulate_messages(events, seed)
    generate_s = time.perf_counter() - made
    n = len(messages)
    status_name, status = _status_path()
    written, statused = _outputs(messages)
    sample = written[:: max(1, len(written) // 20_000)]
    statuses = len(statused)
    statused = statused[:: max(1, len(statused) // 20_000)]
    gc.collect()
    gc.disable()  # the domain code allocates no cycles: keep collector pauses out
    try:
        walls, cpus = [], []
        for parts in (1, 2, 3, 4):
            runs = [_pass(messages, status, parts) for _ in range(repeat)]
            walls.append(min(run[0] for run in runs))
            cpus.append(min(run[1] for run in runs))
        miss_us = min(_per_call_us(decode_state, sample) for _ in range(repeat))
        legacy_build_us = _per_call_us(lambda s: avro.status_from_state(s, None), statused)
        records = [avro.status_from_state(s, None) for s in statused]
        legacy_encode_us = _per_call_us(avro.encode_status, records)
        status_us = min(_per_call_us(status, statused) for _ in range(repeat))
    finally:
        gc.enable()
    cpu_us = [round(value / n * 1e6, 2) for value in cpus]
    part_us = [cpu_us[0], *(round(b - a, 2) for a, b in pairwise(cpu_us))]
    return {
        "benchmark": "domain_costs",
        "python": sys.version.split()[0],
        "events": n,
        "parcels": parcels,
        "seed": seed,
        "repeat": repeat,
        "generate_s": round(generate_s, 2),
        "domain_us_per_event": cpu_us[3],
        "domain_wall_us_per_event": round(walls[3] / n * 1e6, 2),
        "decode_us": part_us[0],
        "step_us": part_us[1],
        "state_encode_us": part_us[2],
        "status_build_encode_us": part_us[3],
        "state_encodes": len(written),
        "statuses": statuses,
        "status_path": status_name,
        "status_us_per_call": round(status_us, 2),
        "legacy_status_from_state_us_per_call": round(legacy_build_us, 2),
        "legacy_encode_status_us_per_call": round(legacy_encode_us, 2),
        "decode_state_miss_us": round(miss_us, 2),
        "state_bytes_mean": round(sum(map(len, sample)) / max(1, len(sample)), 1),
        "goal_domain_us_per_event": 50,
        "constructors": constructor_costs(constructor_calls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.domain_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events to simulate")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pass (fastest counts)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = domain_costs(args.events, args.seed, args.repeat)
    if args.json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:>40}: {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
