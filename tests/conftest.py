"""Fixtures shared by every test tier.

Kafka: one real broker per test session (the project's own ``LocalBroker``, jars cached
in ``~/.cache/trackbone/kafka`` or ``TRACKBONE_KAFKA_HOME``), or an external one when
``TRACKBONE_KAFKA_BOOTSTRAP`` is set. Tests share the broker, so they isolate themselves
with ``unique_name`` for topic prefixes, consumer groups and app ids.

Tests under ``tests/integration/`` are marked ``integration`` automatically
(``pytest -m "not integration"`` runs without a broker).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


# --- names ---------------------------------------------------------------------------------


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory: ``unique_name("orders")`` -> ``"orders-<32 hex>"``, fresh on every call."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    return make


# --- Kafka ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the session's broker, started on first use, stopped at the end."""
    settings = Settings.from_env()
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    from streams.broker import LocalBroker

    data_dir = tmp_path_factory.mktemp("session-kafka")
    broker = LocalBroker(replace(settings, data_dir=data_dir))
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_settings(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Settings:
    """Settings on the session broker with a fresh topic prefix, app id and data dir."""
    return replace(
        Settings.from_env(),
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=unique_name("t") + ".",
        app_id=unique_name("app"),
        data_dir=tmp_path / "data",
    )


@dataclass
class SecureKafka:
    """The session's secure broker (SASL_SSL, SCRAM, ACLs) and its roles' credentials."""

    bootstrap: str
    broker: Any

    def options(self, role: str, **overrides: Any) -> dict[str, Any]:
        """aiokafka keyword arguments of a role (``overrides`` e.g. a wrong password)."""
        return self.broker.security.client_options(role) | overrides

    def env(self, role: str) -> dict[str, str]:
        return dict(self.broker.security.client_env(role))

    def password(self, role: str) -> str:
        return str(self.broker.security.password(role))

    def grant(self, topic_prefix: str, app_id: str) -> None:
        """Topics and ACLs for one test's deployment (as ``trackbone kafka grant`` does)."""
        self.broker.grant(topic_prefix, app_id, self.bootstrap)


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One secure local broker for the session, on its own data dir; stopped at the end."""
    settings = Settings.from_env()
    if settings.kafka_bootstrap:
        pytest.skip("the secure tests start their own broker (TRACKBONE_KAFKA_BOOTSTRAP is set)")
    from streams.broker import LocalBroker

    data_dir = tmp_path_factory.mktemp("secure-kafka")
    broker = LocalBroker(replace(settings, data_dir=data_dir), secure=True)
    bootstrap = broker.start()
    try:
        yield SecureKafka(bootstrap, broker)
    finally:
        broker.stop()
