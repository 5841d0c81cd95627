"""Kafka plumbing shared by the CLI, the simulator and the benchmarks: topics and producers.

Topics are created explicitly (not by broker auto-creation) so that every input has the
contract's partition count and the status topic is compacted from its first record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from streams.errors import KafkaUnreachableError
from streams.settings import Settings

TOPIC_ALREADY_EXISTS = 36
METADATA_TIMEOUT_S = 30.0


def security_options(settings: Settings | None = None) -> dict[str, Any]:
    """Connection-security keyword arguments, from the one settings object.

    Every client of the project (producers, consumers, admin clients, Faust's own
    through ``faust_credentials``) is built with these, so none connects in plaintext
    by oversight. ``settings=None`` reads the environment (``Settings.from_env``).
    """
    s = Settings.from_env() if settings is None else settings
    protocol = s.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(s.kafka_ca_file) if s.kafka_ca_file else None
        )
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = s.kafka_sasl_mechanism
        options["sasl_plain_username"] = s.kafka_user
        options["sasl_plain_password"] = s.kafka_password
    return options


def faust_credentials(settings: Settings) -> Any:
    """The same security as ``security_options``, as Faust's ``broker_credentials``."""
    import faust

    options = security_options(settings)
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return faust.SASLCredentials(
        username=settings.kafka_user,
        password=settings.kafka_password,
        ssl_context=options.get("ssl_context"),
        mechanism=settings.kafka_sasl_mechanism,
    )


class TopicError(RuntimeError):
    """A topic could not be created or did not show up in metadata in time."""


async def start_client(client: Any, bootstrap: str) -> None:
    """Start an aiokafka consumer, producer or admin client; close it again if that fails.

    A client whose start failed still holds sockets and warns "Unclosed ..." at exit;
    the failure becomes a KafkaUnreachableError naming the address and what to check.
    """
    try:
        await client.start()
    except (KafkaConnectionError, KafkaTimeoutError, OSError) as exc:
        close = getattr(client, "stop", None) or client.close
        with contextlib.suppress(Exception):  # closing after a failed start: best effort
            await close()
        raise KafkaUnreachableError(
            f"Kafka did not answer at {bootstrap} ({type(exc).__name__}); check --bootstrap /"
            " TRACKBONE_KAFKA_BOOTSTRAP, or run `trackbone kafka start` for the local broker"
        ) from exc


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    compacted: Iterable[str] = (),
    *,
    replication_factor: int = 1,
    timeout_s: float = METADATA_TIMEOUT_S,
    settings: Settings | None = None,
) -> None:
    """Create the missing topics, then wait until metadata shows all their partitions.

    Names in ``compacted`` get ``cleanup.policy=compact`` (only compact: ``compact,delete``
    hangs Faust's changelog recovery) and are created even if absent from ``names``.
    Existing topics are left as they are.
    """
    compact = set(compacted)
    wanted = list(dict.fromkeys([*names, *compact]))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="trackbone-admin", **security_options(settings)
    )
    await start_client(admin, bootstrap)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions,
                        replication_factor=replication_factor,
                        topic_configs={"cleanup.policy": "compact"} if name in compact else {},
                    )
                    for name in missing
                ],
                timeout_ms=int(timeout_s * 1000),
            )
            failures = []
            for topic, code, *message in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):  # a concurrent creator won the race
                    detail = message[0] if message and message[0] else for_code(code).__name__
                    failures.append(f"{topic}: {detail}")
            if failures:
                raise TopicError("could not create topics: " + "; ".join(failures))
        await _await_metadata(admin, bootstrap, wanted, timeout_s, settings)
    finally:
        await admin.close()


