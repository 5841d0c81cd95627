"""Versioned schema of the tracking database, applied in order and recorded.

Each migration is a list of idempotent statements (IF NOT EXISTS, ADD COLUMN IF NOT
EXISTS, CREATE OR REPLACE VIEW): a run interrupted half-way is simply run again.
Applied versions are recorded in ``schema_migrations`` with a checksum of their text,
so an edited, already-applied migration is visible in ``trackbone clickhouse status``.
Statements are Python strings rather than ``.sql`` files so that they ship inside the
package without extra package-data rules; ``{db}`` is replaced by the quoted database.

Idempotence of the data (contract section 4) rests on ReplacingMergeTree: a row is
identified by its sorting key and the highest ``version`` wins at ``FINAL``; rows whose
winning version has ``is_deleted = 1`` (a voided event, a parcel with no effective
events left) disappear from ``FINAL``. Retried and replayed inserts write the same
(key, version) again, which changes nothing; per-batch insert deduplication tokens
(``non_replicated_deduplication_window``) keep retries from even storing copies.
Never run ``OPTIMIZE ... FINAL CLEANUP``: deleted rows must stay as tombstones so that
a replay of the voided event cannot resurrect it.

View definitions (all read ``FINAL``, so deleted rows are excluded):

* ``deliveries``: one row per registered parcel with a ``delivered_at`` (also if later
  returned); ``on_time`` = delivered_at <= promised_at; ``transit_hours`` from
  registered_at to delivered_at.
* ``sla_by_lane_day``: deliveries per origin country -> destination country, service
  and UTC day of delivery: count, on-time count and share, p50/p90 transit hours
  (``quantileExactInclusive``: linear interpolation, numpy's default).
* ``hub_visits`` / ``hub_dwell``: a visit starts at an ORIGIN_HUB_ARRIVED or
  DESTINATION_HUB_ARRIVED scan naming a facility and ends at the parcel's first later
  event (walk order: event_time, event_id) showing it left: for an origin hub an
  ORIGIN_HUB_DEPARTED scan at the same facility or any LINEHAUL_DEPARTED; for a
  destination hub any OUT_FOR_DELIVERY, AVAILABLE_FOR_PICKUP, DELIVERY_ATTEMPTED,
  DELIVERED or RETURN_INITIATED. No such event yet: the visit is open (dwell NULL).
  ``hub_dwell`` aggregates per facility and hub kind (p50/p90/avg/max over closed visits).
* ``customs_clearances`` / ``customs_dwell``: per parcel and direction, from the first
  SUBMITTED or HELD to the first RELEASED or REFUSED (dwell NULL while open, or when
  the end precedes the start); held / refused = at least one such status. Country is
  the customs events' location country, else the lane's origin (EXPORT) or destination
  (IMPORT). ``customs_dwell`` aggregates per country and direction.
* ``stream_time``: one row, the latest effective event time in the data: the "now" of
  every lateness view and query (a simulated or replayed feed is not today).
* ``parcels_late_at(as_of = ...)``: a parameterized view of parcels not delivered (no
  delivered_at), not RETURNED, whose promised_at is before ``as_of``, with ``as_of`` and
  ``hours_late`` per row. ``parcels_late_now`` is it at the stream time (v1 and v2 used
  the wall clock, ``now64()``, which disagreed with the demo's stream-time figures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from streams.clickhouse.client import quote_identifier
from streams.clickhouse.exceptions import MigrationError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    server_statements: tuple[str, ...] = ()
    """Run on a ClickHouse server only: access control (users, profiles) has no place in
    the embedded engine, whose analysts go through its read-only client instead."""

    @property
    def checksum(self) -> str:
        """Fingerprint of the statements, to notice edits to an applied migration."""
        text = "\n;\n".join((*self.statements, *self.server_statements))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str


DT = "DateTime64(3, 'UTC')"

_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""

_PARCEL_EVENTS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.parcel_events
(
    parcel_id String,
    event_time {DT},
    event_id String,
    event_type LowCardinality(String),
    scan LowCardinality(Nullable(String)),
    customs_direction LowCardinality(Nullable(String)),
    customs_status LowCardinality(Nullable(String)),
    reason Nullable(String),
    raw_code Nullable(String),
    from_party Nullable(String),
    to_party Nullable(String),
    facility_id Nullable(String),
    country LowCardinality(Nullable(String)),
    city Nullable(String),
    tz_offset_minutes Int16,
    source LowCardinality(String),
    raw String CODEC(ZSTD(3)),
    version UInt64,
    is_deleted UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(event_time)
ORDER BY (parcel_id, event_time, event_id)
SETTINGS non_replicated_deduplication_window = 1000
"""

