"""Shared helpers for ClickHouse tests against the real embedded engine (chdb).

chdb hosts one engine path per process at a time, so every test in a pytest process
uses the same data dir (created once) and gets its own database; clients are closed
after each test so a suite that needs another path can still open it later.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from projections.events import (
    CustomsDirection,
    CustomsStatus,
    CustomsStatusRecorded,
    Location,
    ParcelScanned,
    Scan,
)
from streams.clickhouse.client import close_clients, connect
from streams.settings import Settings

_CHDB_DIR: Path | None = None
HOUR = 3_600_000
T0 = 1_794_355_200_000  # 2026-11-11T00:00:00Z


def chdb_url() -> str:
    """The process-wide chdb DSN for tests (one data dir per pytest process)."""
    global _CHDB_DIR
    if _CHDB_DIR is None:
        _CHDB_DIR = Path(tempfile.mkdtemp(prefix="trackbone-chdb-"))
        atexit.register(shutil.rmtree, _CHDB_DIR, True)
    return f"chdb://{_CHDB_DIR}"


@dataclass(frozen=True)
class ClickHouseTest:
    settings: Settings
    database: str

    @property
    def client(self) -> Client:
        return connect(self.settings)

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client.query(sql, parameters=params or None).result_rows]

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.rows(sql, **params)[0][0]


@contextmanager
def clickhouse_database(data_dir: Path) -> Iterator[ClickHouseTest]:
    database = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(data_dir=data_dir, clickhouse_dsn=chdb_url(), clickhouse_database=database)
    try:
        yield ClickHouseTest(settings, database)
    finally:
        close_clients(settings.clickhouse_url)


def status(parcel_id: str, version: int, **fields: Any) -> dict[str, Any]:
    """A ParcelStatus record dict with neutral defaults."""
    record: dict[str, Any] = {
        "parcel_id": parcel_id,
        "milestone": "REGISTERED",
        "delivered_at": None,
        "holds": [],
        "attempts": 0,
        "event_count": 1,
        "custodian": None,
        "registered": True,
        "last_event_time": T0,
        "origin_country": "CN",
        "origin_city": "Hangzhou",
        "destination_country": "NL",
        "destination_city": "Amsterdam",
        "service": "EXPRESS",
        "promised_hours": 72,
        "registered_at": T0,
        "promised_at": T0 + 72 * HOUR,
        "eta_p50": None,
        "eta_p90": None,
        "on_time_probability": None,
        "eta_basis": None,
        "version": version,
        "updated_at": T0,
    }
    record.update(fields)
    return record


def scan(
    parcel_id: str, event_id: str, at: int, kind: Scan, facility: str | None = None
) -> ParcelScanned:
    return ParcelScanned(
        event_id=event_id,
        parcel_id=parcel_id,
        event_time=at,
        source="test-carrier",
        location=Location(country="CN", facility_id=facility, city="Hangzhou"),
        scan=kind,
    )


def customs(
    parcel_id: str,
    event_id: str,
    at: int,
    direction: CustomsDirection,
    state: CustomsStatus,
    country: str | None,
) -> CustomsStatusRecorded:
    return CustomsStatusRecorded(
        event_id=event_id,
        parcel_id=parcel_id,
        event_time=at,
        source="customs-broker",
        location=None if country is None else Location(country=country),
        direction=direction,
        status=state,
    )
