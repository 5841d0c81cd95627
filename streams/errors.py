"""Expected failures: what went wrong, what to do, and a distinct exit code.

Commands raise these; ``streams.cli.main`` alone turns them into one line on stderr
(``trackbone <command>: <message>``) and the exit code, so a script can tell a missing
broker from a bad DSN. Anything else is a bug: one line too, a traceback with ``--debug``.
The codes are documented in the README ("Exit codes").
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; the message says how."""

    exit_code = 1


class UsageError(UserError):
    """A bad flag, argument, parameter or setting (argparse uses 2 too)."""

    exit_code = 2


class InputFileError(UserError):
    """An input file is missing or unreadable."""

    exit_code = 3


class BrokerNotRunningError(UserError):
    """No Kafka configured and the local broker is not running."""

    exit_code = 4


class KafkaUnreachableError(UserError):
    """Kafka did not answer at the configured address."""

    exit_code = 5


class BadKafkaAddressError(UserError):
    """The bootstrap address is not a list of host:port."""

    exit_code = 6


class BadDsnError(UserError):
    """The ClickHouse DSN has a scheme trackbone does not know."""

    exit_code = 7


class ClickHouseUnavailableError(UserError):
    """ClickHouse could not be opened or reached, or holds no tracking database."""

    exit_code = 8


class NotFoundError(UserError):
    """The thing asked for (a parcel) does not exist."""

    exit_code = 9


class LocalBrokerError(UserError):
    """The local broker could not be fetched, started or stopped (JDK, Maven, ports)."""

    exit_code = 10


BEHIND = 11
"""`trackbone verify`: nothing disagrees, but the worker or the sink has not caught up."""

INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, what shells report."""

BROKEN_PIPE = 141
"""The reader of stdout went away (``| head``): 128 + SIGPIPE, what shells report."""

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success"),
    (1, "the command ran and found a problem (a failed run), or an unexpected error"),
    (UsageError.exit_code, "usage: unknown command or flag, bad argument, parameter or setting"),
    (InputFileError.exit_code, "an input file is missing or unreadable"),
    (BrokerNotRunningError.exit_code, "no Kafka: the local broker is not running"),
    (KafkaUnreachableError.exit_code, "Kafka did not answer at the given address"),
    (BadKafkaAddressError.exit_code, "the Kafka address is not host:port[,host:port...]"),
    (BadDsnError.exit_code, "the ClickHouse DSN's scheme is not chdb, http or https"),
    (ClickHouseUnavailableError.exit_code, "ClickHouse unavailable or no tracking database"),
    (NotFoundError.exit_code, "not found (an unknown parcel)"),
    (LocalBrokerError.exit_code, "the local broker could not be started or stopped"),
    (BEHIND, "verify: nothing disagrees yet, but the worker or the sink is behind"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
    (BROKEN_PIPE, "the reader of the output went away (`| head`); nothing printed"),
)
