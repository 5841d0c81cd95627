"""Per-event cost of the domain work a worker does, on Avro-encoded simulated traffic.

For every event of the simulator's stream (arrival order, as a healthy input looks:
mostly in order, some late batches, repeats and voids) the timed loop does what the
worker does per record: decode its Avro bytes, `step` the parcel's in-memory state,
encode the new state (the table write) when the record was accepted, and build and
encode the ParcelStatus when something visible changed. ETA estimates are not part
of it (eta fields are null). Simulation and Avro encoding of the input are untimed.

Two passes over fresh states: one without inner timers gives the honest total
(`domain_us_per_event`), one with a timer around each part gives the breakdown
(that pass is slightly slower: about 0.1 us per timer read). `decode_state_miss_us`
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


def _legacy_status(state: Any) -> bytes:
    return avro.encode_status(avro.status_from_state(state, None))


def _total_pass(messages: list[bytes], status: Callable[[Any], bytes]) -> tuple[float, float]:
    """Whole per-event work, no inner timers: (wall s, CPU s)."""
    decode_event = avro.decode_event
    applied = Outcome.APPLIED
    states: dict[str, Any] = {}
    get = states.get
    wall, cpu = time.perf_counter(), time.process_time()
    for raw in messages:
        event = decode_event(raw)
        result = step(get(event.parcel_id), event)
        if result.outcome is applied:
            state = result.state
            states[event.parcel_id] = state
            encode_state(state)  # type: ignore[arg-type]
            if result.changed and state.is_visible:  # type: ignore[union-attr]
                status(state)
    return time.perf_counter() - wall, time.process_time() - cpu


def _parts_pass(
    messages: list[bytes], status: Callable[[Any], bytes]
) -> tuple[dict[str, float], dict[str, int], list[bytes], list[Any]]:
    """Same work with a timer around each part: (seconds per part, counts, state bytes)."""
    decode_event = avro.decode_event
    applied = Outcome.APPLIED
    clock = time.perf_counter
    states: dict[str, Any] = {}
    get = states.get
    t_decode = t_step = t_encode = t_status = 0.0
    n_encode = n_status = 0
    written: list[bytes] = []
    statused: list[Any] = []
    for raw in messages:
        t0 = clock()
        event = decode_event(raw)
        t1 = clock()
        result = step(get(event.parcel_id), event)
        t2 = clock()
        t_decode += t1 - t0
        t_step += t2 - t1
        if result.outcome is applied:
            state = result.state
            states[event.parcel_id] = state
            t2 = clock()
            data = encode_state(state)  # type: ignore[arg-type]
            t3 = clock()
            t_encode += t3 - t2
            n_encode += 1
            written.append(data)
            if result.changed and state.is_visible:  # type: ignore[union-attr]
                t3 = clock()
                status(state)
                t_status += clock() - t3
                n_status += 1
                statused.append(state)
    seconds = {"decode": t_decode, "step": t_step, "encode": t_encode, "status": t_status}
    return seconds, {"encode": n_encode, "status": n_status}, written, statused


def _per_call_us(fn: Callable[[Any], Any], items: list[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - started) / max(1, len(items)) * 1e6


def domain_costs(events: int = 50_000, seed: int = 7) -> dict[str, Any]:
    """Time the per-event domain work; JSON-able numbers in microseconds per event.

    `domain_us_per_event` (wall) and `domain_cpu_us_per_event` come from the pass
    without inner timers; the `*_us` parts are per event of the stream (so they add
    up to about the total), `*_us_per_call` per call of that part.
    """
    made = time.perf_counter()
    messages, parcels = simulate_messages(events, seed)
    generate_s = time.perf_counter() - made
    n = len(messages)
    status_name, status = _status_path()
    gc.collect()
    gc.disable()  # the domain code allocates no cycles: keep collector pauses out
    try:
        wall, cpu = _total_pass(messages, status)
        seconds, counts, written, statused = _parts_pass(messages, status)
        sample = written[:: max(1, len(written) // 20_000)]
        miss_us = _per_call_us(decode_state, sample)
        statused = statused[:: max(1, len(statused) // 20_000)]
        legacy_build_us = _per_call_us(lambda s: avro.status_from_state(s, None), statused)
        records = [avro.status_from_state(s, None) for s in statused]
        legacy_encode_us = _per_call_us(avro.encode_status, records)
        fast_status_us = _per_call_us(status, statused)
    finally:
        gc.enable()
    us = {part: round(value / n * 1e6, 2) for part, value in seconds.items()}
    return {
        "benchmark": "domain_costs",
        "python": sys.version.split()[0],
        "events": n,
        "parcels": parcels,
        "seed": seed,
        "generate_s": round(generate_s, 2),
        "domain_us_per_event": round(wall / n * 1e6, 2),
        "domain_cpu_us_per_event": round(cpu / n * 1e6, 2),
        "parts_sum_us_per_event": round(sum(us.values()), 2),
        "decode_us": us["decode"],
        "step_us": us["step"],
        "state_encode_us": us["encode"],
        "status_build_encode_us": us["status"],
        "state_encodes": counts["encode"],
        "statuses": counts["status"],
        "state_encode_us_per_call": round(seconds["encode"] / max(1, counts["encode"]) * 1e6, 2),
        "status_us_per_call": round(seconds["status"] / max(1, counts["status"]) * 1e6, 2),
        "status_path": status_name,
        "status_us_per_call_isolated": round(fast_status_us, 2),
        "legacy_status_from_state_us_per_call": round(legacy_build_us, 2),
        "legacy_encode_status_us_per_call": round(legacy_encode_us, 2),
        "decode_state_miss_us": round(miss_us, 2),
        "state_bytes_mean": round(sum(map(len, sample)) / max(1, len(sample)), 1),
        "goal_domain_us_per_event": 50,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.domain_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events to simulate")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = domain_costs(args.events, args.seed)
    if args.json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:>40}: {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