_PARCEL_STATE_V1 = f"""
CREATE TABLE IF NOT EXISTS {{db}}.parcel_state
(
    parcel_id String,
    milestone LowCardinality(String),
    delivered_at Nullable({DT}),
    holds Array(LowCardinality(String)),
    attempts UInt32,
    event_count UInt32,
    custodian Nullable(String),
    registered Bool,
    last_event_time Nullable({DT}),
    origin_country LowCardinality(Nullable(String)),
    origin_city Nullable(String),
    destination_country LowCardinality(Nullable(String)),
    destination_city Nullable(String),
    service LowCardinality(Nullable(String)),
    promised_hours Nullable(Int32),
    registered_at Nullable({DT}),
    promised_at Nullable({DT}),
    version UInt64,
    updated_at {DT},
    is_deleted UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY parcel_id
SETTINGS non_replicated_deduplication_window = 1000
"""

_DELIVERIES = """
CREATE OR REPLACE VIEW {db}.deliveries AS
SELECT
    parcel_id,
    origin_country,
    origin_city,
    destination_country,
    destination_city,
    service,
    milestone,
    assumeNotNull(registered_at) AS registered_at,
    promised_at,
    assumeNotNull(delivered_at) AS delivered_at,
    toDate(assumeNotNull(delivered_at), 'UTC') AS day,
    ifNull(assumeNotNull(delivered_at) <= promised_at, false) AS on_time,
    dateDiff('millisecond', assumeNotNull(registered_at), assumeNotNull(delivered_at))
        / 3600000.0 AS transit_hours
FROM
(
    -- Filter inside: an outer WHERE would see the assumeNotNull aliases instead.
    SELECT *
    FROM {db}.parcel_state FINAL
    WHERE delivered_at IS NOT NULL AND registered AND registered_at IS NOT NULL
)
"""

_SLA_BY_LANE_DAY = """
CREATE OR REPLACE VIEW {db}.sla_by_lane_day AS
SELECT
    origin_country,
    destination_country,
    service,
    day,
    count() AS delivered,
    countIf(on_time) AS on_time_count,
    countIf(on_time) / count() AS on_time_share,
    quantileExactInclusive(0.5)(transit_hours) AS p50_transit_hours,
    quantileExactInclusive(0.9)(transit_hours) AS p90_transit_hours
FROM {db}.deliveries
GROUP BY origin_country, destination_country, service, day
"""

_ORIGIN_EXITS = "('LINEHAUL_DEPARTED')"
_DESTINATION_EXITS = (
    "('OUT_FOR_DELIVERY', 'AVAILABLE_FOR_PICKUP', 'DELIVERY_ATTEMPTED', 'DELIVERED',"
    " 'RETURN_INITIATED')"
)

