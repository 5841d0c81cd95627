"""The sink service without Kafka: restarts with backoff, and its HTTP answers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from load.worker_process import parse_metrics
from streams import api_keys, sink_service
from streams.errors import UsageError
from streams.settings import Settings
from streams.sink_service import SinkService


class FlakyRunner:
    """Fails ``failures`` times, then runs until cancelled."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"ClickHouse down ({self.calls})")
        self.running.set()
        await asyncio.Event().wait()


async def test_the_sink_loop_restarts_after_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink_service, "RESTART_INITIAL_S", 0.01)
    service = SinkService(Settings(), "127.0.0.1:1")
    runner = FlakyRunner(failures=3)
    service.runner = runner  # type: ignore[assignment]
    task = asyncio.create_task(service.run_sink())
    try:
        await asyncio.wait_for(runner.running.wait(), 30)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert runner.calls == 4
    assert service.restarts == 3
    assert service.last_error is not None and "ClickHouse down (3)" in service.last_error


async def test_health_metrics_stats_and_refused_bodies(tmp_path: Path) -> None:
    service = SinkService(Settings(data_dir=tmp_path), "127.0.0.1:1")
    async with TestClient(TestServer(service.web_app())) as client:
        health = await client.get("/health")
        assert health.status == 503  # not migrated, no consumer yet
        assert (await health.json())["pid"] == os.getpid()

        metrics = parse_metrics(await (await client.get("/metrics")).text())
        assert metrics["trackbone_sink_batches_total"] == 0
        assert metrics["trackbone_sink_restarts_total"] == 0

        stats = await (await client.get("/stats")).json()
        assert stats["clickhouse_visible_ms"] == []
        assert stats["sink"]["rows_written"] == 0 and stats["sink"]["ready"] is False

        bad = await client.post("/query", data=b"not json")
        assert bad.status == 400
        shape = await client.post("/query", json={"query": "SELECT 1"})
        assert shape.status == 400
    assert not (tmp_path / "clickhouse").exists()  # refused without opening the engine


async def test_stats_and_query_need_an_api_key_and_bodies_are_bounded(tmp_path: Path) -> None:
    key = api_keys.new_key()
    settings = Settings(
        data_dir=tmp_path, api_keys=(api_keys.digest(key),), web_max_body_bytes=1024
    )
    service = SinkService(settings, "127.0.0.1:1")
    async with TestClient(TestServer(service.web_app())) as client:
        assert (await client.get("/stats")).status == 401
        assert (await client.get("/stats", headers={"X-API-Key": "wrong"})).status == 403
        assert (await client.get("/stats", headers={"X-API-Key": key})).status == 200
        bearer = {"Authorization": f"Bearer {key}"}
        assert (await client.post("/query", json={"sql": "SELECT 1"})).status == 401
        assert (await client.post("/query", data=b"x", headers=bearer)).status == 400
        big = await client.post("/query", data=b"x" * 4096, headers=bearer)
        assert big.status == 413
        assert (await client.get("/health")).status == 503  # health stays open


def test_a_sink_beyond_loopback_needs_keys() -> None:
    with pytest.raises(UsageError, match="TRACKBONE_API_KEYS"):
        api_keys.check_bind(Settings(web_host="0.0.0.0"), "sink")
    api_keys.check_bind(Settings(web_host="127.0.0.1"), "sink")
    api_keys.check_bind(Settings(web_host="0.0.0.0", api_keys=("0" * 64,)), "sink")
