"""`trackbone fold`: JSON lines in, one state per parcel out, problems on stderr by line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.cli import main

REG = {
    "type": "ParcelRegistered",
    "event_id": "r1",
    "parcel_id": "P2",
    "event_time": "2026-11-11T09:30:00+08:00",
    "source": "merchant",
    "merchant_id": "M1",
    "origin": {"country": "CN", "city": "Hangzhou"},
    "destination": {"country": "ES", "city": "Madrid"},
    "service": "EXPRESS",
}


def scan(eid: str, pid: str, when: object, kind: str) -> dict[str, object]:
    return {
        "type": "ParcelScanned",
        "event_id": eid,
        "parcel_id": pid,
        "event_time": when,
        "source": "carrier",
        "scan": kind,
    }


def lines() -> list[str]:
    delivered = scan("s1", "P2", "2026-11-11T02:00:00Z", "DELIVERED")
    return [
        orjson.dumps(REG).decode(),  # 1
        "{not json",  # 2
        "",  # 3 (blank: skipped, still counted)
        orjson.dumps(delivered).decode(),  # 4
        orjson.dumps(scan("s1", "P2", "2026-11-11T02:00:00Z", "PICKED_UP")).decode(),  # 5
        orjson.dumps(scan("s9", "P1", "2026-11-11T02:00:00", "PICKED_UP")).decode(),  # 6
        orjson.dumps(scan("s2", "P1", 1794362400000, "PICKED_UP")).decode(),  # 7
        orjson.dumps(delivered).decode(),  # 8 (exact repeat)
        orjson.dumps({**scan("v1", "P3", 1, "PICKED_UP"), "scan": "LOST"}).decode(),  # 9
        orjson.dumps(
            {
                "type": "EventVoided",
                "event_id": "v1",
                "parcel_id": "P4",
                "event_time": 1794362400000,
                "source": "carrier",
                "voided_event_id": "nothing-yet",
                "reason": "DID_NOT_OCCUR",
            }
        ).decode(),  # 10: a parcel with only a void has no state
    ]


def check(stdout: str, stderr: str) -> None:
    out = [orjson.loads(line) for line in stdout.splitlines()]
    assert [o["parcel_id"] for o in out] == ["P1", "P2"]
    p1, p2 = out
    assert p1["milestone"] == "PICKED_UP" and p1["registered"] is False
    assert p1["last_event_time"] == "2026-11-11T02:00:00.000Z"
    assert p2["milestone"] == "DELIVERED"
    assert p2["delivered_at"] == "2026-11-11T02:00:00.000Z"
    assert p2["event_count"] == 2 and p2["holds"] == [] and p2["custodian"] is None
    assert p2["registered_at"] == "2026-11-11T01:30:00.000Z"
    problems = [line for line in stderr.splitlines() if line.startswith("line ")]
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 5", "line 6", "line 9"]
    assert "malformed JSON" in problems[0]
    assert "conflict" in problems[1] and "'s1'" in problems[1]
    assert "event_time" in problems[2] and "offset" in problems[2]
    assert "scan" in problems[3] and "LOST" in problems[3]
    summary = stderr.splitlines()[-1]
    assert "10 lines read" in summary and "3 invalid" in summary
    assert "1 conflicting" in summary and "1 duplicates" in summary


def test_fold_command_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines()) + "\n")
    assert main(["fold", "--input", str(path)]) == 0
    captured = capsys.readouterr()
    check(captured.out, captured.err)


def test_fold_command_reads_stdin_as_a_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "fold", "--input", "-"],
        input="\n".join(lines()).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    check(done.stdout.decode(), done.stderr.decode())


def test_fold_command_reports_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fold", "--input", "/nonexistent/events.jsonl"]) == 3
    assert "cannot read" in capsys.readouterr().err


def test_out_of_range_time_is_an_invalid_line(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.commands.fold import fold_lines

    out, err = io.StringIO(), io.StringIO()
    raw = orjson.dumps(scan("s1", "P1", 10**17, "PICKED_UP"))
    counts = fold_lines([raw], out, err)
    assert counts["invalid"] == 1 and out.getvalue() == ""
    assert err.getvalue().startswith("line 1: field 'event_time'")
