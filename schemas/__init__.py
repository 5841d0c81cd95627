"""Python helpers next to the schemas: the .avsc files are the source of truth.

Layout: ``schemas/<Name>.avsc`` is the current version of each schema;
``schemas/history/<Name>.v<N>.avsc`` keeps every earlier version N, so the codec
can still read old messages and tests can check that every change stays
compatible both ways. The current version is one more than the newest in history.
Files are read through importlib.resources so this works from an installed wheel.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

EVENT_SCHEMAS: tuple[str, ...] = (
    "ParcelRegistered",
    "ParcelScanned",
    "ParcelHandedOver",
    "CustomsStatusRecorded",
    "EventVoided",
)
"""One schema per event type; the name is the contract's event type."""
STATUS_SCHEMA = "ParcelStatus"

_HISTORY_FILE = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_]*)\.v(?P<version>[0-9]+)\.avsc")


@cache
def _text(relative: str) -> str:
    return files(__name__).joinpath(relative).read_text(encoding="utf-8")


@cache
def names() -> tuple[str, ...]:
    """Names of all current schemas, sorted."""
    return tuple(
        sorted(
            entry.name.removesuffix(".avsc")
            for entry in files(__name__).iterdir()
            if entry.name.endswith(".avsc")
        )
    )


def load_schema(name: str) -> dict[str, Any]:
    """Return the current schema `name` as a fresh JSON dict (safe to mutate)."""
    if name not in names():
        raise KeyError(f"no schema named {name!r} (known: {', '.join(names())})")
    schema: dict[str, Any] = json.loads(_text(f"{name}.avsc"))
    return schema


@cache
def _history_versions(name: str) -> tuple[int, ...]:
    found = []
    for entry in files(__name__).joinpath("history").iterdir():
        match = _HISTORY_FILE.fullmatch(entry.name)
        if match and match["name"] == name:
            found.append(int(match["version"]))
    return tuple(sorted(found))


def history(name: str) -> list[tuple[int, dict[str, Any]]]:
    """Earlier versions of `name` as (version, schema), oldest first; empty if none."""
    load_schema(name)  # unknown names fail loudly rather than look history-less
    return [
        (version, json.loads(_text(f"history/{name}.v{version}.avsc")))
        for version in _history_versions(name)
    ]


def current_version(name: str) -> int:
    """Version number of the current file: one more than the newest kept in history."""
    past = _history_versions(name)
    return past[-1] + 1 if past else 1


def versions(name: str) -> list[tuple[int, dict[str, Any]]]:
    """Every version of `name`, oldest first, the current one last."""
    return [*history(name), (current_version(name), load_schema(name))]
