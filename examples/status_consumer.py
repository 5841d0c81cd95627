"""A downstream app reading the compacted status topic, with aiokafka and fastavro only.

It does not import trackbone: it is what your own service would do (README, "Reading the
status topic"). Every record is keyed by ``parcel_id`` (UTF-8); its value is either

* a ``ParcelStatus`` in Avro single-object encoding: ``C3 01``, the writer schema's
  8-byte CRC-64-AVRO fingerprint, then the Avro binary body; or
* null, a tombstone: every event of that parcel was voided, so it has no state any more.
  Drop the parcel from your view. Compaction later removes the tombstone itself, so a
  reader starting from the beginning may also never see the parcel at all.

Run: ``python examples/status_consumer.py --bootstrap 127.0.0.1:9092 --until-idle 5``
(``--topic`` for a topic prefix). Prints one JSON line per record.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import fastavro
from aiokafka import AIOKafkaConsumer
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
MAGIC = b"\xc3\x01"


def writer_schemas() -> tuple[Any, dict[bytes, Any]]:
    """The current ParcelStatus schema (our reader) and every known writer by fingerprint."""
    files = [SCHEMAS / "ParcelStatus.avsc", *sorted(SCHEMAS.glob("history/ParcelStatus.v*.avsc"))]
    writers = {}
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        key = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        writers[key] = fastavro.parse_schema(schema)
    return writers[next(iter(writers))], writers


READER, WRITERS = writer_schemas()


def decode(value: bytes) -> dict[str, Any]:
    """A ParcelStatus record from single-object encoded bytes (any known writer version)."""
    if value[:2] != MAGIC or len(value) < 10:
        raise ValueError("not Avro single-object encoding")
    writer = WRITERS.get(value[2:10])
    if writer is None:
        raise ValueError(f"unknown writer schema fingerprint {value[2:10].hex()}")
    record: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(value[10:]), writer, READER)
    return record


def handle(key: bytes, value: bytes | None) -> dict[str, Any]:
    """What the app does with one record: here, the JSON line it prints."""
    parcel_id = key.decode("utf-8")
    if value is None:
        return {"parcel_id": parcel_id, "removed": True}
    status = decode(value)
    return {
        "parcel_id": parcel_id,
        "milestone": status["milestone"],
        "event_count": status["event_count"],
        "version": status["version"],
    }


def security_from_env() -> dict[str, Any]:
    """TLS/SASL options from the same variables trackbone reads (a secured broker)."""
    from aiokafka.helpers import create_ssl_context

    env = os.environ
    protocol = env.get("TRACKBONE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=env.get("TRACKBONE_KAFKA_CA_FILE"))
    if protocol.startswith("SASL_"):
        password = env.get("TRACKBONE_KAFKA_PASSWORD")
        if not password and env.get("TRACKBONE_KAFKA_PASSWORD_FILE"):
            with open(env["TRACKBONE_KAFKA_PASSWORD_FILE"]) as fh:
                password = fh.read().strip()
        options["sasl_mechanism"] = env.get("TRACKBONE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        options["sasl_plain_username"] = env.get("TRACKBONE_KAFKA_USER")
        options["sasl_plain_password"] = password
    return options


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka host:port")
    parser.add_argument("--topic", default="tracking.parcel-status")
    parser.add_argument("--until-idle", type=float, default=5.0, metavar="SECONDS")
    args = parser.parse_args()
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=None,  # a real app would use its own group id and commit offsets
        auto_offset_reset="earliest",  # the compacted topic holds the latest per parcel
        enable_auto_commit=False,
        **security_from_env(),
    )
    await consumer.start()
    try:
        while batch := await consumer.getmany(timeout_ms=int(args.until_idle * 1000)):
            for records in batch.values():
                for record in records:
                    print(json.dumps(handle(record.key, record.value)), flush=True)
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
