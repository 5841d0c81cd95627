r"""Carrier identity: which carrier sent a record, proven by an HMAC header, checked per event.

Kafka's ACLs decide who may write an input topic at all, but a consumer never sees the
principal that produced a record, so one carrier credential could still write scans
"from" any other carrier. Each carrier therefore holds a key of its own (the workers
know all of them, ``TRACKBONE_CARRIER_KEYS_FILE``) and its producer stamps every
record with two headers:

- ``trackbone-carrier``: the carrier id, e.g. ``cainiao``
- ``trackbone-signature``: hex HMAC-SHA256 under that carrier's key of
  ``b"trackbone-v1\\n" + carrier + b"\\n" + record key + b"\\n" + record value``

A worker with keys configured dead-letters (reason ``unauthorized: ...``) a record that
is unsigned, signed by an unknown carrier, badly signed, or whose event's ``source``
the signing carrier does not own (a hand-over may also be reported by either of its
parties). A carrier owns its own id and the ids below it (``aliexpress`` owns
``aliexpress:MHGH00609``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from projections.core import Authorizer, Record
from projections.events import Event, ParcelHandedOver
from streams.settings import SettingError, Settings

CARRIER_HEADER = "trackbone-carrier"
SIGNATURE_HEADER = "trackbone-signature"
_CONTEXT = b"trackbone-v1\n"

Headers = list[tuple[str, bytes]]


def new_key() -> str:
    """A fresh carrier key: 32 random bytes, hex."""
    return secrets.token_hex(32)


def signature(key: str, carrier: str, record_key: bytes | None, value: bytes) -> str:
    message = b"".join((_CONTEXT, carrier.encode(), b"\n", record_key or b"", b"\n", value))
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def sign(key: str, carrier: str, record_key: bytes | None, value: bytes) -> Headers:
    """The two headers a carrier's producer adds to a record."""
    return [
        (CARRIER_HEADER, carrier.encode()),
        (SIGNATURE_HEADER, signature(key, carrier, record_key, value).encode()),
    ]


def owns(carrier: str, party: str) -> bool:
    return party == carrier or party.startswith(carrier + ":")


def load_keys(path: Path) -> dict[str, str]:
    """``{carrier: key}`` from a JSON file (written by ``trackbone kafka carrier-key``)."""
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SettingError(f"TRACKBONE_CARRIER_KEYS_FILE={path}: unreadable ({exc})") from None
    if not isinstance(keys, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
    ):
        raise SettingError(f"TRACKBONE_CARRIER_KEYS_FILE={path}: expected {{carrier: key}}")
    return keys


def _header(
    headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None, name: str
) -> bytes | None:
    if isinstance(headers, Mapping):
        found = headers.get(name)
        return None if found is None else bytes(found)
    for key, value in headers or ():
        if key == name:
            return bytes(value)
    return None


def make_authorizer(keys: Mapping[str, str]) -> Authorizer:
    """The check ``projections.core.process`` runs on every decoded event (None: allowed)."""

    def authorize(record: Record, event: Event) -> str | None:
        raw_carrier = _header(record.headers, CARRIER_HEADER)
        raw_signature = _header(record.headers, SIGNATURE_HEADER)
        if raw_carrier is None or raw_signature is None:
            return "record not signed by a carrier"
        carrier = raw_carrier.decode("utf-8", "replace")
        key = keys.get(carrier)
        if key is None:
            return f"unknown carrier {carrier!r}"
        value = record.value if isinstance(record.value, bytes) else b""
        expected = signature(key, carrier, record.key, value)
        if not hmac.compare_digest(expected.encode(), raw_signature):
            return f"bad signature for carrier {carrier!r}"
        if owns(carrier, event.source):
            return None
        if isinstance(event, ParcelHandedOver) and (
            owns(carrier, event.from_party) or owns(carrier, event.to_party)
        ):
            return None  # either party of a hand-over witnessed it
        return f"carrier {carrier!r} does not own source {event.source!r}"

    return authorize


def authorizer(settings: Settings) -> Authorizer | None:
    """The worker's (and the replay's) check, or None when no carrier keys are configured."""
    if settings.carrier_keys_file is None:
        return None
    return make_authorizer(load_keys(settings.carrier_keys_file))


def signer(settings: Settings) -> Callable[[Any, bytes, bytes], Headers] | None:
    """How a producer signs (event, key, value), or None to send unsigned.

    ``TRACKBONE_CARRIER_ID`` + ``TRACKBONE_CARRIER_KEY``: a carrier's own producer, every
    record signed as that carrier. Else ``TRACKBONE_CARRIER_KEYS_FILE``: a tool speaking
    for all carriers (the simulator, a test), each record signed by its event's source.
    """
    if settings.carrier_id and settings.carrier_key:
        carrier, key = settings.carrier_id, settings.carrier_key
        return lambda event, record_key, value: sign(key, carrier, record_key, value)
    if settings.carrier_keys_file is not None:
        keys = load_keys(settings.carrier_keys_file)

        def by_source(event: Any, record_key: bytes, value: bytes) -> Headers:
            carrier = _owner(keys, event.source)
            if carrier is None:
                return []
            return sign(keys[carrier], carrier, record_key, value)

        return by_source
    return None


def _owner(keys: Mapping[str, str], source: str) -> str | None:
    if source in keys:
        return source
    head = source.split(":", 1)[0]
    return head if head in keys else None
