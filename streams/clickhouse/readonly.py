"""The analysts' read-only path: a statement guard plus ClickHouse's own readonly=1.

Two layers, because each has a hole the other covers:

* chdb executes multi-statement text ("SELECT 1; DROP TABLE t" drops the table), and
  readonly=1 does not stop ``SELECT ... INTO OUTFILE`` (chdb writes the file). The
  guard refuses anything but one SELECT / WITH / SHOW / DESCRIBE statement, any ``;``
  before the end, ``INTO OUTFILE`` and ``$`` heredoc strings.
* The guard is a small lexer, not ClickHouse's parser. Queries also run with
  readonly=1, verified on chdb to refuse INSERT, CREATE, DROP, ALTER, OPTIMIZE,
  SYSTEM, SET and table functions such as ``file()`` even when the guard is bypassed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError
from clickhouse_connect.driver.query import QueryResult

from projections.jsonform import EPOCH, format_time
from streams.clickhouse.exceptions import ReadOnlyViolation

ALLOWED_FIRST_WORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC"})
_FIRST_WORD = re.compile(r"[A-Za-z_]+")
_OUTFILE = re.compile(r"\bOUTFILE\b", re.IGNORECASE)
MAX_ROWS = 10_000


def _code_only(sql: str) -> str:
    """Blank out literals and comments (same length), so ``;`` and keywords left are real.

    Quotes (', ", `) end at the same quote not escaped by a backslash or doubled; ``--``
    and ``#`` comment to the end of the line; ``/* */`` comments nest, as in ClickHouse.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while True:
                if j >= n:
                    raise ReadOnlyViolation("unterminated quoted string or identifier")
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append(ch + " " * (j - i - 1) + ch)
            i = j + 1
        elif sql.startswith("--", i) or ch == "#":
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while depth:
                if j >= n:
                    raise ReadOnlyViolation("unterminated /* comment")
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(" " * (j - i))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def check_readonly_sql(sql: str) -> str:
    """Return the statement (one trailing ``;`` removed) or raise ReadOnlyViolation."""
    code = _code_only(sql)
    stripped = code.rstrip()
    if stripped.endswith(";"):
        stripped = stripped[:-1].rstrip()
    if ";" in stripped:
        raise ReadOnlyViolation("only one statement per query (found ';' before the end)")
    if "$" in stripped:
        raise ReadOnlyViolation("'$' outside quotes is not allowed (heredoc strings)")
    if _OUTFILE.search(stripped):
        raise ReadOnlyViolation("INTO OUTFILE is not allowed")
    match = _FIRST_WORD.match(stripped.lstrip(" \t\r\n("))
    word = match.group(0).upper() if match else ""
    if word not in ALLOWED_FIRST_WORDS:
        shown = word or "nothing"
        raise ReadOnlyViolation(
            f"read-only queries must start with SELECT, WITH, SHOW or DESCRIBE (got {shown})"
        )
    return sql[: len(stripped)]


def run_readonly(client: Client, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
    """Run one checked read-only statement with readonly=1; ``{name:Type}`` params bind.

    A client opened with ``connect(settings, readonly=True)`` already has readonly=1
    for its whole session; any other client gets it for this query.
    """
    statement = check_readonly_sql(sql)
    settings = {} if client.get_client_setting("readonly") == "1" else {"readonly": 1}
    return client.query(statement, parameters=dict(params or {}) or None, settings=settings)


def json_value(value: Any) -> Any:
    """Convert a result value to JSON: instants as RFC 3339 UTC (the contract's form)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return format_time((aware - EPOCH) // timedelta(milliseconds=1))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID | IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:  # NaN has no JSON form
        return None
    return value


def result_to_json(result: QueryResult, max_rows: int = MAX_ROWS) -> dict[str, Any]:
    rows = result.result_rows
    return {
        "columns": list(result.column_names),
        "rows": [[json_value(v) for v in row] for row in rows[:max_rows]],
        "truncated": len(rows) > max_rows,
    }


def handle_query_request(client: Client, body: object) -> tuple[int, dict[str, Any]]:
    """Serve the worker's ``POST /query``: body {"sql", "params"} -> (status, JSON body).

    Blocking: call it via ``asyncio.to_thread`` from the web server. Pass a read-only
    client (``connect(settings, readonly=True)``). Responses: 200 {"columns", "rows",
    "truncated"}; 400 {"error"} for refused statements, bad bodies and query errors;
    503 when the server cannot be reached.
    """
    if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
        return 400, {"error": 'expected a JSON object {"sql": "...", "params": {...}}'}
    params = body.get("params") or {}
    if not isinstance(params, dict):
        return 400, {"error": "params must be a JSON object"}
    try:
        result = run_readonly(client, body["sql"], params)
    except ReadOnlyViolation as exc:
        return 400, {"error": f"refused: {exc}"}
    except OperationalError as exc:
        return 503, {"error": f"ClickHouse unavailable: {exc}"}
    except ClickHouseError as exc:
        return 400, {"error": str(exc)}
    return 200, result_to_json(result)
