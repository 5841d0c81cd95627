"""Outputs: a batch is acknowledged only once it and every batch before it are stored."""

from __future__ import annotations

import asyncio

import pytest

from streams.outputs import OutputError, Outputs


async def test_acks_follow_submission_order_whatever_order_kafka_confirms_in():
    outputs = Outputs("127.0.0.1:1", client_id="test")
    loop = asyncio.get_running_loop()
    first, second, third = (loop.create_future() for _ in range(3))
    acked: list[str] = []
    outputs.ack_when_stored(first, lambda: acked.append("first"))
    outputs.ack_when_stored(second, lambda: acked.append("second"))
    outputs.ack_when_stored(third, lambda: acked.append("third"))
    second.set_result(None)
    await asyncio.sleep(0)  # let done-callbacks run
    assert acked == []  # the second is stored, but the first is still in flight
    first.set_result(None)
    await asyncio.sleep(0)
    assert acked == ["first", "second"]
    third.set_result(None)
    await outputs.settle(0)
    assert acked == ["first", "second", "third"]


async def test_a_failed_batch_is_never_acked_and_holds_back_the_rest():
    outputs = Outputs("127.0.0.1:1", client_id="test")
    loop = asyncio.get_running_loop()
    failed, later = loop.create_future(), loop.create_future()
    acked: list[str] = []
    outputs.ack_when_stored(failed, lambda: acked.append("failed"))
    outputs.ack_when_stored(later, lambda: acked.append("later"))
    later.set_result(None)
    failed.set_exception(RuntimeError("broker gone"))
    with pytest.raises(OutputError, match="broker gone"):
        await outputs.settle(0)
    assert acked == []


async def test_settle_waits_only_beyond_the_in_flight_limit():
    outputs = Outputs("127.0.0.1:1", client_id="test", max_in_flight=1)
    loop = asyncio.get_running_loop()
    pending = loop.create_future()
    outputs.ack_when_stored(pending, lambda: None)
    await asyncio.wait_for(outputs.settle(), timeout=1)  # one in flight is allowed
    second = loop.create_future()
    outputs.ack_when_stored(second, lambda: None)
    waiter = asyncio.ensure_future(outputs.settle())
    await asyncio.sleep(0)
    assert not waiter.done()
    pending.set_result(None)
    await asyncio.wait_for(waiter, timeout=1)