_HUB_VISITS = f"""
CREATE OR REPLACE VIEW {{db}}.hub_visits AS
SELECT
    parcel_id,
    assumeNotNull(facility_id) AS facility_id,
    if(scan = 'ORIGIN_HUB_ARRIVED', 'ORIGIN', 'DESTINATION') AS hub,
    country,
    city,
    event_time AS arrived_at,
    if(
        scan = 'ORIGIN_HUB_ARRIVED',
        if(
            same_facility_departure IS NULL,
            linehaul_departure,
            if(linehaul_departure IS NULL, same_facility_departure,
               least(same_facility_departure, linehaul_departure))
        ),
        destination_exit
    ) AS departed_at,
    dateDiff('millisecond', arrived_at, departed_at) / 3600000.0 AS dwell_hours
FROM
(
    SELECT
        parcel_id, event_time, event_id, scan, facility_id, facility_id AS facility, country, city,
        minIf(toNullable(event_time), scan = 'ORIGIN_HUB_DEPARTED') OVER at_facility
            AS same_facility_departure,
        minIf(toNullable(event_time), scan IN {_ORIGIN_EXITS}) OVER later
            AS linehaul_departure,
        minIf(toNullable(event_time), scan IN {_DESTINATION_EXITS}) OVER later
            AS destination_exit
    FROM {{db}}.parcel_events FINAL
    WINDOW
        later AS (PARTITION BY parcel_id ORDER BY event_time, event_id
                  ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING),
        at_facility AS (PARTITION BY parcel_id, facility_id ORDER BY event_time, event_id
                        ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
)
-- ifNull, not IS NOT NULL: the outer facility_id alias is already assumeNotNull'd.
WHERE scan IN ('ORIGIN_HUB_ARRIVED', 'DESTINATION_HUB_ARRIVED') AND ifNull(facility, '') != ''
"""

_HUB_DWELL = """
CREATE OR REPLACE VIEW {db}.hub_dwell AS
SELECT
    facility_id,
    hub,
    any(country) AS country,
    any(city) AS city,
    count() AS visits,
    countIf(departed_at IS NOT NULL) AS closed_visits,
    countIf(departed_at IS NULL) AS open_visits,
    avg(dwell_hours) AS avg_dwell_hours,
    quantileExactInclusive(0.5)(dwell_hours) AS p50_dwell_hours,
    quantileExactInclusive(0.9)(dwell_hours) AS p90_dwell_hours,
    max(dwell_hours) AS max_dwell_hours
FROM {db}.hub_visits
GROUP BY facility_id, hub
"""

_CUSTOMS_CLEARANCES = """
CREATE OR REPLACE VIEW {db}.customs_clearances AS
SELECT
    c.parcel_id AS parcel_id,
    c.direction AS direction,
    coalesce(
        c.location_country,
        if(c.direction = 'EXPORT', s.origin_country, s.destination_country)
    ) AS country,
    c.started_at AS started_at,
    c.ended_at AS ended_at,
    c.held AS held,
    c.refused AS refused,
    if(
        c.started_at IS NOT NULL AND c.ended_at IS NOT NULL AND c.ended_at >= c.started_at,
        dateDiff('millisecond', assumeNotNull(c.started_at), assumeNotNull(c.ended_at))
            / 3600000.0,
        NULL
    ) AS dwell_hours
FROM
(
    SELECT
        parcel_id,
        assumeNotNull(customs_direction) AS direction,
        argMinIf(country, event_time, country IS NOT NULL) AS location_country,
        minIf(toNullable(event_time), customs_status IN ('SUBMITTED', 'HELD')) AS started_at,
        minIf(toNullable(event_time), customs_status IN ('RELEASED', 'REFUSED')) AS ended_at,
        countIf(customs_status = 'HELD') > 0 AS held,
        countIf(customs_status = 'REFUSED') > 0 AS refused
    FROM {db}.parcel_events FINAL
    WHERE event_type = 'CustomsStatusRecorded' AND customs_direction IS NOT NULL
    GROUP BY parcel_id, direction
) AS c
LEFT JOIN
(
    SELECT parcel_id, origin_country, destination_country FROM {db}.parcel_state FINAL
) AS s ON s.parcel_id = c.parcel_id
"""

_CUSTOMS_DWELL = """
CREATE OR REPLACE VIEW {db}.customs_dwell AS
SELECT
    country,
    direction,
    count() AS parcels,
    countIf(ended_at IS NOT NULL) AS closed_count,
    countIf(ended_at IS NULL) AS open_count,
    countIf(held) AS held_count,
    countIf(refused) AS refused_count,
    avg(dwell_hours) AS avg_dwell_hours,
    quantileExactInclusive(0.5)(dwell_hours) AS p50_dwell_hours,
    quantileExactInclusive(0.9)(dwell_hours) AS p90_dwell_hours,
    max(dwell_hours) AS max_dwell_hours
FROM {db}.customs_clearances
GROUP BY country, direction
"""

