"""Every expected failure of the CLI: one line on stderr saying what to do, its own exit code.

Run as a new user would (a subprocess, so that what Python prints at exit counts too).
No broker is needed: the failures are about its absence.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from load.worker_process import REPO
from streams import errors


def trackbone(
    *argv: str, data_dir: Path, pipe_to_head: bool = False, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKBONE_")}
    env["TRACKBONE_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "streams.cli", *argv]
    if not pipe_to_head:
        return subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, input=stdin
        )
    with subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # what `| head -1` does
        err = proc.stderr.read()
        code = proc.wait(timeout=60)
    return subprocess.CompletedProcess(command, code, "", err)


def one_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_no_broker_running(data_dir: Path) -> None:
    done = trackbone("follow", data_dir=data_dir)
    one_line(done, errors.BrokerNotRunningError.exit_code, "trackbone follow:", "kafka start")


def test_unreachable_broker_closes_its_client(data_dir: Path) -> None:
    done = trackbone("follow", "--bootstrap", "127.0.0.1:1", data_dir=data_dir)
    one_line(done, errors.KafkaUnreachableError.exit_code, "127.0.0.1:1", "--bootstrap")


def test_bad_broker_address(data_dir: Path) -> None:
    done = trackbone("follow", "--bootstrap", "nonsense", data_dir=data_dir)
    one_line(done, errors.BadKafkaAddressError.exit_code, "'nonsense'", "host:port")


def test_bad_dsn_scheme_is_refused(data_dir: Path) -> None:
    done = trackbone("query", "--dsn", "foo://bar", "SELECT 1", data_dir=data_dir)
    one_line(done, errors.BadDsnError.exit_code, "foo://bar", "chdb, http or https")


def test_missing_and_unreadable_files(data_dir: Path, tmp_path: Path) -> None:
    for command in ("produce", "fold"):
        done = trackbone(command, "--input", str(tmp_path / "nope.jsonl"), data_dir=data_dir)
        one_line(done, errors.InputFileError.exit_code, "cannot read", "nope.jsonl")
    done = trackbone("fold", "--input", str(tmp_path), data_dir=data_dir)
    one_line(done, errors.InputFileError.exit_code, "Is a directory")


def test_no_tracking_database_says_where_to_look(data_dir: Path) -> None:
    done = trackbone("query", "--named", "late_now", data_dir=data_dir)
    one_line(done, errors.ClickHouseUnavailableError.exit_code, "--data-dir", "clickhouse init")


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["fold", "--bogus"], "unrecognized arguments: --bogus"),
        (["fold", "--input", "x", "--bogus"], "unrecognized arguments: --bogus"),
        (["fold"], "required: --input"),
        (["query", "--format", "xml", "SELECT 1"], "invalid choice: 'xml'"),
        (["teleport"], "invalid choice: 'teleport'"),
    ],
)
def test_usage_errors_name_the_problem(data_dir: Path, argv: list[str], problem: str) -> None:
    done = trackbone(*argv, data_dir=data_dir)
    line = one_line(done, errors.UsageError.exit_code, problem, "--help`)")
    assert line.startswith(f"trackbone {argv[0]}:" if argv[0] != "teleport" else "trackbone:")


def test_broken_pipe_is_quiet(data_dir: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            f'{{"type": "ParcelScanned", "event_id": "e{i}", "parcel_id": "P{i}",'
            ' "event_time": "2026-11-11T00:00:00Z", "source": "c", "scan": "PICKED_UP",'
            ' "location": {"country": "CN"}}\n'
            for i in range(20_000)
        )
    )
    done = trackbone("fold", "--input", str(events), data_dir=data_dir, pipe_to_head=True)
    assert done.returncode == errors.BROKEN_PIPE, done.stderr
    assert done.stderr == ""
    dsn = f"chdb://{tmp_path / 'ch'}"
    assert trackbone("clickhouse", "init", "--dsn", dsn, data_dir=data_dir).returncode == 0
    sql = "SELECT number FROM system.numbers LIMIT 200000"
    done = trackbone("query", "--dsn", dsn, sql, data_dir=data_dir, pipe_to_head=True)
    assert done.returncode == errors.BROKEN_PIPE, done.stderr
    assert done.stderr == ""


def test_debug_shows_the_traceback(data_dir: Path) -> None:
    done = trackbone("follow", "--bootstrap", "nonsense", "--debug", data_dir=data_dir)
    assert done.returncode == errors.BadKafkaAddressError.exit_code
    assert "Traceback" in done.stderr and "BadKafkaAddressError" in done.stderr


def test_query_list_shows_whole_descriptions(data_dir: Path) -> None:
    from streams.commands.query import named_queries, query_header

    done = trackbone("query", "--list", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    for name, sql in named_queries().items():
        header = query_header(sql)
        assert f"{name} {header.description}" in flat  # never cut mid-sentence
        assert header.description.endswith((".", ")"))
        for param in header.params:
            assert f"--param {param}=" in flat


def test_help_shows_required_arguments_as_required(data_dir: Path) -> None:
    done = trackbone("fold", "--help", data_dir=data_dir)
    assert done.returncode == 0
    assert "--input FILE.jsonl" in done.stdout and "[--input" not in done.stdout
