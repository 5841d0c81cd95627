"""Worker throughput for the benchmark: N worker processes of one app id on a backlog.

The workers start on a fresh, empty topic prefix and are waited for until the group
has given every one of them partitions (otherwise the rate would include a
rebalance), then the events are produced as fast as the producer goes. The rate is
events / (time the workers' summed ``events_in`` reaches every event - first send),
read from their metrics every 50 ms; the producer outruns the workers, so they read
a backlog. The sink does not run: this is the worker alone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from load.worker_process import WorkerError, WorkerProcess, wait_until, worker_env
from streams.settings import Settings


def _metrics(worker: WorkerProcess) -> dict[str, float]:
    try:
        return worker.client.metrics()
    except (OSError, WorkerError):
        return {}


def cpu_us_per_event(
    before: Sequence[float | None], after: Sequence[float | None], events: int
) -> float | None:
    """Worker CPU (user + system, all threads) per event between two readings."""
    spent = 0.0
    for a, b in zip(after, before, strict=True):
        if a is None or b is None:
            return None
        spent += a - b
    return round(spent / events * 1e6, 1) if events else None


def cpu_seconds(worker: WorkerProcess) -> float | None:
    return _metrics(worker).get("process_cpu_seconds_total")


def _assigned(worker: WorkerProcess) -> bool:
    return any(name.startswith("trackbone_consumer_lag{") for name in _metrics(worker))


def worker_phase(
    bootstrap: str,
    settings: Settings,
    messages: Sequence[tuple[str, bytes, bytes]],
    work_dir: Path,
    *,
    workers: int = 1,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Run `workers` processes with one app id over `messages`; their combined rate."""
    from load.bench import produce

    tag = uuid.uuid4().hex[:8]
    topics = replace(settings, kafka_bootstrap=bootstrap, topic_prefix=f"bench-wk{workers}-{tag}.")
    env = worker_env(bootstrap, topics.topic_prefix, f"bench-wk-{tag}")
    env["TRACKBONE_PARTITIONS"] = str(settings.partitions)
    env["TRACKBONE_STUCK_CHECK_INTERVAL_S"] = "3600"
    if settings.kafka_home:
        env["TRACKBONE_KAFKA_HOME"] = str(settings.kafka_home)
    procs = [
        WorkerProcess(env, work_dir / f"wk{workers}-{tag}-{i}", log=work_dir / f"wk-{tag}-{i}.log")
        for i in range(workers)
    ]
    try:
        for proc in procs:
            proc.start()
        wait_until(
            lambda: all(_assigned(p) for p in procs), 180, f"{workers} worker(s) to own partitions"
        )
        cpu_before = [cpu_seconds(p) for p in procs]
        _, first_send = asyncio.run(produce(bootstrap, topics, messages))
        total = len(messages)
        deadline = time.monotonic() + timeout_s
        seen = 0.0
        while time.monotonic() < deadline:
            seen = sum(_metrics(p).get("trackbone_events_in_total", 0.0) for p in procs)
            if seen >= total:
                break
            if any(p.proc is not None and p.proc.poll() is not None for p in procs):
                raise WorkerError(f"a worker died:\n{procs[0].tail()}")
            time.sleep(0.05)  # poll interval of a deadline-bounded wait
        done = time.time()
        rss = [_metrics(p).get("process_resident_memory_bytes") for p in procs]
        cpu_after = [cpu_seconds(p) for p in procs]
    finally:
        for proc in procs:
            proc.stop()
    seconds = done - first_send
    return {
        "workers": workers,
        "events": total,
        "events_in": int(seen),
        "complete": seen >= total,
        "seconds": round(seconds, 3),
        "events_per_s": round(seen / seconds, 1) if seconds > 0 else None,
        "rss_mb": [round(r / 1e6, 1) if r else None for r in rss],
        "cpu_us_per_event": cpu_us_per_event(cpu_before, cpu_after, int(seen)),
    }
