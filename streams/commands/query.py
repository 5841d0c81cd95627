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
import sys
import urllib.error
import urllib.request
from importlib import resources
from typing import Any

from streams.commands.clickhouse import add_connection_arguments, settings_from
from streams.settings import Settings

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


def _description(sql: str) -> str:
    first = sql.strip().splitlines()[0] if sql.strip() else ""
    return first.removeprefix("--").strip()


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
        headers={"Content-Type": "application/json"},
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


def run(args: argparse.Namespace) -> int:
    from streams.clickhouse.exceptions import ClickHouseSetupError, ReadOnlyViolation
    from streams.clickhouse.readonly import check_readonly_sql

    queries = named_queries()
    if args.list:
        for name in sorted(queries):
            print(f"{name:<22} {_description(queries[name])}")
        return 0
    if bool(args.sql) == bool(args.named):
        print("trackbone query: give either SQL or --named NAME (see --list)", file=sys.stderr)
        return 2
    if args.named and args.named not in queries:
        known = ", ".join(sorted(queries))
        print(f"trackbone query: no named query {args.named!r} (known: {known})", file=sys.stderr)
        return 2
    sql = queries[args.named] if args.named else args.sql
    params: dict[str, str] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"trackbone query: --param expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        params[name] = value
    settings = settings_from(args)
    try:
        check_readonly_sql(sql)
        url = sink_url(settings)
        result = None
        if url is not None:
            try:
                result = query_via_sink(url, sql, params)
            except urllib.error.URLError:
                result = None  # the sink just went away: the engine may be free, try directly
        if result is None:
            result = query_direct(settings, sql, params)
    except ReadOnlyViolation as exc:
        print(f"trackbone query: refused: {exc}", file=sys.stderr)
        return 2
    except (ClickHouseSetupError, RuntimeError) as exc:
        print(f"trackbone query: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        if not isinstance(exc, ClickHouseError):
            raise
        print(f"trackbone query: {exc}", file=sys.stderr)
        return 1
    print_result(result, args.format)
    return 0
