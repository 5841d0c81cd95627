"""The project's own broker: idempotent start, status, stop, data kept across restarts.

Uses a second broker in its own data dir (the session broker serves the other tests).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker import (
    BrokerNotRunning,
    LocalBroker,
    new_cluster_id,
    port_is_free,
    resolve_bootstrap,
)
from streams.cli import main
from streams.kafka_io import ensure_topics, make_producer
from streams.settings import Settings


@pytest.fixture
def own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("TRACKBONE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("TRACKBONE_DATA_DIR", str(tmp_path / "data"))
    return Settings.from_env()


@pytest.fixture
def own_broker(own_settings: Settings) -> Iterator[LocalBroker]:
    broker = LocalBroker(own_settings)
    try:
        yield broker
    finally:
        broker.stop()


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_start_is_idempotent_and_stop_keeps_data(
    own_broker: LocalBroker,
    unique_name: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bootstrap = own_broker.start()
    state = own_broker.status()
    assert state is not None
    assert state["bootstrap"] == bootstrap
    assert set(state) >= {"pid", "bootstrap", "ports", "started_at"}
    assert state["timings"]["start_to_ready_s"] > 0

    began = time.monotonic()
    assert own_broker.start() == bootstrap
    assert time.monotonic() - began < 5.0
    assert own_broker.status() == state  # no second process, nothing rewritten

    # a separate instance (another shell) sees the same broker
    other = LocalBroker(own_broker.settings)
    assert other.status() == state
    assert resolve_bootstrap(own_broker.settings) == bootstrap

    topic = unique_name("kept")
    await ensure_topics(bootstrap, [topic], 1)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"survives a restart", key=b"k")
    finally:
        await producer.stop()

    assert own_broker.stop() is True
    # stop returns once the broker has exited: nothing listens on its ports any more
    assert all(port_is_free(int(port)) for port in state["ports"].values())
    assert own_broker.status() is None
    assert not own_broker.state_file.exists()
    assert own_broker.stop() is False
    with pytest.raises(OSError):
        os.kill(state["pid"], 0)

    again = own_broker.start()
    assert again == bootstrap  # same address: the producer's closed connections don't move it
    assert own_broker.status() is not None
    assert own_broker.timings["format_s"] == 0.0  # the formatted log dir was reused
    assert await end_offset(again, topic) == 1

    # the CLI finds the same broker (TRACKBONE_DATA_DIR points at it)
    capsys.readouterr()
    assert main(["kafka", "start"]) == 0
    assert capsys.readouterr().out.strip() == again
    assert main(["kafka", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["bootstrap"] == again


def test_stale_state_file_is_ignored(own_settings: Settings) -> None:
    broker = LocalBroker(own_settings)
    broker.dir.mkdir(parents=True)
    # a pid that is surely not our broker (this test process)
    stale = {"pid": os.getpid(), "bootstrap": "127.0.0.1:1", "ports": {}, "started_at": "x"}
    broker.state_file.write_text(json.dumps(stale))
    assert broker.status() is None
    with pytest.raises(BrokerNotRunning, match="trackbone kafka start"):
        resolve_bootstrap(own_settings)


def test_resolve_bootstrap_prefers_settings(own_settings: Settings) -> None:
    assert resolve_bootstrap(replace(own_settings, kafka_bootstrap="h:9092")) == "h:9092"


def test_cli_status_when_not_running(
    own_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kafka", "status"]) == 1
    assert capsys.readouterr().out.strip() == "not running"
    assert main(["kafka", "stop"]) == 0


def test_cluster_ids_are_valid() -> None:
    for _ in range(200):
        cid = new_cluster_id()
        assert len(cid) == 22
        assert not cid.startswith("-")
        assert "=" not in cid
