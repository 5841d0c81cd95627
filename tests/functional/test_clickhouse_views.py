"""Analyst views on hand-built data with known answers (chdb, real engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from projections.events import CustomsDirection as Dir
from projections.events import CustomsStatus as Cs
from projections.events import Event, Scan
from streams.cli import main
from streams.clickhouse import migrations
from streams.clickhouse.rows import (
    EVENT_COLUMNS,
    PARCEL_EVENTS,
    PARCEL_STATE,
    STATE_COLUMNS,
    Row,
    event_row,
    state_tombstone_row,
    status_row,
)
from tests.functional.clickhouse_support import (
    HOUR,
    T0,
    ClickHouseTest,
    chdb_url,
    clickhouse_database,
    customs,
    scan,
    status,
)

DAY = 24 * HOUR


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[ClickHouseTest]:
    with clickhouse_database(tmp_path) as ctx:
        migrations.migrate(ctx.client, ctx.database)
        yield ctx


def put_states(ch: ClickHouseTest, rows: list[Row]) -> None:
    ch.client.insert(PARCEL_STATE, rows, column_names=list(STATE_COLUMNS), database=ch.database)


def put_events(ch: ClickHouseTest, rows: list[Row]) -> None:
    ch.client.insert(PARCEL_EVENTS, rows, column_names=list(EVENT_COLUMNS), database=ch.database)


def delivered(pid: str, hours: float, promised_hours: int, version: int = 5, **kw: object) -> Row:
    at = T0 + int(hours * HOUR)
    fields: dict[str, object] = {
        "milestone": "DELIVERED",
        "delivered_at": at,
        "last_event_time": at,
        "promised_hours": promised_hours,
        "promised_at": T0 + promised_hours * HOUR,
    }
    return status_row(status(pid, version, **(fields | kw)))


def test_sla_by_lane_day(ch: ClickHouseTest) -> None:
    put_states(
        ch,
        [
            # CN -> NL EXPRESS, delivered 2026-11-11, promise 20 h:
            # transit 10 and 20 h on time, 22.5 and 23 h late
            delivered("A1", 10, 20),
            delivered("A2", 20, 20),
            delivered("A3", 22.5, 20),
            delivered("A4", 23, 20),
            # superseded version of A1 (late) must not count
            delivered("A1", 23.5, 20, version=2),
            # CN -> CN STANDARD on 2026-11-12: 30 h, promise 72 h
            delivered("B1", 30, 72, destination_country="CN", service="STANDARD"),
            # returned after delivery: still a delivery on its day
            delivered(
                "B2", 40, 72, destination_country="CN", service="STANDARD", milestone="RETURNED"
            ),
            # excluded: not delivered, not registered, removed parcel
            status_row(status("C1", 2, milestone="OUT_FOR_DELIVERY")),
            delivered("C2", 5, 20, registered=False, registered_at=None),
            delivered("C3", 5, 20, version=1),
        ],
    )
    put_states(ch, [state_tombstone_row("C3", version=2, updated_at=T0)])
    got = ch.rows(
        "SELECT origin_country, destination_country, service, toString(day), delivered,"
        " on_time_count,"
        f" on_time_share, p50_transit_hours, p90_transit_hours FROM {ch.database}.sla_by_lane_day"
        " ORDER BY day, service"
    )
    assert got == [
        ("CN", "NL", "EXPRESS", "2026-11-11", 4, 2, 0.5, 21.25, pytest.approx(22.85)),
        ("CN", "CN", "STANDARD", "2026-11-12", 2, 2, 1.0, 35.0, 39.0),
    ]


def test_hub_dwell(ch: ClickHouseTest) -> None:
    arr, dep, lh = Scan.ORIGIN_HUB_ARRIVED, Scan.ORIGIN_HUB_DEPARTED, Scan.LINEHAUL_DEPARTED
    events = [
        # origin hub HUB1: dwell 2, 6, 4 (ended by linehaul), 8 (first departure voided), D open
        scan("A", "a1", T0, arr, "HUB1"),
        scan("A", "a2", T0 + 2 * HOUR, dep, "HUB1"),
        scan("B", "b1", T0, arr, "HUB1"),
        scan("B", "b2", T0 + 6 * HOUR, dep, "HUB1"),
        scan("C", "c1", T0, arr, "HUB1"),
        scan("C", "c2", T0 + 4 * HOUR, lh, None),
        scan("D", "d1", T0, arr, "HUB1"),
        scan("D", "d2", T0 + 1 * HOUR, dep, "HUB2"),
        scan("E", "e1", T0, arr, "HUB1"),
        scan("E", "e3", T0 + 8 * HOUR, dep, "HUB1"),
        # an arrival that names no facility is no hub visit
        scan("F", "f1", T0, arr, None),
        scan("F", "f2", T0 + HOUR, dep, None),
        # destination hub HUB9: 3 h to OUT_FOR_DELIVERY, 5 h to a direct DELIVERED
        scan("A", "a3", T0 + DAY, Scan.DESTINATION_HUB_ARRIVED, "HUB9"),
        scan("A", "a4", T0 + DAY + 3 * HOUR, Scan.OUT_FOR_DELIVERY, "HUB9"),
        scan("A", "a5", T0 + DAY + 4 * HOUR, Scan.DELIVERED, None),
        scan("B", "b3", T0 + DAY, Scan.DESTINATION_HUB_ARRIVED, "HUB9"),
        scan("B", "b4", T0 + DAY + 5 * HOUR, Scan.DELIVERED, None),
    ]
    voided = scan("E", "e2", T0 + 1 * HOUR, dep, "HUB1")
    put_events(ch, [event_row(e, version=1, deleted=False) for e in [*events, voided]])
    put_events(ch, [event_row(voided, version=2, deleted=True)])
    got = ch.rows(
        f"SELECT facility_id, hub, visits, closed_visits, open_visits, avg_dwell_hours,"
        f" p50_dwell_hours, p90_dwell_hours, max_dwell_hours FROM {ch.database}.hub_dwell"
        " ORDER BY facility_id"
    )
    assert got == [
        ("HUB1", "ORIGIN", 5, 4, 1, 5.0, 5.0, pytest.approx(7.4), 8.0),
        ("HUB9", "DESTINATION", 2, 2, 0, 4.0, 4.0, pytest.approx(4.8), 5.0),
    ]
    slowest = ch.client.query(
        (Path(__file__).parents[2] / "streams/sql/slowest_hubs.sql").read_text(),
    )
    assert [r[0] for r in slowest.result_rows] == ["HUB1", "HUB9"]


def test_customs_dwell(ch: ClickHouseTest) -> None:
    E, I = Dir.EXPORT, Dir.IMPORT  # noqa: E741
    events = [
        customs("X", "x1", T0, E, Cs.SUBMITTED, "CN"),
        customs("X", "x2", T0 + 2 * HOUR, E, Cs.RELEASED, "CN"),
        customs("Y", "y1", T0, E, Cs.SUBMITTED, "CN"),
        customs("Y", "y2", T0 + HOUR, E, Cs.HELD, "CN"),
        customs("Y", "y3", T0 + 5 * HOUR, E, Cs.RELEASED, "CN"),
        customs("Z", "z1", T0, I, Cs.HELD, "NL"),
        customs("Z", "z2", T0 + 10 * HOUR, I, Cs.REFUSED, "NL"),
        customs("W", "w1", T0, I, Cs.SUBMITTED, "NL"),
        # no location: country from the lane's destination (NL)
        customs("V", "v1", T0, I, Cs.SUBMITTED, None),
        customs("V", "v2", T0 + 4 * HOUR, I, Cs.RELEASED, None),
    ]
    put_events(ch, [event_row(e, version=1, deleted=False) for e in events])
    put_states(ch, [status_row(status("V", 2, destination_country="NL"))])
    got = ch.rows(
        f"SELECT country, direction, parcels, closed_count, open_count, held_count, refused_count,"
        f" p50_dwell_hours, p90_dwell_hours FROM {ch.database}.customs_dwell ORDER BY country"
    )
    assert got == [
        ("CN", "EXPORT", 2, 2, 0, 1, 0, 3.5, pytest.approx(4.7)),
        ("NL", "IMPORT", 3, 2, 1, 1, 1, 7.0, pytest.approx(9.4)),
    ]


def test_parcels_late_now(ch: ClickHouseTest) -> None:
    past, future = T0 - 3000 * DAY, T0 + 30000 * DAY  # 2018 and 2109
    put_states(
        ch,
        [
            status_row(status("L1", 1, milestone="AT_ORIGIN_HUB", promised_at=past)),
            status_row(status("L2", 1, milestone="RETURNING", promised_at=past)),
            status_row(
                status("OK1", 1, milestone="DELIVERED", delivered_at=past - 1, promised_at=past)
            ),
            status_row(status("OK2", 1, milestone="RETURNED", promised_at=past)),
            status_row(status("OK3", 1, milestone="PICKED_UP", promised_at=future)),
            status_row(status("OK4", 1, milestone="PICKED_UP", promised_at=past)),
            status_row(status("OK5", 1, registered=False, promised_at=None, registered_at=None)),
        ],
    )
    put_states(ch, [state_tombstone_row("OK4", version=2, updated_at=T0)])
    # "now" is the stream time: the latest effective event in the data, not the wall clock
    put_events(
        ch,
        [
            event_row(scan("L1", "s1", T0, Scan.PICKED_UP), version=1, deleted=False),
            event_row(scan("L1", "s2", T0 + DAY, Scan.PICKED_UP), version=2, deleted=True),
        ],
    )
    got = ch.rows(
        f"SELECT parcel_id, as_of, hours_late FROM {ch.database}.parcels_late_now"
        " ORDER BY parcel_id"
    )
    as_of = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert got == [("L1", as_of, 3000 * 24.0), ("L2", as_of, 3000 * 24.0)]
    # an explicit as-of: before the promise of OK3 nothing changes, after it OK3 is late too
    later = ch.rows(
        f"SELECT parcel_id, hours_late FROM {ch.database}.parcels_late_at("
        f"as_of = fromUnixTimestamp64Milli({T0 + 30001 * DAY}, 'UTC')) ORDER BY parcel_id"
    )
    assert later == [("L1", 33001 * 24.0), ("L2", 33001 * 24.0), ("OK3", 24.0)]


def test_late_now_named_query_states_its_as_of(
    ch: ClickHouseTest, capsys: pytest.CaptureFixture[str]
) -> None:
    past = T0 - 2 * DAY
    put_states(ch, [status_row(status("L1", 1, milestone="AT_ORIGIN_HUB", promised_at=past))])
    put_events(ch, [event_row(scan("L1", "s1", T0, Scan.PICKED_UP), version=1, deleted=False)])
    base = ["--dsn", chdb_url(), "--database", ch.database, "--format", "json"]
    assert main(["query", "--named", "late_now", *base]) == 0
    out, err = capsys.readouterr()
    assert "as of 2026-11-11T00:00:00.000Z (stream time" in err
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["parcel_id"] == "L1" and row["hours_late"] == 48.0
    assert row["as_of"].startswith("2026-11-11")
    given = ["--param", "as_of=2026-11-12T00:00:00Z"]
    assert main(["query", "--named", "late_now", *base, *given]) == 0
    out, err = capsys.readouterr()
    assert "as of 2026-11-12T00:00:00.000Z (given)" in err
    assert json.loads(out)["hours_late"] == 72.0
    assert main(["query", "--named", "late_now", *base, "--param", "as_of=yesterday"]) == 2
    assert "as_of" in capsys.readouterr().err


def test_where_is_my_parcel_named_query(
    ch: ClickHouseTest, capsys: pytest.CaptureFixture[str]
) -> None:
    events: list[Event] = [
        scan("WP1", "w1", T0, Scan.PICKED_UP, None),
        scan("WP1", "w2", T0 + HOUR, Scan.ORIGIN_HUB_ARRIVED, "HUB1"),
        customs("WP1", "w3", T0 + 2 * HOUR, Dir.EXPORT, Cs.HELD, "CN"),
    ]
    put_events(ch, [event_row(e, version=i + 1, deleted=False) for i, e in enumerate(events)])
    put_states(
        ch,
        [
            status_row(
                status(
                    "WP1",
                    3,
                    milestone="EXPORT_CUSTOMS",
                    holds=["CUSTOMS_HOLD"],
                    event_count=3,
                    last_event_time=T0 + 2 * HOUR,
                )
            )
        ],
    )
    argv = [
        "query",
        "--dsn",
        chdb_url(),
        "--database",
        ch.database,
        "--named",
        "where_is_my_parcel",
        "--param",
        "parcel_id=WP1",
        "--format",
        "json",
    ]
    assert main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["what"]) for r in lines] == [
        ("state", "EXPORT_CUSTOMS"),
        ("event", "PICKED_UP"),
        ("event", "ORIGIN_HUB_ARRIVED"),
        ("event", "CUSTOMS EXPORT HELD"),
    ]
    assert lines[1]["time"] == "2026-11-11T00:00:00.000Z"
    assert "holds=CUSTOMS_HOLD" in lines[0]["detail"] and lines[2]["place"] == "HUB1 Hangzhou CN"
    for name in ("late_now", "sla_last_7_days", "sla_by_lane", "slowest_hubs", "customs_delays"):
        assert (
            main(["query", "--dsn", chdb_url(), "--database", ch.database, "--named", name]) == 0
        ), name
    assert "row" in capsys.readouterr().out
    # an unknown parcel: one line saying so, exit code 9, no empty table
    unknown = [*argv[:-3], "parcel_id=NOPE", "--format", "table"]
    assert main(unknown) == 9
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (
        "trackbone query: no parcel NOPE in the tracking database (check the id, and"
        " --data-dir / --dsn)"
    )
    # a missing parameter is a usage error that names it
    assert main(argv[:-4]) == 2
    assert "--param parcel_id=VALUE" in capsys.readouterr().err


def test_sla_window_is_as_of_and_an_empty_one_says_so(
    ch: ClickHouseTest, capsys: pytest.CaptureFixture[str]
) -> None:
    put_states(ch, [delivered("D1", 20, 24)])
    late = T0 + 30 * DAY  # the feed runs on (returns, stragglers) long after the deliveries
    put_events(ch, [event_row(scan("D1", "s1", late, Scan.PICKED_UP), version=1, deleted=False)])
    base = ["query", "--dsn", chdb_url(), "--database", ch.database, "--named", "sla_last_7_days"]
    assert main(base) == 0
    out, err = capsys.readouterr()
    assert out == "(0 rows)\n"
    assert "no deliveries in the 7 days up to 2026-12-11T00:00:00.000Z" in err
    assert main([*base, "--param", "as_of=2026-11-12T00:00:00Z", "--format", "json"]) == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert row["delivered"] == 1 and row["on_time_share"] == 1.0
    assert row["window_start"].startswith("2026-11-05") and row["as_of"].startswith("2026-11-12")
