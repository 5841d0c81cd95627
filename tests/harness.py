"""Helpers for tests that run real worker processes against the real broker.

Waiting is always on a condition with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``condition`` until truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


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


class WorkerProcess:
    """A `trackbone worker` subprocess with its own data dir and web port."""

    def __init__(self, env: dict[str, str], data_dir: Path, *extra: str) -> None:
        self.env = env
        self.data_dir = data_dir
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"worker-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--web-port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.healthy, timeout=90, what=f"worker on port {self.port} to be healthy")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            status, _ = http_get(self.url + "/health", timeout=1)
        except OSError:
            return False
        return status == 200

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        totals: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(value)
        return totals

    def assigned(self) -> bool:
        """True once the worker owns input partitions (it reports lag for them)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return "trackbone_consumer_lag{" in resp.read().decode()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 60) -> None:
        """Clean stop: SIGTERM, as an operator would."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Crash: SIGKILL the whole process group, no chance to flush or commit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def worker_env(bootstrap: str, prefix: str, app_id: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKBONE_")}
    env |= {
        "TRACKBONE_KAFKA_BOOTSTRAP": bootstrap,
        "TRACKBONE_TOPIC_PREFIX": prefix,
        "TRACKBONE_APP_ID": app_id,
        "TRACKBONE_STUCK_CHECK_INTERVAL_S": "3600",
        "TRACKBONE_SESSION_TIMEOUT_S": "10",
        "PYTHONUNBUFFERED": "1",
    }
    env |= extra
    return env


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    done: Callable[[list[ConsumerRecord]], bool],
    timeout: float,
) -> list[ConsumerRecord]:
    """Read a topic from the beginning until ``done(records)`` holds or the deadline passes."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
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


async def produce_raw(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes]]) -> None:
    """Produce (topic, key, value) triples as they are, bypassing all validation."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(t, key=k, value=v) for t, k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
