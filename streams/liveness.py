"""Whether a worker folds the input waiting for it.

A worker can be up, answer HTTP and fold nothing: a crashed Faust fetcher once left
one so (the seek during a rebalance, `streams.batching`), with its lag growing and
no error after the first. Liveness here is progress: input waiting and no batch
folded for ``stall_after_s`` is a stall, reported by ``/health`` (503) and the log,
so a supervisor's probe can restart the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Liveness:
    """The time of the last progress, against the input waiting."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self.clock = clock
        self.last_progress = clock()

    def progressed(self) -> None:
        """A batch was folded, or partitions moved (a new start for the wait)."""
        self.last_progress = self.clock()

    def stalled_s(self, waiting: int) -> float | None:
        """Seconds without progress while ``waiting`` records wait; None when not stalled."""
        idle = self.clock() - self.last_progress
        if waiting > 0 and idle >= self.stall_after_s:
            return idle
        return None
