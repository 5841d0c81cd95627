"""`streams.verify.reconcile`: what counts as a mismatch and what as merely behind."""

from __future__ import annotations

from streams.replay import ReplayResult
from streams.verify import PartitionRow, reconcile


def test_a_missing_dead_letter_is_a_mismatch_naming_its_offset():
    row = PartitionRow("t.scans", 0, end=10, committed=10, dead_expected=1, dead_missing=[7])
    report = reconcile(ReplayResult(states={}), [row], {}, {}, None)
    assert report.exit_code == 1
    (finding,) = report.problems
    assert finding.what == "dead letter missing"
    assert finding.sample == ["t.scans[0]@7"]


def test_a_worker_behind_its_input_is_behind_not_a_mismatch():
    row = PartitionRow("t.scans", 3, end=10, committed=4)
    report = reconcile(ReplayResult(states={}), [row], {"P1": 2}, {}, None)
    assert report.problems == []
    assert report.exit_code == 11
    assert {f.what for f in report.behind} == {
        "worker has not committed",
        "status ahead of the committed offsets",
    }


def test_a_status_for_a_parcel_no_input_made_is_a_mismatch_once_caught_up():
    row = PartitionRow("t.scans", 0, end=10, committed=10)
    report = reconcile(ReplayResult(states={}), [row], {"GHOST": 3}, {}, None)
    assert [f.what for f in report.problems] == ["status for a parcel no input made"]
    assert report.exit_code == 1
