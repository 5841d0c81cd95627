"""`trackbone query`: run one read-only SQL statement or a named query, print the result.

The embedded engine allows one process per data dir: when the sink service owns it
(``<data_dir>/sink.json`` names a live pid whose ``GET /health`` answers with that
pid), the query goes to the sink's ``POST /query``; otherwise this process opens the
engine itself. A server DSN is always queried directly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from typing import Any

from streams import api_keys
from streams.commands.clickhouse import add_connection_arguments, settings_from
from streams.errors import ClickHouseUnavailableError, NotFoundError, UsageError, UserError
from streams.settings import Settings

AS_OF = "as_of"
STREAM_TIME_SQL = "SELECT toUnixTimestamp64Milli(stream_time) AS ms FROM stream_time"
"""The default as-of of lateness queries: the latest effective event time in the data."""
PLACEHOLDER = re.compile(r"\{(\w+):")

HTTP_TIMEOUT_S = 120.0
HEALTH_TIMEOUT_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", nargs="?", help="one SELECT / WITH / SHOW / DESCRIBE statement")
    parser.add_argument(
        "--named", metavar="NAME", help="run a ready query from streams/sql (see --list)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="query parameter for {NAME:Type} placeholders (repeatable)",
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), csv with a header, or json (one object per line)",
    )
    parser.add_argument("--list", action="store_true", help="list the named queries")
    add_connection_arguments(parser)


def named_queries() -> dict[str, str]:
    """Ready queries shipped in ``streams/sql``: name -> SQL text."""
    folder = resources.files("streams") / "sql"
    return {
        entry.name.removesuffix(".sql"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


@dataclass(frozen=True, slots=True)
class QueryHeader:
    """What a named query's leading comment says: description, parameters, empty result."""

    description: str
    params: dict[str, str]
    if_empty: str | None
    """An empty result means "not found": this message, exit code 9."""
    note_if_empty: str | None = None
    """An empty result is an answer: printed, then this note on stderr, exit code 0."""


def query_header(sql: str) -> QueryHeader:
    """Parse the leading ``--`` lines: prose, ``param NAME: doc`` and ``if empty: message``."""
    prose: list[str] = []
    params: dict[str, str] = {}
    if_empty = note_if_empty = None
    for raw in sql.strip().splitlines():
        if not raw.startswith("--"):
            break
        line = raw.removeprefix("--").strip()
        if line.startswith("param ") and ":" in line:
            name, _, doc = line.removeprefix("param ").partition(":")
            params[name.strip()] = doc.strip()
        elif line.startswith("if empty:"):
            if_empty = line.removeprefix("if empty:").strip()
        elif line.startswith("note if empty:"):
            note_if_empty = line.removeprefix("note if empty:").strip()
        else:
            prose.append(line)
    return QueryHeader(" ".join(prose), params, if_empty, note_if_empty)