_LATE_NOW_COLUMNS = """
    parcel_id,
    milestone,
    origin_country,
    destination_country,
    service,
    promised_at,
    last_event_time,
    custodian,
    holds,
    dateDiff('millisecond', assumeNotNull(promised_at), now64(3)) / 3600000.0 AS hours_late"""

_LATE_NOW_WHERE = """
FROM {db}.parcel_state FINAL
WHERE delivered_at IS NULL AND milestone != 'RETURNED'
    AND promised_at IS NOT NULL AND promised_at < now64(3)
"""

_PARCELS_LATE_NOW_V1 = (
    "\nCREATE OR REPLACE VIEW {db}.parcels_late_now AS\nSELECT"
    + _LATE_NOW_COLUMNS
    + _LATE_NOW_WHERE
)

_PARCELS_LATE_NOW_V2 = (
    "\nCREATE OR REPLACE VIEW {db}.parcels_late_now AS\nSELECT"
    + _LATE_NOW_COLUMNS
    + ",\n    eta_p50,\n    eta_p90,\n    on_time_probability,\n    eta_basis"
    + _LATE_NOW_WHERE
)

_STREAM_TIME = """
CREATE OR REPLACE VIEW {db}.stream_time AS
SELECT max(event_time) AS stream_time
FROM {db}.parcel_events FINAL
"""

_PARCELS_LATE_AT = """
CREATE OR REPLACE VIEW {db}.parcels_late_at AS
SELECT
    {as_of:DateTime64(3, 'UTC')} AS as_of,
    parcel_id,
    milestone,
    origin_country,
    destination_country,
    service,
    promised_at,
    last_event_time,
    custodian,
    holds,
    dateDiff('millisecond', assumeNotNull(promised_at), {as_of:DateTime64(3, 'UTC')})
        / 3600000.0 AS hours_late,
    eta_p50,
    eta_p90,
    on_time_probability,
    eta_basis
FROM {db}.parcel_state FINAL
WHERE delivered_at IS NULL AND milestone != 'RETURNED'
    AND promised_at IS NOT NULL AND promised_at < {as_of:DateTime64(3, 'UTC')}
"""

_PARCELS_LATE_NOW_V3 = """
CREATE OR REPLACE VIEW {db}.parcels_late_now AS
SELECT *
FROM {db}.parcels_late_at(as_of = (SELECT stream_time FROM {db}.stream_time))
"""

_PARCEL_STATE_ETA = f"""
ALTER TABLE {{db}}.parcel_state
    ADD COLUMN IF NOT EXISTS eta_p50 Nullable({DT}) AFTER promised_at,
    ADD COLUMN IF NOT EXISTS eta_p90 Nullable({DT}) AFTER eta_p50,
    ADD COLUMN IF NOT EXISTS on_time_probability Nullable(Float64) AFTER eta_p90,
    ADD COLUMN IF NOT EXISTS eta_basis LowCardinality(Nullable(String)) AFTER on_time_probability
"""

_PARCEL_ETA = f"""
CREATE TABLE IF NOT EXISTS {{db}}.parcel_eta
(
    parcel_id String,
    version UInt64,
    made_at {DT},
    milestone LowCardinality(String),
    eta_p50 Nullable({DT}),
    eta_p90 Nullable({DT}),
    on_time_probability Nullable(Float64),
    eta_basis LowCardinality(Nullable(String)),
    promised_at Nullable({DT})
)
ENGINE = ReplacingMergeTree
ORDER BY (parcel_id, version)
SETTINGS non_replicated_deduplication_window = 1000
"""

