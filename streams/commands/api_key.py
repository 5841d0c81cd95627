"""`trackbone api-key`: a new HTTP API key, and the digest a service is configured with.

The key goes to the client (``TRACKBONE_API_KEY``, or its own header); only the digest
goes into the service's ``TRACKBONE_API_KEYS``, so the service's configuration holds no key.
"""

from __future__ import annotations

import argparse
import sys

from streams import api_keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--digest-of", default=None, metavar="KEY", help="print only the digest of an existing key"
    )


def run(args: argparse.Namespace) -> int:
    if args.digest_of:
        print(api_keys.digest(args.digest_of))
        return 0
    key = api_keys.new_key()
    print(f"key (give to the client; shown once): {key}", file=sys.stderr)
    print(f"digest (add to TRACKBONE_API_KEYS):   {api_keys.digest(key)}", file=sys.stderr)
    print(key)
    return 0
