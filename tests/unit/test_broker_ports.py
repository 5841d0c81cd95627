"""The local broker keeps its address across restarts, or refuses loudly."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest

from streams.broker import BrokerError, LocalBroker, port_is_free
from streams.settings import Settings


def _time_wait_port() -> int:
    """A port whose listener accepted a connection and closed first: left in TIME_WAIT.

    The listener sets SO_REUSEADDR, as Kafka's does (Java's default on Unix).
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the side that closes first keeps TIME_WAIT on the listening port
    server.close()
    client.close()
    return int(port)


def test_a_port_with_connections_in_time_wait_is_free_as_kafka_binds():
    assert port_is_free(_time_wait_port())


def test_a_port_someone_listens_on_is_taken():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        assert not port_is_free(sock.getsockname()[1])


def _broker(tmp_path: Path, ports: dict[str, int]) -> LocalBroker:
    settings = dataclasses.replace(Settings.from_env(), data_dir=tmp_path)
    broker = LocalBroker(settings)
    broker.ports_file.parent.mkdir(parents=True, exist_ok=True)
    broker.ports_file.write_text(json.dumps(ports))
    return broker


def test_a_restart_keeps_the_recorded_ports(tmp_path: Path):
    ports = {"broker": _time_wait_port(), "controller": _time_wait_port()}
    assert _broker(tmp_path, ports)._choose_ports(fresh=False) == ports


def test_a_restart_refuses_loudly_when_another_process_holds_the_address(tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        taken = sock.getsockname()[1]
        broker = _broker(tmp_path, {"broker": taken, "controller": _time_wait_port()})
        with pytest.raises(BrokerError, match=f"127.0.0.1:{taken}.*in use by another process"):
            broker._choose_ports(fresh=False)