async def _await_metadata(
    admin: AIOKafkaAdminClient,
    bootstrap: str,
    names: list[str],
    timeout_s: float,
    settings: Settings | None = None,
) -> None:
    """Creation returns before every partition has a leader; producers need leaders."""
    deadline = time.monotonic() + timeout_s
    pending = list(names)
    partitions: list[TopicPartition] = []
    while pending:
        described = await admin.describe_topics(pending)
        pending = []
        for topic in described:
            parts = topic["partitions"]
            if (
                topic["error_code"] != 0
                or not parts
                or any(p["leader"] < 0 or p["error_code"] != 0 for p in parts)
            ):
                pending.append(topic["topic"])
            else:
                partitions.extend(TopicPartition(topic["topic"], p["partition"]) for p in parts)
        if pending and time.monotonic() > deadline:
            raise TopicError(f"topics not ready after {timeout_s:.0f} s: {', '.join(pending)}")
        if pending:
            await asyncio.sleep(0.1)  # poll interval, not a synchronisation
    await _await_leaders_serving(
        bootstrap, partitions, max(1.0, deadline - time.monotonic()), settings
    )


async def _await_leaders_serving(
    bootstrap: str,
    partitions: list[TopicPartition],
    timeout_s: float,
    settings: Settings | None = None,
) -> None:
    """Wait until each leader serves its partition, not only names it.

    KRaft brokers publish new metadata a moment before their replica manager hosts the
    partition; produce requests in that window fail with NOT_LEADER and are retried
    with a warning per partition. A list-offsets request hits the same check and the
    consumer retries it quietly with a short backoff.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        retry_backoff_ms=20,
        request_timeout_ms=int(timeout_s * 1000),
        **security_options(settings),
    )
    await start_client(consumer, bootstrap)
    try:
        await consumer.end_offsets(partitions)
    except Exception as exc:
        raise TopicError(f"partitions not served after {timeout_s:.0f} s: {exc!r}") from exc
    finally:
        await consumer.stop()


def contract_topics(settings: Settings) -> tuple[list[str], list[str]]:
    """Return (all contract topics, the compacted ones) under the settings' prefix."""
    topics = settings.topics
    plain = [*topics.inputs, topics.milestones, topics.alerts, topics.dead_letter]
    return [*plain, topics.parcel_status], [topics.parcel_status]


async def ensure_contract_topics(settings: Settings, bootstrap: str) -> None:
    """Create the five inputs and four outputs of contract section 4 if missing."""
    names, compacted = contract_topics(settings)
    await ensure_topics(bootstrap, names, settings.partitions, compacted, settings=settings)


async def ensure_deployment_topics(settings: Settings, bootstrap: str) -> None:
    """Every topic of a deployment outside Faust's own: the contract's and the internal ones.

    On a secured cluster only the admin creates topics (``trackbone kafka grant``).
    """
    await ensure_contract_topics(settings, bootstrap)
    topics = settings.topics
    await ensure_topics(bootstrap, [topics.parcel_events], settings.partitions, settings=settings)
    lane_changelog = f"{settings.app_id}-lane-stats-changelog"
    await ensure_topics(
        bootstrap,
        [topics.name("tracking.lane-observations"), lane_changelog],
        1,
        compacted=[lane_changelog],
        settings=settings,
    )


def lz4_available() -> bool:
    return importlib.util.find_spec("lz4") is not None


PRODUCER_BATCH_BYTES = 256 * 1024
"""Record batch size of carriers' producers (a larger single record gets a batch of its own)."""
MAX_RECORD_BYTES = 1024 * 1024 - 512
"""A record's key and value at most: the broker's default ``message.max.bytes`` (1 MiB) less
the batch framing; a larger one is refused before it is sent, with the line it came from."""


def make_producer(
    bootstrap: str,
    *,
    linger_ms: int = 5,
    compression: str | None = None,
    client_id: str = "trackbone-producer",
    settings: Settings | None = None,
    **overrides: Any,
) -> AIOKafkaProducer:
    """Build a producer tuned for bulk carrier feeds; the caller starts and stops it.

    acks=all so a record counts as sent only once the log has it; small linger and
    256 KiB batches so bulk sends fill batches. ``compression="lz4"`` only if lz4 is
    installed (silently none otherwise): on loopback it mostly costs CPU.
    """
    if compression == "lz4" and not lz4_available():
        compression = None
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": linger_ms,
        "max_batch_size": PRODUCER_BATCH_BYTES,
        "max_request_size": 1024 * 1024,
        "compression_type": compression,
        "request_timeout_ms": 30_000,
        **security_options(settings),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


