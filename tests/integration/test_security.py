"""Who may write and read what, on the secure local broker (SASL_SSL, SCRAM, ACLs).

One secure broker for the session (``secure_kafka``); each test grants its own
deployment (fresh topic prefix and app id) as ``trackbone kafka grant`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from load.worker_process import REPO
from projections.jsonform import parse_event
from streams import api_keys, carrier_auth
from streams.avro import encode_event
from streams.settings import Settings
from tests import mixed_input
from tests.conftest import SecureKafka
from tests.harness import WorkerProcess, read_topic, worker_env
from tests.integration.test_worker_end_to_end import (
    diff,
    expected_fold,
    latest_statuses,
    matches,
    produce_file,
)

pytestmark = pytest.mark.integration


def deployment(secure_kafka: SecureKafka, unique_name) -> tuple[str, str]:
    prefix, app_id = unique_name("sec") + ".", unique_name("app")
    secure_kafka.grant(prefix, app_id)
    return prefix, app_id


async def write_denied(secure_kafka: SecureKafka, role: str, topic: str) -> bool:
    producer = AIOKafkaProducer(
        bootstrap_servers=secure_kafka.bootstrap,
        request_timeout_ms=10_000,
        **secure_kafka.options(role),
    )
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"value", key=b"key")
    except TopicAuthorizationFailedError:
        return True
    finally:
        await producer.stop()
    return False


async def read_denied(secure_kafka: SecureKafka, role: str, topic: str) -> bool:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=secure_kafka.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        **secure_kafka.options(role),
    )
    try:
        await consumer.start()  # no DESCRIBE: refused here already
        await consumer.getmany(timeout_ms=5000)
    except TopicAuthorizationFailedError:
        return True
    finally:
        await consumer.stop()
    return False


async def test_carrier_writes_inputs_only_and_reads_nothing(
    secure_kafka: SecureKafka, unique_name
) -> None:
    prefix, _ = deployment(secure_kafka, unique_name)
    topics = Settings(topic_prefix=prefix).topics
    assert not await write_denied(secure_kafka, "carrier", topics.scans)
    assert await write_denied(secure_kafka, "carrier", topics.parcel_status)
    for topic in (topics.scans, topics.parcel_status, topics.dead_letter):
        assert await read_denied(secure_kafka, "carrier", topic), topic


async def test_downstream_reads_outputs_only_and_writes_nothing(
    secure_kafka: SecureKafka, unique_name
) -> None:
    prefix, _ = deployment(secure_kafka, unique_name)
    topics = Settings(topic_prefix=prefix).topics
    assert not await read_denied(secure_kafka, "downstream", topics.parcel_status)
    for topic in topics.inputs:
        assert await read_denied(secure_kafka, "downstream", topic), topic
    for topic in (topics.parcel_status, topics.scans, topics.alerts):
        assert await write_denied(secure_kafka, "downstream", topic), topic


@pytest.mark.parametrize("how", ["wrong password", "plaintext"])
async def test_wrong_password_and_plaintext_are_refused(
    secure_kafka: SecureKafka, how: str
) -> None:
    options = (
        secure_kafka.options("carrier", sasl_plain_password="not-the-password")
        if how == "wrong password"
        else {}
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=secure_kafka.bootstrap, request_timeout_ms=5000, **options
    )
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()


def http_status(url: str, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10):
            return 200
    except urllib.error.HTTPError as err:
        return int(err.code)


async def test_worker_on_sasl_ssl_matches_fold_and_dead_letters_forged_carriers(
    secure_kafka: SecureKafka, unique_name, tmp_path: Path
) -> None:
    prefix, app_id = deployment(secure_kafka, unique_name)
    mixed = mixed_input.build(parcels=40, seed=11, tag="SEC")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    expected = expected_fold(path)

    # every carrier of the input gets a key; the worker knows them all
    sources = set()
    for line in mixed.lines:
        try:
            sources.add(str(orjson.loads(line)["source"]).split(":", 1)[0])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    keys = {carrier: carrier_auth.new_key() for carrier in sorted(sources | {"forger"})}
    keys_file = tmp_path / "carrier-keys.json"
    keys_file.write_text(json.dumps(keys))

    carrier_env = worker_env(secure_kafka.bootstrap, prefix, app_id) | secure_kafka.env("carrier")
    summary = produce_file(carrier_env | {"TRACKBONE_CARRIER_KEYS_FILE": str(keys_file)}, path)
    assert f"rejected {mixed.invalid_lines}" in summary

    # a carrier reporting in another carrier's name, and a record nobody signed
    forged = parse_event(
        {
            "type": "ParcelScanned",
            "event_id": "FORGED-1",
            "parcel_id": sorted(expected)[0],
            "event_time": "2026-11-30T10:00:00Z",
            "tz_offset_minutes": 0,
            "source": sorted(sources - {"forger"})[0],
            "location": {"facility_id": None, "country": "CN", "city": "Hangzhou"},
            "scan": "DELIVERED",
            "raw_code": "X",
        }
    )
    value, key = encode_event(forged), forged.parcel_id.encode()
    topics = Settings(topic_prefix=prefix).topics
    producer = AIOKafkaProducer(
        bootstrap_servers=secure_kafka.bootstrap, **secure_kafka.options("carrier")
    )
    await producer.start()
    try:
        signed_as_forger = carrier_auth.sign(keys["forger"], "forger", key, value)
        await producer.send_and_wait(topics.scans, value, key=key, headers=signed_as_forger)
        await producer.send_and_wait(topics.scans, value, key=key)
    finally:
        await producer.stop()

    api_key = api_keys.new_key()
    env = (
        worker_env(secure_kafka.bootstrap, prefix, app_id)
        | secure_kafka.env("worker")
        | {
            "TRACKBONE_CARRIER_KEYS_FILE": str(keys_file),
            "TRACKBONE_API_KEYS": api_keys.digest(api_key),
            "TRACKBONE_PARCELS_PUBLIC": "0",
        }
    )
    worker = WorkerProcess(env, tmp_path / "w1").start()
    try:
        admin = secure_kafka.options("admin")
        records = await read_topic(
            secure_kafka.bootstrap,
            topics.parcel_status,
            done=lambda recs: matches(latest_statuses(recs), expected),
            timeout=120,
            security=secure_kafka.options("downstream"),
        )
        latest = latest_statuses(records)
        assert matches(latest, expected), diff(latest, expected)

        dead = await read_topic(
            secure_kafka.bootstrap,
            topics.dead_letter,
            done=lambda recs: (
                sum(dict(r.headers)["reason"].startswith(b"unauth") for r in recs) >= 2
            ),
            timeout=60,
            security=admin,
        )
        unauthorized = [
            dict(r.headers)["reason"].decode()
            for r in dead
            if dict(r.headers)["reason"].startswith(b"unauthorized")
        ]
        assert len(unauthorized) == 2, unauthorized
        assert any("does not own source" in r for r in unauthorized), unauthorized
        assert any("not signed" in r for r in unauthorized), unauthorized
        assert len(dead) == mixed.conflicts + 2

        m = worker.metrics()
        assert (
            m["trackbone_events_in_total"]
            == m["trackbone_events_applied_total"]
            + m["trackbone_events_duplicate_total"]
            + m["trackbone_events_dead_lettered_total"]
        )

        # the replay behind `trackbone verify` applies the same carrier rule
        verify = subprocess.run(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "verify",
                "--no-clickhouse",
                "--json",
                "--wait",
                "60",
            ],
            cwd=REPO,
            env=worker_env(secure_kafka.bootstrap, prefix, app_id)
            | secure_kafka.env("admin")
            | {"TRACKBONE_CARRIER_KEYS_FILE": str(keys_file)},
            capture_output=True,
            text=True,
            check=False,
        )
        report = json.loads(verify.stdout)
        assert report["dead_by_reason"].get("unauthorized") == 2, report
        assert report["dead_by_reason"] == report["dead_letter_topic_by_reason"], report
        assert report["events_in"] == (
            report["applied"] + report["duplicates"] + report["dead_lettered"]
        )
        assert report["problems"] == [], report["problems"]
        assert verify.returncode == 0, verify.stderr

        parcel = f"{worker.url}/parcels/{sorted(expected)[0]}"
        assert http_status(parcel) == 401
        assert http_status(parcel, "not-the-key") == 403
        assert http_status(parcel, api_key) == 200
    finally:
        worker.stop()
    log = worker.log.read_text(errors="replace")
    assert log, "the worker wrote no log to check"
    for role in ("worker", "admin", "carrier"):
        assert secure_kafka.password(role) not in log
    assert api_key not in log
    assert secure_kafka.password("carrier") not in summary
