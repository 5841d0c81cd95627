"""Whether a worker folds the input waiting for it.

A worker can be up, answer HTTP and fold nothing: a crashed Faust fetcher once left
one so (the seek during a rebalance, `streams.batching`), with its lag growing and
no error after the first. Liveness here is progress: input waiting and no batch
folded for ``stall_after_s`` is a stall, reported by ``/health`` (503) and the log,
so a supervisor's probe can restart the worker.

Commits are progress too. A partition folded past its committed offset whose commit
has not moved for ``stall_after_s`` is a commit stall: nothing is lost, but every
restart re-delivers more of it (seen here once after partitions moved, when Faust
kept a refused commit as done, `streams.batching`). A restart commits it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping


class Liveness:
    """The time of the last progress, against the input waiting; commits per partition."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self.clock = clock
        self.last_progress = clock()
        self.commits: dict[Hashable, tuple[int | None, float]] = {}
        """Per partition: its committed offset when last seen to move, and when."""

    def progressed(self) -> None:
        """A batch was folded, or partitions moved (a new start for the wait)."""
        self.last_progress = self.clock()

    def moved(self) -> None:
        """Partitions moved: every commit wait starts again."""
        self.commits.clear()
        self.progressed()

    def stalled_s(self, waiting: int) -> float | None:
        """Seconds without progress while ``waiting`` records wait; None when not stalled."""
        idle = self.clock() - self.last_progress
        if waiting > 0 and idle >= self.stall_after_s:
            return idle
        return None

    def uncommitted_s(
        self, partitions: Mapping[Hashable, tuple[int | None, int | None]]
    ) -> tuple[float, int] | None:
        """(seconds, records) of the longest commit stall; None when commits follow.

        ``partitions`` maps each partition to (last folded offset, committed offset:
        the next to read). A partition counts once it is folded past its commit and
        the commit has not moved since ``stall_after_s``.
        """
        now = self.clock()
        worst: tuple[float, int] | None = None
        for tp, (folded, committed) in partitions.items():
            seen = self.commits.get(tp)
            if seen is None or seen[0] != committed:
                self.commits[tp] = seen = (committed, now)
            behind = 0 if folded is None else folded + 1 - (committed or 0)
            idle = now - seen[1]
            if behind > 0 and idle >= self.stall_after_s and (worst is None or idle > worst[0]):
                worst = (idle, behind)
        return worst
