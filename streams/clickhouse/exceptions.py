"""Errors of the ClickHouse package, so callers can tell our refusals from driver failures."""

from __future__ import annotations

from streams.errors import ClickHouseUnavailableError


class ClickHouseSetupError(ClickHouseUnavailableError, RuntimeError):
    """The engine or database could not be opened (bad DSN, data dir owned by another process)."""


class ReadOnlyViolation(ValueError):
    """A statement the read-only path refuses; the message says why and what is allowed."""


class MigrationError(RuntimeError):
    """The schema is in a state the migrations cannot handle (e.g. newer than this code)."""
