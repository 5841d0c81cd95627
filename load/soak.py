"""`trackbone bench --soak SECONDS`: does anything in the worker grow with parcels seen?

One worker takes a steady stream of *new* parcels (every chunk simulated with its own
id tag, so the number of parcels seen grows for the whole run) at ``rate`` events/s.
Its resident memory is sampled from ``/proc`` every few seconds. The report gives the
RSS after the warm-up (the first tenth of the run: the interpreter settles)
and at the end, and the growth per 100,000 parcels seen over the run's second half
(the caches and RocksDB's buffers take longer than the warm-up to fill): near zero
when every structure is bounded (the state cache and RocksDB's write buffers and
block cache, here small so that they fill early;
the key-partition memo; the stuck index lives in a table); a leak shows up as a
steady slope.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from load.bench import BenchConfig, Worker, log, produce_paced, simulate_encoded

CHUNK_EVENTS = 20_000
SAMPLE_EVERY_S = 2.0
SOAK_STATE_CACHE = 5_000
"""Decoded states the soaked worker keeps (the default 200,000 would take a soak of
hours to fill: its plateau is what a run of minutes must reach to show a leak)."""
SOAK_ROCKSDB_MB = 8
"""RocksDB memory per table partition in the soak, for the same reason."""


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process, MiB (Linux ``/proc``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def soak(
    config: BenchConfig, bootstrap: str, work_dir: Path, seconds: float, rate: float
) -> dict[str, Any]:
    from dataclasses import replace

    settings = replace(
        config.settings, kafka_bootstrap=bootstrap, topic_prefix=f"soak-{uuid.uuid4().hex[:8]}."
    )
    worker = Worker(bootstrap, settings.topic_prefix, work_dir, config.settings)
    worker.env.setdefault("TRACKBONE_STATE_CACHE_SIZE", str(SOAK_STATE_CACHE))
    worker.env.setdefault("TRACKBONE_ROCKSDB_MEMORY_MB", str(SOAK_ROCKSDB_MB))
    cache = int(worker.env["TRACKBONE_STATE_CACHE_SIZE"])
    worker.start()
    assert worker.proc is not None
    pid = worker.proc.pid
    samples: list[tuple[float, float, int, float]] = []  # (t, rss MiB, parcels, events in)
    parcels = 0
    events = 0
    started = time.monotonic()
    next_sample = started
    try:
        chunk = 0
        while time.monotonic() - started < seconds:
            batch = simulate_encoded(CHUNK_EVENTS, config.seed + chunk, f"S{chunk:04d}")
            chunk += 1
            # Produced in slices, so that memory is sampled throughout.
            step = max(1, int(rate * SAMPLE_EVERY_S))
            for at in range(0, len(batch.messages), step):
                if time.monotonic() - started >= seconds:
                    break
                part = batch.messages[at : at + step]
                asyncio.run(produce_paced(bootstrap, settings, part, rate))
                events += len(part)
                if time.monotonic() >= next_sample:
                    next_sample += SAMPLE_EVERY_S
                    metrics = worker.metrics() or {}
                    rss = rss_mb(pid)
                    if rss is not None:
                        samples.append(
                            (
                                round(time.monotonic() - started, 1),
                                round(rss, 1),
                                parcels + batch.parcels * (at + len(part)) // len(batch.messages),
                                metrics.get("trackbone_events_in_total", 0.0),
                            )
                        )
            parcels += batch.parcels
            log(f"soak: {events:,} events, ~{parcels:,} parcels, RSS {samples[-1][1]} MiB")
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the worker died during the soak:\n{worker.tail()}")
    finally:
        worker.stop()
    rocksdb_mb = int(worker.env["TRACKBONE_ROCKSDB_MEMORY_MB"])
    return {"soak_state_cache_size": cache, "soak_rocksdb_memory_mb": rocksdb_mb} | soak_result(
        samples, seconds, rate, events, parcels
    )


def soak_result(
    samples: list[tuple[float, float, int, float]],
    seconds: float,
    rate: float,
    events: int,
    parcels: int,
) -> dict[str, Any]:
    """The figures of a soak from its samples (pure, tested on its own)."""
    warm = [s for s in samples if s[0] >= seconds / 10] or samples
    first, last = warm[0], warm[-1]
    half = [s for s in samples if s[0] >= seconds / 2] or warm
    seen = half[-1][2] - half[0][2]
    slope = (half[-1][1] - half[0][1]) / seen * 100_000 if seen > 0 else None
    return {
        "soak_s": seconds,
        "soak_rate_offered": rate,
        "soak_events": events,
        "soak_parcels": parcels,
        "soak_rss_start_mb": first[1],
        "soak_rss_end_mb": last[1],
        "soak_rss_max_mb": max(s[1] for s in samples),
        "soak_rss_growth_mb_per_100k_parcels": None if slope is None else round(slope, 2),
        "soak_samples": [
            {"t_s": t, "rss_mb": rss, "parcels": p, "events_in": e} for t, rss, p, e in samples
        ],
    }


def run(config: BenchConfig, seconds: float, rate: float) -> dict[str, Any]:
    import shutil
    import tempfile

    from load.bench import broker_for

    work_dir = Path(tempfile.mkdtemp(prefix="trackbone-soak-"))
    try:
        with broker_for(config.settings, work_dir) as (bootstrap, kafka):
            result = soak(config, bootstrap, work_dir, seconds, rate)
            result["kafka"] = kafka
            return result
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
