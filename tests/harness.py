"""Helpers for tests that run real worker processes against the real broker.

Waiting is always on a condition with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from load.worker_process import SinkProcess, WorkerError, wait_until
from load.worker_process import WorkerProcess as BaseWorkerProcess
from load.worker_process import worker_env as base_worker_env


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """``wait_until`` for tests: a missed deadline is an assertion failure."""
    try:
        return wait_until(condition, timeout, what, every)
    except WorkerError as exc:
        raise AssertionError(str(exc)) from None


def http_get(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        body = err.read()
        status = err.code
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body.decode("utf-8", "replace")


class WorkerProcess(BaseWorkerProcess):
    """The shared worker child, with the readings tests assert on."""

    def metrics(self) -> dict[str, float]:
        return self.client.metrics()

    def assigned(self) -> bool:
        """True once the worker owns input partitions (it reports lag for them)."""
        return any(name.startswith("trackbone_consumer_lag{") for name in self.metrics())


__all__ = ["SinkProcess", "WorkerProcess", "wait_for", "worker_env"]


def worker_env(bootstrap: str, prefix: str, app_id: str, **extra: str) -> dict[str, str]:
    """A worker's environment for tests: quick failover, no stuck scans unless asked."""
    return base_worker_env(
        bootstrap,
        prefix,
        app_id,
        **{"TRACKBONE_STUCK_CHECK_INTERVAL_S": "3600", "TRACKBONE_SESSION_TIMEOUT_S": "10"} | extra,
    )


async def consume(
    bootstrap: str,
    topics: list[str],
    expected: int,
    timeout_s: float = 60.0,
    security: dict[str, Any] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read the topics from the beginning until ``expected`` records (then one more poll)."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **(security or {}),
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
        # one more short poll: more records than sent would be a bug too
        for part in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(part)
    finally:
        await consumer.stop()
    return records


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    done: Callable[[list[ConsumerRecord]], bool],
    timeout: float,
    security: dict[str, Any] | None = None,
) -> list[ConsumerRecord]:
    """Read a topic from the beginning until ``done(records)`` holds or the deadline passes."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **(security or {}),
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for recs in batch.values():
                records.extend(recs)
            if done(records):
                return records
    finally:
        await consumer.stop()
    return records


async def produce_raw(
    bootstrap: str,
    messages: Iterable[tuple[str, bytes | None, bytes]],
    security: dict[str, Any] | None = None,
) -> None:
    """Produce (topic, key, value) triples as they are, bypassing all validation."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **(security or {}))
    await producer.start()
    try:
        futures = [await producer.send(t, key=k, value=v) for t, k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