@functools.lru_cache(maxsize=1 << 16)
def key_partition(key: bytes, count: int) -> int:
    """Kafka's default partition of a key (murmur2, as the Java client and aiokafka do).

    Memoised, bounded: a parcel's key recurs for every event, and aiokafka's
    pure-Python murmur2 costs more than encoding a status.
    """
    return (murmur2(key) & 0x7FFFFFFF) % count


class RecordTooLarge(ValueError):
    """One record does not fit a record batch: the broker would refuse it too."""


class BatchSender:
    """Keyed bulk sends through aiokafka's batch API: about twice the rate of ``send()``.

    ``send()`` pays for a future and a metadata lookup per record; here records go
    straight into one open batch per partition. Partitions are chosen with Kafka's
    default murmur2 partitioner, as ``send()`` and the Java clients do, so a key lands
    on the same partition whoever produced it.
    """

    def __init__(self, producer: AIOKafkaProducer, *, max_in_flight: int = 64) -> None:
        self._producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[tuple[str, int], Any] = {}
        self._open_counts: dict[tuple[str, int], int] = {}
        self._in_flight: list[tuple[asyncio.Future[Any], int]] = []
        self._max_in_flight = max_in_flight
        self.sent = 0
        self.failed = 0
        self.first_error: BaseException | None = None

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        partitions = self._partitions.get(topic)
        if partitions is None:
            found = await self._producer.partitions_for(topic)
            partitions = self._partitions[topic] = sorted(found)
        if len(value) + len(key) > MAX_RECORD_BYTES:
            raise RecordTooLarge(
                f"record too large: {len(value) + len(key):,} bytes encoded, over the "
                f"{MAX_RECORD_BYTES:,} a record may take (the broker's message.max.bytes)"
            )
        slot = (topic, partitions[key_partition(key, len(partitions))])
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = self._producer.create_batch()
            self._open_counts[slot] = 0
        extra = {"headers": headers} if headers else {}
        if batch.append(key=key, value=value, timestamp=None, **extra) is None:
            await self._submit(slot)
            batch = self._open[slot] = self._producer.create_batch()
            self._open_counts[slot] = 0
            if batch.append(key=key, value=value, timestamp=None, **extra) is None:
                raise RecordTooLarge(f"record too large: {len(value):,} bytes for one batch")
        self._open_counts[slot] += 1

    async def _submit(self, slot: tuple[str, int]) -> None:
        batch = self._open.pop(slot)
        count = self._open_counts.pop(slot)
        batch.close()
        future = await self._producer.send_batch(batch, slot[0], partition=slot[1])
        self._in_flight.append((future, count))
        if len(self._in_flight) >= self._max_in_flight:
            await self._settle(self._in_flight[: len(self._in_flight) // 2])

    async def _settle(self, items: list[tuple[asyncio.Future[Any], int]]) -> None:
        outcomes = await asyncio.gather(*(f for f, _ in items), return_exceptions=True)
        for outcome, (_, count) in zip(outcomes, items, strict=True):
            if isinstance(outcome, BaseException):
                self.failed += count
                self.first_error = self.first_error or outcome
            else:
                self.sent += count
        done = {id(f) for f, _ in items}
        self._in_flight = [item for item in self._in_flight if id(item[0]) not in done]

    async def flush(self) -> int:
        """Send the open batches and wait for every acknowledgement; return records sent."""
        for slot in list(self._open):
            await self._submit(slot)
        await self._settle(list(self._in_flight))
        return self.sent
