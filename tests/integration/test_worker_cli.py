"""`trackbone worker` as a new user starts it: --web-port 0, /health before any event, its log."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from load.worker_process import REPO
from tests.harness import http_get, wait_for, worker_env


@pytest.mark.timeout(180)
def test_web_port_zero_picks_a_free_port_and_health_has_no_stream_time_yet(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, unique_name("wcli") + ".", unique_name("app"))
    log = tmp_path / "worker.log"
    argv = ["worker", "--web-port", "0", "--data-dir", str(tmp_path / "w")]  # warning: spinner
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *argv],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        found = wait_for(
            lambda: re.search(r"serving on (http://127\.0\.0\.1:(\d+))", log.read_text()),
            timeout=60,
            what="the worker to print its port",
        )
        url, port = found.group(1), int(found.group(2))
        assert 1024 <= port <= 65535 and port != 6066
        _, body = wait_for(
            lambda: (r := _health(url)) and r[0] == 200 and r,
            timeout=120,
            what="the worker's /health",
        )
        assert body == {"status": "ok", "stream_time": None}  # no event yet: no 1970
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert "\x1b[" not in text and "\b" not in text  # no terminal codes in a log file
    assert "ImproperlyConfigured" not in text and "Traceback" not in text


def _health(url: str) -> tuple[int, object] | None:
    try:
        return http_get(f"{url}/health", timeout=2.0)
    except OSError:
        return None