def placeholders(sql: str) -> list[str]:
    """The ``{name:Type}`` parameters of a statement, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(sql)))


def parse_as_of(text: str) -> int:
    """``as_of`` as epoch millis: RFC 3339 (``2026-11-12T08:00:00Z``), millis, or ``now``."""
    from projections.jsonform import parse_time

    if text == "now":
        return time.time_ns() // 1_000_000
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return parse_time(text, AS_OF)
    except ValueError:
        raise UsageError(
            f"--param as_of={text!r}: expected an RFC 3339 time (2026-11-12T08:00:00Z),"
            " epoch millis or 'now'"
        ) from None


def sink_url(settings: Settings) -> str | None:
    """Return the URL of the sink service that owns the embedded engine, else None.

    The owner file alone could be stale (a SIGKILLed sink, a reused pid): the pid must
    be alive and the URL's ``/health`` must report that same pid.
    """
    from streams.clickhouse.client import is_embedded

    if not is_embedded(settings.clickhouse_url):
        return None
    try:
        info = json.loads(settings.sink_owner_file.read_text(encoding="utf-8"))
        pid, url = int(info["pid"]), str(info["web_url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=HEALTH_TIMEOUT_S) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:  # 503 while starting: still the owner
        body = exc.read()
    except OSError:
        return None
    try:
        answered = json.loads(body).get("pid")
    except (ValueError, AttributeError):
        return None
    return url if answered == pid else None


def query_via_sink(url: str, sql: str, params: dict[str, str]) -> dict[str, Any]:
    """POST the statement to the sink; return {"columns", "rows"} or raise RuntimeError."""
    request = urllib.request.Request(
        f"{url}/query",
        data=json.dumps({"sql": sql, "params": params}).encode(),
        headers={"Content-Type": "application/json"} | api_keys.client_headers(Settings.from_env()),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise RuntimeError(message) from None


def query_direct(settings: Settings, sql: str, params: dict[str, str]) -> dict[str, Any]:
    from streams.clickhouse.client import close_clients, connect
    from streams.clickhouse.readonly import result_to_json, run_readonly

    try:
        return result_to_json(run_readonly(connect(settings, readonly=True), sql, params))
    finally:
        close_clients()


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def print_result(result: dict[str, Any], fmt: str) -> None:
    columns: list[str] = result["columns"]
    rows: list[list[Any]] = result["rows"]
    out = sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row, strict=False)), ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([["" if v is None else _cell(v) for v in row] for row in rows])
    elif not columns:  # an empty result may come without its columns: no blank header
        out.write("(0 rows)\n")
    else:
        cells = [[_cell(v) for v in row] for row in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        out.write("\n" + "  ".join("-" * w for w in widths) + "\n")
        for row in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
            out.write("\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    if result.get("truncated"):
        print(f"trackbone query: result truncated to {len(rows)} rows", file=sys.stderr)


def print_list(queries: dict[str, str], width: int = 100) -> None:
    """Each named query with its whole description and parameters, wrapped, never cut."""
    indent = " " * 23
    for name in sorted(queries):
        header = query_header(queries[name])
        text = f"{name:<22} {header.description}"
        print(textwrap.fill(text, width, subsequent_indent=indent))
        for param, doc in header.params.items():
            print(
                textwrap.fill(
                    f"--param {param}=...: {doc}",
                    width,
                    initial_indent=indent,
                    subsequent_indent=indent + "  ",
                )
            )


def execute(settings: Settings, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one read-only statement through the sink that owns the engine, else directly."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from streams.clickhouse.readonly import check_readonly_sql

    check_readonly_sql(sql)
    try:
        url = sink_url(settings)
        if url is not None:
            try:
                return query_via_sink(url, sql, params)
            except urllib.error.URLError:
                pass  # the sink just went away: the engine may be free, try directly
        return query_direct(settings, sql, params)
    except (RuntimeError, ClickHouseError) as exc:
        raise _query_failure(settings, exc) from exc


def _query_failure(settings: Settings, exc: Exception) -> UserError:
    text = str(exc).strip()
    if isinstance(exc, UserError):
        return exc
    if "UNKNOWN_DATABASE" in text or "UNKNOWN_TABLE" in text:
        from streams.clickhouse.client import database_name

        return ClickHouseUnavailableError(
            f"no tracking database {database_name(settings)!r} (or an older schema) at"
            f" {settings.clickhouse_url}: point --data-dir at a sink's data dir (the demo's is"
            " <TRACKBONE_DATA_DIR>/demo/sink) or --dsn at a server, or run"
            " `trackbone clickhouse init`"
        )
    first = text.splitlines()[0] if text else repr(exc)
    return UserError(f"ClickHouse refused the query: {first}")


def stream_time_ms(settings: Settings) -> int | None:
    """The data's stream time (the default as-of), None when it holds no events."""
    rows = execute(settings, STREAM_TIME_SQL, {})["rows"]
    value = rows[0][0] if rows else None
    return None if value in (None, 0) else int(value)


def run(args: argparse.Namespace) -> int:
    from projections.jsonform import format_time
    from streams.clickhouse.exceptions import ReadOnlyViolation

    queries = named_queries()
    if args.list:
        print_list(queries)
        return 0
    if bool(args.sql) == bool(args.named):
        raise UsageError("give either SQL or --named NAME (see --list)")
    if args.named and args.named not in queries:
        known = ", ".join(sorted(queries))
        raise UsageError(f"no named query {args.named!r} (known: {known})")
    sql = queries[args.named] if args.named else args.sql
    params: dict[str, Any] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param expects NAME=VALUE, got {item!r}")
        params[name] = value
    wanted = placeholders(sql)
    missing = [name for name in wanted if name not in params and name != AS_OF]
    if missing:
        given = " ".join(f"--param {name}=VALUE" for name in missing)
        raise UsageError(f"the query needs {given} (see --list)")
    settings = settings_from(args)
    try:
        if AS_OF in wanted:
            if AS_OF in params:
                params[AS_OF] = parse_as_of(str(params[AS_OF]))
                how = "given"
            else:
                stream_time = stream_time_ms(settings)
                params[AS_OF] = stream_time if stream_time is not None else 0
                how = "stream time: the latest event time in the data; --param as_of= to change"
            print(f"trackbone query: as of {format_time(params[AS_OF])} ({how})", file=sys.stderr)
        result = execute(settings, sql, params)
    except ReadOnlyViolation as exc:
        raise UsageError(f"refused: {exc}") from None
    header = query_header(sql)
    shown = dict(params)
    if AS_OF in shown:
        shown[AS_OF] = format_time(shown[AS_OF])
    if not result["rows"] and header.if_empty:
        raise NotFoundError(header.if_empty.format(**shown))
    print_result(result, args.format)
    if not result["rows"] and header.note_if_empty:
        print(f"trackbone query: {header.note_if_empty.format(**shown)}", file=sys.stderr)
    return 0
