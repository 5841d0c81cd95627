"""`trackbone kafka start|stop|status|users|grant|carrier-key|env`: the project's own broker.

``start`` prints only the bootstrap address on stdout (timings go to stderr), so that
``export TRACKBONE_KAFKA_BOOTSTRAP=$(trackbone kafka start)`` works. ``start --secure``
makes the broker TLS + SASL/SCRAM with ACLs (``streams.broker_security``); the role
passwords it makes are printed once, on stderr, and kept in owner-only files.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from streams.broker import BrokerError, LocalBroker
from streams.broker_security import ROLE_SUMMARY, ROLES
from streams.errors import UsageError
from streams.settings import Settings

ACTIONS = ("start", "stop", "status", "users", "grant", "carrier-key", "env", "topics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=ACTIONS,
        help="start (idempotent: prints the bootstrap address), stop, status (JSON); secure"
        " broker: users (the roles), grant (a deployment's topics and ACLs), carrier-key"
        " CARRIER (a new signing key, printed once), env ROLE (the client variables);"
        " topics: create a deployment's topics at the configured broker (as admin)",
    )
    parser.add_argument("name", nargs="?", help="carrier-key: the carrier id; env: the role")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where the broker keeps its state (default: TRACKBONE_DATA_DIR or ./.trackbone)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="start: TLS + SASL_SSL (SCRAM-SHA-512) with ACLs; kept for the data dir's life",
    )
    parser.add_argument("--topic-prefix", default=None, help="grant: the deployment's prefix")
    parser.add_argument("--app-id", default=None, help="grant: the deployment's app id")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.data_dir:
        settings = replace(settings, data_dir=Path(args.data_dir))
    broker = LocalBroker(settings, secure=args.secure)
    # a BrokerError is a UserError: streams.cli.main prints it (exit code 10)
    if args.action == "start":
        bootstrap = broker.start()
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in broker.timings.items())
        mode = " (SASL_SSL, ACLs on)" if broker.secure else ""
        print(
            f"kafka {settings.kafka_version} ready at {bootstrap}{mode} ({timings})",
            file=sys.stderr,
        )
        if broker.new_passwords:
            print_new_credentials(broker)
        print(bootstrap)
        return 0
    if args.action == "stop":
        if broker.stop():
            print("kafka stopped", file=sys.stderr)
        else:
            print("kafka was not running", file=sys.stderr)
        return 0
    if args.action == "topics":
        from streams.broker import resolve_bootstrap, run_coro
        from streams.kafka_io import ensure_deployment_topics

        if args.topic_prefix is not None:
            settings = replace(settings, topic_prefix=args.topic_prefix)
        if args.app_id:
            settings = replace(settings, app_id=args.app_id)
        bootstrap = resolve_bootstrap(settings)
        run_coro(lambda: ensure_deployment_topics(settings, bootstrap))
        print(f"topics of prefix {settings.topic_prefix!r} ready at {bootstrap}", file=sys.stderr)
        return 0
    if args.action == "status":
        state = broker.status()
        if state is None:
            print("not running")
            return 1
        print(json.dumps(state, indent=2))
        return 0
    if not broker.secure:
        raise BrokerError(
            f"`trackbone kafka {args.action}` needs the secure broker: run"
            " `trackbone kafka start --secure` (on a fresh --data-dir)"
        )
    security = broker.security
    if args.action == "users":
        for role in ROLES:
            print(f"User:{role:<11} {ROLE_SUMMARY[role]}  [{security.password_file(role)}]")
        return 0
    if args.action == "grant":
        prefix = settings.topic_prefix if args.topic_prefix is None else args.topic_prefix
        app_id = args.app_id or settings.app_id
        made = broker.grant(prefix, app_id)
        print(
            f"deployment prefix={prefix!r} app_id={app_id!r}: "
            + ("topics and ACLs created" if made else "already granted"),
            file=sys.stderr,
        )
        return 0
    if not args.name:
        raise UsageError(f"`trackbone kafka {args.action}` needs a name (see --help)")
    if args.action == "carrier-key":
        key = security.add_carrier_key(args.name)
        print(f"carrier {args.name}: key stored in {security.carrier_keys}", file=sys.stderr)
        print(key)
        return 0
    if args.name not in ROLES:
        raise UsageError(f"unknown role {args.name!r}: one of {', '.join(ROLES)}")
    for name, value in security.client_env(args.name).items():
        print(f"export {name}={value}")
    return 0


def print_new_credentials(broker: LocalBroker) -> None:
    """Once, on the first secure start: who may do what, and the passwords (stderr)."""
    assert broker.new_passwords is not None
    security = broker.security
    print(
        "credentials (printed only now; kept mode 0600 under", security.dir, "):", file=sys.stderr
    )
    for role, password in broker.new_passwords.items():
        print(f"  {role:<11} {password}   {ROLE_SUMMARY[role]}", file=sys.stderr)
    print(f"  CA certificate: {security.ca_pem}", file=sys.stderr)
    print("  client variables: `trackbone kafka env ROLE`", file=sys.stderr)
