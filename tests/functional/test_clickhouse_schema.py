"""Schema management against chdb: idempotent init, migration v1 -> v2 with data kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.cli import main
from streams.clickhouse import migrations
from streams.clickhouse.client import close_clients, connect, database_name
from streams.clickhouse.exceptions import MigrationError
from streams.clickhouse.rows import COLUMNS, PARCEL_STATE, status_row
from tests.functional.clickhouse_support import (
    HOUR,
    T0,
    ClickHouseTest,
    chdb_url,
    clickhouse_database,
    status,
)

TABLES = {"schema_migrations", "parcel_events", "parcel_state", "parcel_eta"}
VIEWS = {
    "deliveries",
    "sla_by_lane_day",
    "hub_visits",
    "hub_dwell",
    "customs_clearances",
    "customs_dwell",
    "parcels_late_now",
    "parcels_late_at",
    "stream_time",
}


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[ClickHouseTest]:
    with clickhouse_database(tmp_path) as ctx:
        yield ctx


def objects(ch: ClickHouseTest) -> dict[str, str]:
    return dict(
        ch.rows("SELECT name, engine FROM system.tables WHERE database = {d:String}", d=ch.database)
    )


def test_init_twice_is_idempotent(ch: ClickHouseTest) -> None:
    assert migrations.migrate(ch.client, ch.database) == [1, 2, 3, 4]
    first = objects(ch)
    assert set(first) == TABLES | VIEWS
    assert {first[v] for v in VIEWS} == {"View"}
    assert migrations.migrate(ch.client, ch.database) == []
    assert objects(ch) == first
    assert migrations.current_version(ch.client, ch.database) == 4
    assert ch.scalar(f"SELECT count() FROM {ch.database}.schema_migrations") == 4
    assert migrations.edited_migrations(ch.client, ch.database) == []


def test_cli_init_and_status(ch: ClickHouseTest, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["clickhouse", "init", "--dsn", chdb_url(), "--database", ch.database]
    assert main(argv) == 0
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "schema v4 (v1, v2, v3, v4)" in out and "nothing to apply" in out
    assert main(["clickhouse", "status", "--dsn", chdb_url(), "--database", ch.database]) == 0
    out = capsys.readouterr().out
    assert "v1  applied" in out and "v2  applied" in out and "v3  applied" in out
    assert set(objects(ch)) == TABLES | VIEWS


def test_migration_v1_to_v2_keeps_data(ch: ClickHouseTest) -> None:
    assert migrations.migrate(ch.client, ch.database, target=1) == [1]
    names = set(objects(ch))
    assert "parcel_eta" not in names and "parcel_state" in names
    v1_columns = [c for c in COLUMNS[PARCEL_STATE] if not c.startswith(("eta_", "on_time"))]
    assert len(v1_columns) == len(COLUMNS[PARCEL_STATE]) - 4
    old = [
        status("P1", 3, milestone="DELIVERED", delivered_at=T0 + 20 * HOUR),
        status("P2", 1),
    ]
    rows = [
        tuple(
            v for c, v in zip(COLUMNS[PARCEL_STATE], status_row(s), strict=True) if c in v1_columns
        )
        for s in old
    ]
    ch.client.insert(PARCEL_STATE, rows, column_names=v1_columns, database=ch.database)
    late_before = ch.rows(f"SELECT parcel_id FROM {ch.database}.parcels_late_now")

    assert migrations.migrate(ch.client, ch.database, target=2) == [2]
    kept = ch.rows(
        f"SELECT parcel_id, milestone, version, eta_p50, on_time_probability"
        f" FROM {ch.database}.parcel_state FINAL ORDER BY parcel_id"
    )
    assert [(r[0], r[1], r[2]) for r in kept] == [("P1", "DELIVERED", 3), ("P2", "REGISTERED", 1)]
    assert all(r[3] is None and r[4] is None for r in kept)
    assert ch.rows(f"SELECT parcel_id FROM {ch.database}.parcels_late_now") == late_before
    # The v2 shape accepts full rows, and the view exposes the new columns.
    newer = status("P2", 2, eta_p50=T0 + 50 * HOUR, on_time_probability=0.8, eta_basis="lane")
    ch.client.insert(
        PARCEL_STATE,
        [status_row(newer)],
        column_names=list(COLUMNS[PARCEL_STATE]),
        database=ch.database,
    )
    assert ch.rows(
        f"SELECT version, on_time_probability, eta_basis FROM {ch.database}.parcel_state FINAL"
        " WHERE parcel_id = 'P2'"
    ) == [(2, 0.8, "lane")]
    described = {r[0] for r in ch.rows(f"DESCRIBE TABLE {ch.database}.parcels_late_now")}
    assert {"eta_p50", "eta_p90", "on_time_probability", "hours_late"} <= described


def test_newer_schema_than_code_is_refused(ch: ClickHouseTest) -> None:
    migrations.migrate(ch.client, ch.database)
    ch.client.insert(
        f"{ch.database}.schema_migrations",
        [(99, "future", "x")],
        column_names=["version", "name", "checksum"],
    )
    with pytest.raises(MigrationError, match="newer"):
        migrations.migrate(ch.client, ch.database)


def test_clients_are_shared_per_dsn_and_database(ch: ClickHouseTest) -> None:
    assert connect(ch.settings) is connect(ch.settings)
    assert connect(ch.settings, readonly=True) is not connect(ch.settings)
    assert database_name(ch.settings) == ch.database
    close_clients(ch.settings.clickhouse_url)
    assert ch.scalar("SELECT currentDatabase()") == ch.database


def test_the_analyst_user_is_made_on_a_server_only(ch: ClickHouseTest) -> None:
    """The embedded engine skips access control; the version is recorded all the same."""
    analyst = next(m for m in migrations.MIGRATIONS if m.version == 4)
    assert analyst.statements == ()
    text = "\n".join(analyst.server_statements)
    assert "readonly = 1" in text and "CREATE USER IF NOT EXISTS analyst" in text
    assert "GRANT SELECT ON {db}.* TO analyst" in text
    assert migrations.migrate(ch.client, ch.database) == [1, 2, 3, 4]
    assert migrations.current_version(ch.client, ch.database) == 4
