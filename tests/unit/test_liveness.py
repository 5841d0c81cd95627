"""A worker with input waiting and nothing folded for a while is stalled."""

from __future__ import annotations

from streams.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_input_waiting_and_no_progress_for_the_limit_is_a_stall() -> None:
    clock = Clock()
    liveness = Liveness(60, clock)
    clock.now += 59
    assert liveness.stalled_s(waiting=10) is None  # not yet
    clock.now += 1
    assert liveness.stalled_s(waiting=10) == 60
    liveness.progressed()
    assert liveness.stalled_s(waiting=10) is None


def test_an_idle_worker_with_nothing_waiting_is_not_stalled() -> None:
    clock = Clock()
    liveness = Liveness(60, clock)
    clock.now += 3600
    assert liveness.stalled_s(waiting=0) is None


def test_a_partition_folded_past_a_commit_that_does_not_move_is_a_commit_stall() -> None:
    clock = Clock()
    liveness = Liveness(60, clock)
    assert liveness.uncommitted_s({"p0": (99, 50), "p1": (9, 10)}) is None
    clock.now += 30
    assert liveness.uncommitted_s({"p0": (149, 100), "p1": (9, 10)}) is None  # p0 moved
    clock.now += 59
    assert liveness.uncommitted_s({"p0": (199, 100), "p1": (9, 10)}) is None  # not yet
    clock.now += 1
    # p1 is all committed (its commit is the next offset to read): never a stall
    assert liveness.uncommitted_s({"p0": (199, 100), "p1": (9, 10)}) == (60, 100)
    assert liveness.uncommitted_s({"p0": (199, 200), "p1": (9, 10)}) is None


def test_partitions_moving_start_every_commit_wait_again() -> None:
    clock = Clock()
    liveness = Liveness(60, clock)
    liveness.uncommitted_s({"p0": (99, None)})
    clock.now += 61
    assert liveness.uncommitted_s({"p0": (99, None)}) == (61, 100)
    liveness.moved()
    assert liveness.uncommitted_s({"p0": (99, None)}) is None
