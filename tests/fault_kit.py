"""What every fault test shares: input that keeps flowing, and the end check.

A fault test feeds its input while it injects the fault (`Feed`: chunks through the
project's own ``produce`` path; a chunk that fails, for instance while the broker is
down, is sent again, as a carrier's producer would), then asks `settle` for the two
things that must hold after any fault: ``trackbone verify`` agrees (every input
record accounted for: applied, duplicate or dead-lettered; statuses and ClickHouse
at the reference versions) and the latest statuses equal ``trackbone fold`` of the
input.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from load.worker_process import REPO
from streams.commands.produce import produce_file
from streams.settings import Settings
from tests.harness import read_topic, wait_for
from tests.integration.test_worker_end_to_end import diff, latest_statuses, matches


@dataclass
class Feed:
    """Produces ``lines`` in chunks from a thread, ``pause_s`` apart, resending failed chunks."""

    env: dict[str, str]
    bootstrap: str
    lines: list[bytes]
    chunk: int = 200
    pause_s: float = 0.05
    sent_chunks: int = 0
    resends: int = 0
    errors: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _deadline: float = 0.0

    @property
    def chunks(self) -> int:
        return -(-len(self.lines) // self.chunk)

    def start(self, timeout_s: float = 240.0) -> Feed:
        self._deadline = time.monotonic() + timeout_s
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    async def _run(self) -> None:
        settings = Settings.from_env(self.env)
        for start in range(0, len(self.lines), self.chunk):
            body = b"\n".join(self.lines[start : start + self.chunk]) + b"\n"
            while True:
                try:
                    result = await produce_file(io.BytesIO(body), settings, self.bootstrap)
                    if not result.failed:
                        break
                    self.errors.append(f"{result.failed} records not acknowledged")
                except Exception as exc:  # the broker is away: a carrier retries
                    self.errors.append(repr(exc))
                if time.monotonic() > self._deadline:
                    return
                self.resends += 1
                await asyncio.sleep(0.5)  # backoff before a resend, not a synchronisation
            self.sent_chunks += 1
            await asyncio.sleep(self.pause_s)  # pacing: input keeps flowing during the fault

    def sent_share(self) -> float:
        return self.sent_chunks / self.chunks

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 5)
        assert self.sent_chunks == self.chunks, (
            f"the feed sent {self.sent_chunks}/{self.chunks} chunks: {self.errors[-3:]}"
        )


def verify(env: dict[str, str], *extra: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "verify", "--json", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.stdout, result.stderr
    return result.returncode, orjson.loads(result.stdout)


def settle(
    env: dict[str, str],
    bootstrap: str,
    expected: dict[str, dict],
    *,
    sink_dir: Path | None = None,
    timeout: float = 180,
) -> dict[str, Any]:
    """Wait until verify agrees (never a mismatch on the way); statuses equal the fold."""
    extra = ("--data-dir", str(sink_dir)) if sink_dir is not None else ("--no-clickhouse",)
    final: dict[str, Any] = {}

    def agreed() -> bool:
        code, report = verify(env, *extra)
        final.clear()
        final.update(report)
        assert code in (0, 11), report["problems"]  # behind while it drains, never wrong
        return code == 0

    print(f"\n[fault env] {env['TRACKBONE_TOPIC_PREFIX']} {env['TRACKBONE_APP_ID']}")
    try:
        wait_for(agreed, timeout=timeout, what="verify to report that everything agrees", every=1.0)
    except AssertionError:
        behind = {finding["what"] for finding in final.get("behind", ())}
        if final and not final.get("problems") and behind == {"worker has not committed"}:
            # Everything folded and stored, the commits behind: what the commit stall
            # looked like (Faust's acknowledged offsets: streams.batching, `folded`).
            raise AssertionError(f"only commits are behind: {final['behind']}") from None
        raise
    assert final["events_in"] == final["applied"] + final["duplicates"] + final["dead_lettered"]
    assert final["dead_by_reason"] == final["dead_letter_topic_by_reason"]
    status_topic = Settings.from_env(env).topics.parcel_status
    records = asyncio.run(
        read_topic(
            bootstrap,
            status_topic,
            done=lambda recs: matches(latest_statuses(recs), expected),
            timeout=60,
        )
    )
    latest = latest_statuses(records)
    assert matches(latest, expected), diff(latest, expected)
    print(
        f"\n[fault figures] events in {final['events_in']}, applied {final['applied']}, "
        f"duplicates {final['duplicates']}, dead-lettered {final['dead_lettered']} "
        f"{final['dead_by_reason']}, lost 0, parcels {final['parcels']}"
    )
    return final