# The analyst user can log in only once an operator gives it a password and hosts
# (`ALTER USER analyst IDENTIFIED WITH sha256_password BY '...' HOST ANY`): a migration
# holds no secret. Its profile makes every session read-only (readonly = 1: no writes,
# no setting changes) and bounds what one query may take.
_ANALYST = (
    """
CREATE SETTINGS PROFILE IF NOT EXISTS trackbone_analyst SETTINGS
    readonly = 1,
    max_execution_time = 60,
    max_memory_usage = 4000000000,
    max_result_rows = 1000000
""",
    "CREATE USER IF NOT EXISTS analyst NOT IDENTIFIED HOST NONE"
    " SETTINGS PROFILE 'trackbone_analyst'",
    "GRANT SELECT ON {db}.* TO analyst",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, state, SLA/hub/customs/late views",
        (
            _PARCEL_EVENTS,
            _PARCEL_STATE_V1,
            _DELIVERIES,
            _SLA_BY_LANE_DAY,
            _HUB_VISITS,
            _HUB_DWELL,
            _CUSTOMS_CLEARANCES,
            _CUSTOMS_DWELL,
            _PARCELS_LATE_NOW_V1,
        ),
    ),
    Migration(
        2,
        "ETA columns on parcel_state, parcel_eta history",
        (_PARCEL_STATE_ETA, _PARCEL_ETA, _PARCELS_LATE_NOW_V2),
    ),
    Migration(
        3,
        "stream time as the as-of of lateness: stream_time, parcels_late_at(as_of)",
        (_STREAM_TIME, _PARCELS_LATE_AT, _PARCELS_LATE_NOW_V3),
    ),
    Migration(
        4,
        "analyst: a read-only user for analysts (server only)",
        (),
        _ANALYST,
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def render(statement: str, database: str) -> str:
    """Fill in the database: views must name it, they resolve tables at creation."""
    return statement.replace("{db}", quote_identifier(database)).strip()


def _ensure_ledger(client: Client, database: str) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    client.command(render(_SCHEMA_MIGRATIONS, database))


def applied_migrations(client: Client, database: str) -> list[AppliedMigration]:
    """Versions recorded in the database, oldest first (empty for a fresh database)."""
    _ensure_ledger(client, database)
    result = client.query(
        f"SELECT version, name, checksum FROM {quote_identifier(database)}.schema_migrations"
        " FINAL ORDER BY version"
    )
    return [AppliedMigration(int(v), str(n), str(c)) for v, n, c in result.result_rows]


def current_version(client: Client, database: str) -> int:
    applied = applied_migrations(client, database)
    return applied[-1].version if applied else 0


def migrate(
    client: Client,
    database: str,
    *,
    target: int | None = None,
    migrations: Sequence[Migration] = MIGRATIONS,
    server: bool = False,
) -> list[int]:
    """Apply the missing migrations up to ``target`` (default: latest); return those applied.

    ``server``: the client is a ClickHouse server, so server-only statements run too
    (on the embedded engine they are skipped, and the version still recorded).

    Safe to run again at any time, including after a run that stopped half-way.
    """
    known = {m.version for m in migrations}
    latest = max(known)
    goal = latest if target is None else target
    if goal not in known and goal != 0:
        raise MigrationError(f"unknown schema version {goal} (known: {sorted(known)})")
    applied = {m.version for m in applied_migrations(client, database)}
    newer = sorted(v for v in applied if v > latest)
    if newer:
        raise MigrationError(
            f"database {database!r} has schema version {newer[-1]}, newer than this"
            f" trackbone knows ({latest}): upgrade trackbone"
        )
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied or migration.version > goal:
            continue
        statements = migration.statements + (migration.server_statements if server else ())
        for statement in statements:
            client.command(render(statement, database))
        client.insert(
            f"{quote_identifier(database)}.schema_migrations",
            [(migration.version, migration.name, migration.checksum)],
            column_names=["version", "name", "checksum"],
        )
        done.append(migration.version)
    return done


def edited_migrations(
    client: Client, database: str, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """List applied versions whose text changed since they were applied (never rerun)."""
    by_version = {m.version: m for m in migrations}
    return [
        a.version
        for a in applied_migrations(client, database)
        if a.version in by_version and by_version[a.version].checksum != a.checksum
    ]
