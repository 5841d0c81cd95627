"""One client API for two engines: chdb embedded in this process, or a ClickHouse server.

Both go through clickhouse-connect: ``chdb:///abs/dir`` selects its in-process chdb
backend, ``http(s)://user:pass@host:8123/db`` a server. What we found out about chdb
(chdb 4.4, clickhouse-connect 1.12) and what it means here:

* ONE ENGINE PATH PER PROCESS, AT A TIME. Any number of clients may be open on the
  same path (each owns its own chdb connection handle; they share the data). Opening a
  different path while any client is open raises (``EmbeddedServer already initialized
  with path ...``). Once every client is closed, another path can be opened (engine
  start is ~0.1 s). Tests therefore share one path per session with a unique
  *database* per test (``settings.clickhouse_database``), and close their clients.
* ONE PROCESS PER DATA DIR. A second process opening a path in use fails (ClickHouse's
  ``status`` file lock); we turn that into ClickHouseSetupError with a hint. While the
  sink service owns the dir, ``trackbone query`` goes through the sink's HTTP endpoint.
* THREADS. The chdb backend serialises calls on a handle with its own lock, so a
  shared client may be called from worker threads (``asyncio.to_thread``); concurrent
  calls on several handles of one engine also work (tested). The HTTP client is
  thread-safe as long as it does not pin a session, so we turn session ids off.
* Multi-statement text ("SELECT 1; DROP TABLE t") is executed statement by statement
  by chdb: only the read-only guard (readonly.py) stands between analysts and that.
* Per-call ``settings={"readonly": 1}`` on a *command* or INSERT poisons a chdb handle
  (the driver applies it with SET and cannot restore it in read-only mode); read-only
  work uses its own client (``connect(settings, readonly=True)``) or query() SETTINGS.

Clients are cached process-wide per (url, database, readonly) so that every part of a
process shares handles instead of opening new ones.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ProgrammingError

from streams.clickhouse.exceptions import ClickHouseSetupError
from streams.errors import BadDsnError
from streams.settings import Settings

_registry_lock = threading.Lock()
_clients: dict[tuple[str, str, bool], Client] = {}


DSN_SCHEMES = ("chdb", "http", "https")


def check_dsn(url: str) -> str:
    """Return the DSN if its scheme is one trackbone knows; the driver would guess http."""
    scheme = urlparse(url).scheme.lower()
    if scheme not in DSN_SCHEMES:
        raise BadDsnError(
            f"bad ClickHouse DSN {url!r}: the scheme must be chdb, http or https"
            " (chdb:///abs/dir or http://user:pass@host:8123/db; --dsn / TRACKBONE_CLICKHOUSE_DSN)"
        )
    return url


def is_embedded(url: str) -> bool:
    """Tell chdb DSNs apart: their engine runs in this process and owns a data dir."""
    return url.startswith("chdb:")


def embedded_path(url: str) -> Path | None:
    """Return the data dir of a ``chdb:///abs/dir`` DSN (None: server or in-memory)."""
    if not is_embedded(url):
        return None
    parsed = urlparse(url)
    if parsed.netloc and parsed.netloc not in ("", "memory", ":memory:"):
        return Path(parsed.netloc + parsed.path)
    if parsed.netloc:
        return None
    return Path(parsed.path) if parsed.path else None


def database_name(settings: Settings) -> str:
    """Return the database to use: the one named in a server DSN's path, else settings'.

    A ``chdb:///dir`` DSN's path is the data dir, so only ``chdb://memory/db`` names one.
    """
    url = settings.clickhouse_url
    parsed = urlparse(url)
    if is_embedded(url):
        if parsed.netloc in ("memory", ":memory:") and parsed.path.strip("/"):
            return unquote(parsed.path.strip("/").split("/")[0])
        return settings.clickhouse_database
    name = parsed.path.strip("/").split("/")[0] if parsed.path else ""
    return unquote(name) if name else settings.clickhouse_database


def quote_identifier(name: str) -> str:
    """Backquote a database or table name for DDL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _open(url: str, database: str, readonly: bool) -> Client:
    check_dsn(url)
    settings: dict[str, Any] = {"readonly": 1} if readonly else {}
    extra: dict[str, Any] = {}
    dsn = url
    if is_embedded(url):
        path = embedded_path(url)
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
    else:
        # A pinned session would make concurrent calls from threads fail with
        # "session is locked"; nothing here needs session state.
        extra["autogenerate_session_id"] = False
        # Connect without the database (it may not exist yet); it is set below.
        dsn = urlparse(url)._replace(path="").geturl()
    try:
        client = clickhouse_connect.get_client(
            dsn=dsn, database="", tz_mode="aware", settings=settings, **extra
        )
    except ProgrammingError as exc:
        hint = ""
        if is_embedded(url):
            hint = (
                " (the embedded engine allows one process per data dir and one data dir"
                " per process: is `trackbone sink` running on it? `trackbone query` then goes"
                " through the sink's HTTP endpoint)"
            )
        raise ClickHouseSetupError(f"cannot open ClickHouse at {url}: {exc}{hint}") from exc
    if not readonly:
        client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    client.database = database
    return client


def connect(settings: Settings, *, readonly: bool = False) -> Client:
    """Return the process-wide client for settings' DSN and database (created if missing).

    ``readonly=True`` gives a separate client whose session has readonly=1 (the
    database must already exist: run ``trackbone clickhouse init``).
    """
    url = settings.clickhouse_url
    database = database_name(settings)
    key = (url, database, readonly)
    with _registry_lock:
        client = _clients.get(key)
        if client is None:
            client = _open(url, database, readonly)
            _clients[key] = client
        return client


def close_clients(url: str | None = None) -> None:
    """Close cached clients (all, or those of one DSN) so chdb can release its data dir."""
    with _registry_lock:
        keys = [k for k in _clients if url is None or k[0] == url]
        for key in keys:
            _clients.pop(key).close()
