"""API keys for the HTTP endpoints that reveal more than one parcel (``/query``, ``/stats``).

Keys are configured hashed (``TRACKBONE_API_KEYS``: SHA-256 hex digests, comma-separated),
so a leaked configuration does not leak a key. A client sends its key as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; no key is 401, a key that
matches no digest is 403. Digests are compared with ``hmac.compare_digest``.

With no keys configured the keyed endpoints are open, and the services refuse to bind
anything but loopback (``TRACKBONE_WEB_HOST``): a key is required off the machine.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping

from streams.errors import UsageError
from streams.settings import Settings

HEADER = "X-API-Key"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, if any."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get(HEADER) or None


def denied(digests: tuple[str, ...], headers: Mapping[str, str]) -> int | None:
    """None when allowed; else the HTTP status to answer (401 no key, 403 wrong key)."""
    if not digests:
        return None
    key = presented(headers)
    if key is None:
        return 401
    mine = digest(key).encode()
    ok = False
    for known in digests:  # no early exit: the time does not tell which digest matched
        ok |= hmac.compare_digest(mine, known.encode())
    return None if ok else 403


def client_headers(settings: Settings) -> dict[str, str]:
    """What this process sends to a keyed endpoint (``TRACKBONE_API_KEY``)."""
    return {HEADER: settings.api_key} if settings.api_key else {}


def check_bind(settings: Settings, command: str) -> None:
    """Refuse to serve keyed endpoints beyond loopback without keys."""
    if settings.api_keys:
        return
    host = settings.web_host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UsageError(
            f"trackbone {command}: TRACKBONE_WEB_HOST={host} is reachable from other machines:"
            " set TRACKBONE_API_KEYS (SHA-256 digests; `trackbone api-key` makes a key) first"
        )
