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
