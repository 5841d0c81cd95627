"""The ClickHouse sink as a service of its own (``trackbone sink``).

One process runs the sink loop (``SinkRunner``: consumer group
``<app id>-clickhouse-sink`` on the status and ``tracking.parcel-events`` topics,
offsets committed after ClickHouse accepted the rows), restarted with capped backoff
when it fails, plus a small aiohttp server:

* ``GET /health``: 200 once the schema is migrated and the consumer runs, else 503;
  carries the pid so that ``trackbone query`` can tell this process from a stale file.
* ``GET /metrics``: Prometheus: rows inserted by table, batches, write failures,
  restarts, pending rows and consumer lag by partition.
* ``GET /stats``: ``SinkRunner.stats()``: ClickHouse-visible latency samples and state.
* ``POST /query``: ``{"sql", "params"}``: one read-only SELECT (``readonly.py``).

The embedded engine allows one process per data dir, so this process owns it and
announces itself in ``<data dir>/sink.json`` (pid, URL) while it serves; analysts'
queries come here instead of opening the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from streams import api_keys
from streams.settings import Settings
from streams.sink_runner import SinkRunner

log = logging.getLogger(__name__)

RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_RUN_S = 60.0
"""A run that lasted this long resets the restart backoff."""


class SinkCollector:
    """Reads the runner's counters at scrape time (they survive restarts of the loop)."""

    def __init__(self, service: SinkService) -> None:
        self.service = service
        self.lag: dict[tuple[str, int], int] = {}

    def collect(self) -> Iterator[Metric]:
        runner = self.service.runner
        totals = runner.totals()
        rows = CounterMetricFamily(
            "trackbone_sink_rows", "Rows accepted by ClickHouse", labels=["table"]
        )
        for table, count in sorted(totals.rows_by_table.items()):
            rows.add_metric([table], count)
        yield rows
        yield CounterMetricFamily(
            "trackbone_sink_batches", "Batches accepted by ClickHouse", value=totals.batches
        )
        yield CounterMetricFamily(
            "trackbone_sink_write_failures",
            "Failed batch inserts (each retried until it succeeds)",
            value=totals.write_failures,
        )
        yield CounterMetricFamily(
            "trackbone_sink_restarts",
            "Restarts of the sink loop after a failure",
            value=self.service.restarts,
        )
        pending = runner.sink.pending_rows if runner.sink is not None else 0
        yield GaugeMetricFamily(
            "trackbone_sink_pending_rows", "Rows buffered, not yet in ClickHouse", value=pending
        )
        lag = GaugeMetricFamily(
            "trackbone_sink_consumer_lag",
            "Records not yet consumed by the sink",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(self.lag.items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag


class SinkService:
    """The sink loop with restarts, and its HTTP API."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.runner = SinkRunner(settings, bootstrap)
        self.restarts = 0
        self.last_error: str | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = SinkCollector(self)
        self.registry.register(self.collector)

    # -- the loop ---------------------------------------------------------------------

    async def run_sink(self) -> None:
        """Run the sink until cancelled; after a failure restart it with capped backoff.

        Nothing is lost across a restart: uncommitted offsets are consumed again and
        the re-written rows are idempotent (versioned ReplacingMergeTree rows).
        """
        delay = RESTART_INITIAL_S
        while True:
            started = time.monotonic()
            try:
                await self.runner.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = repr(exc)
                if time.monotonic() - started > HEALTHY_RUN_S:
                    delay = RESTART_INITIAL_S
                log.exception("ClickHouse sink failed; restarting in %.0f s", delay)
                self.restarts += 1
                await asyncio.sleep(delay)  # backoff before a retry, not a synchronisation
                delay = min(delay * 2, RESTART_MAX_S)

    # -- HTTP -----------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.web_max_body_bytes,
            middlewares=[self._guard],
        )
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/query", self.query)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """API keys on /stats and /query; a request taking too long is cut off (408)."""
        if request.path in KEYED_PATHS:
            status = api_keys.denied(self.settings.api_keys, request.headers)
            if status is not None:
                error = "API key required" if status == 401 else "API key not accepted"
                return web.json_response({"error": error}, status=status)
        try:
            async with asyncio.timeout(self.settings.web_request_timeout_s):
                response: web.StreamResponse = await handler(request)
                return response
        except TimeoutError:
            return web.json_response({"error": "request took too long"}, status=408)

    async def health(self, request: web.Request) -> web.Response:
        ready = self.runner.ready
        body = {
            "status": "ok" if ready else "starting" if not self.restarts else "restarting",
            "pid": os.getpid(),
            "group_id": self.runner.group_id,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }
        return web.json_response(body, status=200 if ready else 503, dumps=_dumps)

    async def _lag(self) -> dict[Any, int]:
        lag = await self.runner.lag()
        self.collector.lag = {(tp.topic, tp.partition): value for tp, value in lag.items()}
        return lag

    async def metrics(self, request: web.Request) -> web.Response:
        await self._lag()
        return web.Response(
            body=generate_latest(self.registry),
            content_type=CONTENT_TYPE_LATEST.split(";")[0],
            charset="utf-8",
        )

    async def stats(self, request: web.Request) -> web.Response:
        body = self.runner.stats(await self._lag())
        body["sink"] |= {"restarts": self.restarts, "last_error": self.last_error}
        return web.json_response(body, dumps=_dumps)

    async def query(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            return web.json_response({"error": 'body must be JSON: {"sql": ...}'}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            # Refused before any engine is opened.
            error = 'expected a JSON object {"sql": "...", "params": {...}}'
            return web.json_response({"error": error}, status=400)
        status, answer = await asyncio.to_thread(self._readonly_query, body)
        return web.json_response(answer, status=status, dumps=_dumps)

    def _readonly_query(self, body: object) -> tuple[int, dict[str, Any]]:
        from streams.clickhouse.client import connect
        from streams.clickhouse.exceptions import ClickHouseSetupError
        from streams.clickhouse.readonly import handle_query_request

        try:
            client = connect(self.settings, readonly=True)
        except ClickHouseSetupError as exc:
            return 503, {"error": str(exc)}
        return handle_query_request(client, body)

    # -- the process ------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve HTTP and run the sink until SIGTERM/SIGINT; flush and commit on the way out."""
        settings = self.settings
        api_keys.check_bind(settings, "sink")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(self.web_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.web_host, settings.sink_web_port)
        await site.start()
        marker = settings.sink_owner_file
        marker.write_bytes(
            orjson.dumps(
                {
                    "pid": os.getpid(),
                    "web_url": f"http://{settings.web_host}:{settings.sink_web_port}",
                    "app_id": settings.app_id,
                    "clickhouse_url": settings.clickhouse_url,
                }
            )
        )
        sink = asyncio.create_task(self.run_sink(), name="clickhouse-sink")
        try:
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({sink, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
        finally:
            sink.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sink  # the sink flushes what it holds and commits it
            await runner.cleanup()
            marker.unlink(missing_ok=True)
            from streams.clickhouse.client import close_clients

            await asyncio.to_thread(close_clients)


KEYED_PATHS = frozenset({"/stats", "/query"})


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
