"""`trackbone worker` and `trackbone sink` child processes and clients of their HTTP APIs.

One implementation for everything that runs them from the outside: the demo, the
benchmark and the integration tests. Waits poll a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import orjson

from projections.jsonform import parse_time
from streams.broker import free_port

REPO = Path(__file__).resolve().parent.parent


class WorkerError(RuntimeError):
    """A worker or sink that would not start, died, or answered with an error."""


def wait_until(
    condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.25
) -> Any:
    """Poll ``condition`` until truthy; WorkerError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
        except WorkerError:
            raise
        except Exception as exc:  # a connection refused while starting, etc.
            last_error = exc
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WorkerError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
        time.sleep(every_s)  # poll interval, not a synchronisation


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each metric over its labels; ``name{label="x"}`` keys keep the labelled values."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        name = name_labels.split("{", 1)[0]
        totals[name] = totals.get(name, 0.0) + number
        if "{" in name_labels:
            totals[name_labels] = number
    return totals


def worker_env(bootstrap: str, prefix: str, app_id: str, **extra: str) -> dict[str, str]:
    """Return the current environment minus its TRACKBONE_* settings, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKBONE_")}
    env |= {
        "TRACKBONE_KAFKA_BOOTSTRAP": bootstrap,
        "TRACKBONE_TOPIC_PREFIX": prefix,
        "TRACKBONE_APP_ID": app_id,
        "PYTHONUNBUFFERED": "1",
    }
    return env | extra


class ServiceClient:
    """What every trackbone HTTP API has: /health and Prometheus /metrics."""

    def __init__(self, url: str, timeout_s: float = 60.0, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.api_key = api_key

    def call(self, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.url + path,
            data=body,
            headers=({"Content-Type": "application/json"} if body is not None else {})
            | ({"X-API-Key": self.api_key} if self.api_key else {}),
            method="POST" if body is not None else "GET",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()

    def health(self) -> bool:
        try:
            status, _ = self.call("/health")
        except OSError:
            return False
        return status == 200

    def metrics(self) -> dict[str, float]:
        """Prometheus text -> totals per metric name (labels summed) plus labelled samples."""
        status, body = self.call("/metrics")
        if status != 200:
            raise WorkerError(f"GET /metrics answered {status}")
        return parse_metrics(body.decode())


class WorkerClient(ServiceClient):
    """The worker's HTTP API, as a downstream app would call it."""

    def stream_time(self) -> int | None:
        status, body = self.call("/health")
        if status != 200:
            return None
        value = orjson.loads(body).get("stream_time")
        return parse_time(value, "stream_time") if value else None

    def parcel(self, parcel_id: str) -> dict[str, Any] | None:
        status, body = self.call(f"/parcels/{parcel_id}")
        if status == 404:
            return None
        if status != 200:
            raise WorkerError(f"GET /parcels/{parcel_id} answered {status}: {body[:200]!r}")
        result: dict[str, Any] = orjson.loads(body)
        return result


class SinkClient(ServiceClient):
    """The ClickHouse sink service's HTTP API: its state and analysts' read-only queries."""

    def stats(self) -> dict[str, Any]:
        """``GET /stats``: every ClickHouse-visible latency sample plus the sink's state."""
        status, body = self.call("/stats")
        if status != 200:
            raise WorkerError(f"GET /stats answered {status}")
        result: dict[str, Any] = orjson.loads(body)
        return result

    def sink_rows(self) -> int:
        """Rows ClickHouse accepted from this sink (cheap: from ``GET /metrics``)."""
        return int(self.metrics().get("trackbone_sink_rows_total", 0))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        payload = orjson.dumps({"sql": sql, "params": dict(params or {})})
        status, body = self.call("/query", payload)
        answer = orjson.loads(body) if body else {}
        if status != 200:
            raise WorkerError(f"POST /query answered {status}: {answer.get('error', answer)}")
        columns = answer["columns"]
        return [dict(zip(columns, row, strict=True)) for row in answer["rows"]]


class ServiceProcess:
    """A `trackbone <command>` child with its own data dir, web port and log file."""

    command = ""
    client_class: type[ServiceClient] = ServiceClient

    def __init__(
        self, env: Mapping[str, str], data_dir: Path, *extra: str, log: Path | None = None
    ) -> None:
        self.env = dict(env)
        self.data_dir = data_dir
        self.extra = extra
        self.port = free_port()
        self.log = log or data_dir / f"{self.command}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = self.client_class(self.url, api_key=self.env.get("TRACKBONE_API_KEY"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> Self:
        self.launch()
        wait_until(
            self.healthy, timeout_s, f"the {self.command} on port {self.port} to answer /health"
        )
        return self

    def launch(self) -> Self:
        """Start the child without waiting for it to be healthy (it may not become so)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "streams.cli", self.command,
            "--web-port", str(self.port), "--data-dir", str(self.data_dir), *self.extra,
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the parent, which stops it cleanly
            )
        return self

    def healthy(self) -> bool:
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise WorkerError(
                f"the {self.command} exited with code {code}; {self.log} ends with:\n{self.tail()}"
            )
        return self.client.health()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL of its group after the deadline."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return proc.returncode

    def kill(self) -> None:
        """Crash: SIGKILL the whole process group, no chance to flush or commit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


class WorkerProcess(ServiceProcess):
    """A `trackbone worker` child (Faust shuts down cleanly on SIGTERM)."""

    command = "worker"
    client_class = WorkerClient
    client: WorkerClient


class SinkProcess(ServiceProcess):
    """A `trackbone sink` child: owns the embedded ClickHouse under its data dir.

    Healthy once its schema is migrated and its consumer runs; SIGTERM flushes the
    rows it holds and commits them before it exits.
    """

    command = "sink"
    client_class = SinkClient
    client: SinkClient

    def stats(self) -> dict[str, Any]:
        return self.client.stats()

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.client.query(sql, params)

    def rows(self) -> int:
        """Rows ClickHouse accepted from this sink so far."""
        return self.client.sink_rows()
