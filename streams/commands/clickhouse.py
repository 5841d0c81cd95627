"""`trackbone clickhouse`: create and migrate the tracking database (idempotent)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from streams.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("init", "status"),
        help="init: create database, tables and views (safe to repeat); status: show versions",
    )
    parser.add_argument(
        "--to",
        type=int,
        default=None,
        metavar="VERSION",
        help="init: migrate up to this schema version only (default: latest)",
    )
    add_connection_arguments(parser)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--dsn/--database, shared with `trackbone query`."""
    parser.add_argument(
        "--dsn",
        default=None,
        help="chdb:///abs/dir or http(s)://user:pass@host:8123/db"
        " (default: TRACKBONE_CLICKHOUSE_DSN, else embedded chdb under TRACKBONE_DATA_DIR)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="use the embedded ClickHouse under this data dir (<DIR>/clickhouse), e.g. the"
        " demo's <TRACKBONE_DATA_DIR>/demo/sink (default: TRACKBONE_DATA_DIR)",
    )
    parser.add_argument(
        "--database",
        default=None,
        help="database name (default: TRACKBONE_CLICKHOUSE_DATABASE, else 'tracking')",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings with --dsn, --data-dir (its embedded engine, over the env's DSN), --database."""
    from streams.clickhouse.client import check_dsn

    settings = Settings.from_env()
    changes: dict[str, object] = {}
    if getattr(args, "data_dir", None) is not None:
        changes["data_dir"] = args.data_dir.resolve()
        changes["clickhouse_dsn"] = None
    if getattr(args, "dsn", None):
        changes["clickhouse_dsn"] = check_dsn(args.dsn)
    if getattr(args, "database", None):
        changes["clickhouse_database"] = args.database
    return dataclasses.replace(settings, **changes) if changes else settings  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    from streams.clickhouse import migrations
    from streams.clickhouse.client import close_clients, connect, database_name, is_embedded
    from streams.clickhouse.exceptions import MigrationError

    settings = settings_from(args)
    database = database_name(settings)
    try:
        client = connect(settings)
        if args.action == "init":
            server = not is_embedded(settings.clickhouse_url)
            applied = migrations.migrate(client, database, target=args.to, server=server)
            version = migrations.current_version(client, database)
            done = ", ".join(f"v{v}" for v in applied) if applied else "nothing to apply"
            print(f"{database}: schema v{version} ({done}) at {settings.clickhouse_url}")
        else:
            applied_rows = migrations.applied_migrations(client, database)
            applied_versions = {a.version for a in applied_rows}
            edited = set(migrations.edited_migrations(client, database))
            for m in migrations.MIGRATIONS:
                mark = "applied" if m.version in applied_versions else "pending"
                if m.version in edited:
                    mark += " (edited since applied)"
                print(f"v{m.version}  {mark:<8}  {m.name}")
    except MigrationError as exc:
        print(f"trackbone clickhouse: {exc}", file=sys.stderr)
        return 1
    finally:
        close_clients()
    return 0
