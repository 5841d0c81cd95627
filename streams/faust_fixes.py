"""A fix to faust-streaming 0.15.3 that at-least-once delivery depends on.

``ProducerBuffer.flush`` (called before every offset commit) gives up as soon as
one buffered message takes longer than 0.1 s to be handed to the Kafka client,
so under load Faust can commit offsets whose changelog and output records were
never sent; a crash then loses them (seen here: a SIGKILL'd worker's successor
missed voids). This makes ``flush`` wait until the buffer is empty and nothing
is being handed over, before the client's own flush runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.producer import ProducerBuffer

_original_send_pending = ProducerBuffer._send_pending


async def _send_pending(self: Any, fut: Any) -> None:
    self._trackbone_inflight = getattr(self, "_trackbone_inflight", 0) + 1
    try:
        await _original_send_pending(self, fut)
    finally:
        self._trackbone_inflight -= 1


async def _flush(self: Any) -> None:
    while self.size or getattr(self, "_trackbone_inflight", 0):
        if self.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
        except TimeoutError:
            continue


def apply() -> None:
    """Idempotent: patch the buffer class once per process."""
    if ProducerBuffer.flush is not _flush:
        ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
        ProducerBuffer.flush = _flush  # type: ignore[method-assign]
