"""The analysts' read-only path: statement guard, readonly=1 on chdb, CLI and sink route."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from streams.cli import main
from streams.clickhouse import migrations
from streams.clickhouse.client import connect
from streams.clickhouse.exceptions import ReadOnlyViolation
from streams.clickhouse.readonly import check_readonly_sql, handle_query_request, run_readonly
from streams.clickhouse.rows import PARCEL_STATE, STATE_COLUMNS, status_row
from tests.functional.clickhouse_support import (
    ClickHouseTest,
    chdb_url,
    clickhouse_database,
    status,
)

ALLOWED = [
    "SELECT 1",
    "  select 1 ;  ",
    "WITH 1 AS a SELECT a",
    "(SELECT 1) UNION ALL (SELECT 2)",
    "SHOW TABLES",
    "DESCRIBE TABLE parcel_state",
    "-- comment; with a semicolon\nSELECT 1",
    "/* outer /* nested; */ still comment; */ SELECT 1",
    "SELECT 'a;b', \"we;ird\", `col;umn` FROM t",
    "SELECT 'it''s', 'back\\'slash;'",
    "# hash comment; here\nSELECT 1",
]

REFUSED = [
    ("INSERT INTO parcel_state VALUES (1)", "must start with"),
    ("CREATE TABLE x (a Int8) ENGINE = Memory", "must start with"),
    ("DROP TABLE parcel_state", "must start with"),
    ("ALTER TABLE parcel_state DELETE WHERE 1", "must start with"),
    ("SELECT 1; DROP TABLE parcel_state", "one statement"),
    ("SELECT 1;;", "one statement"),
    ("SELECT 1 -- x\n; DROP TABLE t", "one statement"),
    ("SELECT 'x' /* ' */; DROP TABLE t", "one statement"),
    ("SELECT $$ it's $$; DROP TABLE t", "unterminated"),
    ("SELECT $$x$$", r"'\$'"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "OUTFILE"),
    ("SELECT 'unterminated", "unterminated"),
    ("SELECT 1 /* open", "unterminated"),
    ("", "got nothing"),
    ("KILL QUERY WHERE 1", "must start with"),
    ("SYSTEM FLUSH LOGS", "must start with"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_guard_allows_single_reads(sql: str) -> None:
    assert ";" not in check_readonly_sql(sql).rstrip()[-1:]


@pytest.mark.parametrize(("sql", "reason"), REFUSED)
def test_guard_refuses_everything_else(sql: str, reason: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=reason):
        check_readonly_sql(sql)


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[ClickHouseTest]:
    with clickhouse_database(tmp_path) as ctx:
        migrations.migrate(ctx.client, ctx.database)
        ctx.client.insert(
            PARCEL_STATE,
            [status_row(status("R1", 1))],
            column_names=list(STATE_COLUMNS),
            database=ctx.database,
        )
        yield ctx


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO parcel_state (parcel_id, version) VALUES ('R2', 1)",
        "CREATE TABLE evil (a Int8) ENGINE = Memory",
        "DROP TABLE parcel_state",
        "ALTER TABLE parcel_state DELETE WHERE 1",
        "SELECT 1; DROP TABLE parcel_state",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SET readonly = 0",
    ],
)
def test_readonly_session_blocks_writes_even_without_the_guard(
    ch: ClickHouseTest, sql: str
) -> None:
    ro = connect(ch.settings, readonly=True)
    with pytest.raises(DatabaseError, match="readonly"):
        ro.command(sql)
    assert ch.rows(f"SELECT parcel_id FROM {ch.database}.parcel_state FINAL") == [("R1",)]
    assert ch.scalar(f"SELECT count() FROM system.tables WHERE database = '{ch.database}'") == 13


def test_run_readonly_on_a_writable_client(ch: ClickHouseTest) -> None:
    result = run_readonly(
        ch.client, "SELECT parcel_id, {x:String} AS x FROM parcel_state", {"x": "y"}
    )
    assert result.result_rows == [("R1", "y")]
    assert run_readonly(ch.client, "SELECT getSetting('readonly')").result_rows == [(1,)]
    # The writable client stayed writable (readonly=1 rode on that query only).
    ch.client.command(f"CREATE TABLE {ch.database}.scratch (a Int8) ENGINE = Memory")
    with pytest.raises(ReadOnlyViolation):
        run_readonly(ch.client, f"DROP TABLE {ch.database}.scratch")


def test_handle_query_request(ch: ClickHouseTest) -> None:
    ro = connect(ch.settings, readonly=True)
    code, body = handle_query_request(
        ro, {"sql": "SELECT parcel_id, registered_at FROM parcel_state"}
    )
    assert code == 200
    assert body == {
        "columns": ["parcel_id", "registered_at"],
        "rows": [["R1", "2026-11-11T00:00:00.000Z"]],
        "truncated": False,
    }
    assert json.dumps(body)
    code, body = handle_query_request(ro, {"sql": "DROP TABLE parcel_state"})
    assert code == 400 and body["error"].startswith("refused")
    code, body = handle_query_request(ro, {"sql": "SELECT nope FROM parcel_state"})
    assert code == 400 and "nope" in body["error"]
    assert handle_query_request(ro, {"query": 1})[0] == 400
    assert handle_query_request(ro, {"sql": "SELECT 1", "params": [1]})[0] == 400


def test_cli_query_direct_and_refusal(
    ch: ClickHouseTest, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--dsn", chdb_url(), "--database", ch.database]
    assert main(["query", "SELECT parcel_id, holds FROM parcel_state FINAL", *base]) == 0
    out = capsys.readouterr().out
    assert "R1" in out and "(1 row)" in out
    assert main(["query", "SELECT parcel_id FROM parcel_state", "--format", "csv", *base]) == 0
    assert capsys.readouterr().out.splitlines() == ["parcel_id", "R1"]
    assert main(["query", "DROP TABLE parcel_state", *base]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["query", "--list"]) == 0
    assert "where_is_my_parcel" in capsys.readouterr().out


def test_cli_query_goes_through_a_live_sink(
    ch: ClickHouseTest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[dict[str, object]] = []
    settings = ch.settings
    health_pid = [os.getpid()]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert self.path == "/health"
            self.answer(200, {"status": "ok", "pid": health_pid[0]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            self.answer(*handle_query_request(connect(settings, readonly=True), body))

        def answer(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        (tmp_path / "sink.json").write_text(json.dumps({"pid": os.getpid(), "web_url": url}))
        monkeypatch.setenv("TRACKBONE_DATA_DIR", str(tmp_path))
        base = ["--dsn", chdb_url(), "--database", ch.database, "--format", "json"]
        assert (
            main(["query", "--named", "where_is_my_parcel", "--param", "parcel_id=R1", *base]) == 0
        )
        assert json.loads(capsys.readouterr().out.splitlines()[0])["kind"] == "state"
        assert seen and seen[0]["params"] == {"parcel_id": "R1"}
        assert main(["query", "SELECT nope", *base]) == 1
        assert "nope" in capsys.readouterr().err
        # A dead sink's file is ignored: the query opens the engine directly.
        (tmp_path / "sink.json").write_text(json.dumps({"pid": 2**22 + 12345, "web_url": url}))
        count = len(seen)
        assert main(["query", "SELECT 1 AS one", *base]) == 0
        assert len(seen) == count
        # So is a live pid that is not the process answering there (a reused pid).
        (tmp_path / "sink.json").write_text(json.dumps({"pid": os.getpid(), "web_url": url}))
        health_pid[0] = os.getpid() + 1
        assert main(["query", "SELECT 1 AS one", *base]) == 0
        assert len(seen) == count
    finally:
        server.shutdown()
        server.server_close()
