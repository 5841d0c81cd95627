"""One settings object; the only place that reads the environment.

Every knob has a local default so that a new user needs no configuration, and an
environment variable (prefix ``TRACKBONE_``) so that deployments need no code.
CLI flags override by building a new object with ``dataclasses.replace``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import UsageError

PREFIX = "TRACKBONE_"


class SettingError(UsageError, ValueError):
    """A ``TRACKBONE_*`` variable that does not parse (exit code 2 from the CLI)."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Contract topic names (section 4) under an optional prefix."""

    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def registrations(self) -> str:
        return self.name("tracking.registrations")

    @property
    def scans(self) -> str:
        return self.name("tracking.scans")

    @property
    def handoffs(self) -> str:
        return self.name("tracking.handoffs")

    @property
    def customs(self) -> str:
        return self.name("tracking.customs")

    @property
    def corrections(self) -> str:
        return self.name("tracking.corrections")

    @property
    def parcel_status(self) -> str:
        return self.name("tracking.parcel-status")

    @property
    def milestones(self) -> str:
        return self.name("tracking.milestones")

    @property
    def alerts(self) -> str:
        return self.name("tracking.alerts")

    @property
    def dead_letter(self) -> str:
        return self.name("tracking.dead-letter")

    @property
    def parcel_events(self) -> str:
        """Internal: deltas of each parcel's effective event set, for the ClickHouse sink."""
        return self.name("tracking.parcel-events")

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.registrations, self.scans, self.handoffs, self.customs, self.corrections)


def _default_data_dir() -> Path:
    return Path.cwd() / ".trackbone"


def _default_kafka_home() -> Path:
    return Path.home() / ".cache" / "trackbone" / "kafka"


SECRET_FIELDS = frozenset({"kafka_password", "carrier_key", "api_keys", "api_key"})


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Everything configurable, read once from ``TRACKBONE_*`` variables."""

    data_dir: Path = field(default_factory=_default_data_dir)
    kafka_bootstrap: str | None = None
    """None: use the project's local broker (``trackbone kafka start``)."""
    kafka_home: Path = field(default_factory=_default_kafka_home)
    """Where the Kafka jars are cached between runs."""
    kafka_version: str = "4.1.1"
    topic_prefix: str = ""
    partitions: int = 8
    app_id: str = "trackbone"
    clickhouse_dsn: str | None = None
    """None: embedded chdb under the data dir."""
    clickhouse_database: str = "tracking"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    sink_web_port: int = 6067
    """HTTP port of the ClickHouse sink service (``trackbone sink``)."""
    max_events_per_parcel: int = 500
    max_future_hours: float = 24.0
    """An event this far after its record's Kafka timestamp is dead-lettered (0: no limit)."""
    stuck_after_hours: float = 48.0
    stuck_check_interval_s: float = 60.0
    promise_risk_threshold: float = 0.5
    sink_batch_rows: int = 5000
    sink_flush_s: float = 0.5
    sink_max_pending_batches: int = 4
    table_store: str = "rocksdb://"
    state_cache_size: int = 200_000
    """Decoded parcel states kept in memory per worker (write-through to the table)."""
    rocksdb_memory_mb: int = 64
    """RocksDB memory per table partition at most (write buffers and block cache)."""
    session_timeout_s: float = 30.0
    """How long a crashed worker holds its partitions before the group takes them over."""
    stall_after_s: float = 120.0
    """Input waiting and no batch folded for this long: the worker reports itself stalled."""
    max_batch_records: int = 2000
    """Records per fetched batch at most (Faust's ``broker_max_poll_records``)."""
    records_in_flight: int = 50_000
    """Output records handed to Kafka and not yet stored, at most, before the worker waits."""
    eta_enabled: bool = True
    """False: no ETA estimates or lane learning (to measure what they cost)."""
    kafka_security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (``trackbone kafka start --secure``)."""
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_user: str | None = None
    kafka_password: str | None = field(default=None, repr=False)
    """From ``TRACKBONE_KAFKA_PASSWORD`` or the file ``TRACKBONE_KAFKA_PASSWORD_FILE`` names."""
    kafka_ca_file: Path | None = None
    """PEM bundle that signed the broker's certificate (None: the system's trust store)."""
    carrier_id: str | None = None
    """The carrier this producer speaks for: it signs each record (``carrier_auth``)."""
    carrier_key: str | None = field(default=None, repr=False)
    carrier_keys_file: Path | None = None
    """JSON ``{carrier: key}``: the worker checks signatures with it (None: no check)."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """SHA-256 hex digests of the HTTP API keys (``TRACKBONE_API_KEYS``, comma-separated)."""
    api_key: str | None = field(default=None, repr=False)
    """The key this process sends to a sink's keyed endpoints (``trackbone query``, bench)."""
    parcels_public: bool = True
    """False: ``GET /parcels/{id}`` needs an API key too."""
    web_max_body_bytes: int = 64 * 1024
    web_request_timeout_s: float = 30.0

    def __repr__(self) -> str:
        """Secrets masked: settings get logged, passwords must not."""
        shown = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in SECRET_FIELDS and value:
                value = "***"
            elif name == "clickhouse_dsn" and value and "@" in value:
                scheme, _, rest = value.partition("://")
                value = f"{scheme}://***@{rest.rpartition('@')[2]}"
            shown.append(f"{name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def sink_owner_file(self) -> Path:
        """Written by a running ``trackbone sink`` (pid, URL): it owns the embedded engine."""
        return self.data_dir / "sink.json"

    @property
    def clickhouse_url(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def max_future_ms(self) -> int | None:
        return int(self.max_future_hours * 3_600_000) if self.max_future_hours > 0 else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            return value if value not in (None, "") else None

        kwargs: dict[str, object] = {}
        text = {
            "KAFKA_BOOTSTRAP": "kafka_bootstrap",
            "KAFKA_VERSION": "kafka_version",
            "TOPIC_PREFIX": "topic_prefix",
            "APP_ID": "app_id",
            "CLICKHOUSE_DSN": "clickhouse_dsn",
            "CLICKHOUSE_DATABASE": "clickhouse_database",
            "WEB_HOST": "web_host",
            "TABLE_STORE": "table_store",
            "KAFKA_SECURITY_PROTOCOL": "kafka_security_protocol",
            "KAFKA_SASL_MECHANISM": "kafka_sasl_mechanism",
            "KAFKA_USER": "kafka_user",
            "KAFKA_PASSWORD": "kafka_password",
            "CARRIER_ID": "carrier_id",
            "CARRIER_KEY": "carrier_key",
            "API_KEY": "api_key",
        }
        paths = {
            "DATA_DIR": "data_dir",
            "KAFKA_HOME": "kafka_home",
            "KAFKA_CA_FILE": "kafka_ca_file",
            "CARRIER_KEYS_FILE": "carrier_keys_file",
        }
        ints = {
            "PARTITIONS": "partitions",
            "WEB_PORT": "web_port",
            "SINK_WEB_PORT": "sink_web_port",
            "MAX_EVENTS_PER_PARCEL": "max_events_per_parcel",
            "SINK_BATCH_ROWS": "sink_batch_rows",
            "SINK_MAX_PENDING_BATCHES": "sink_max_pending_batches",
            "STATE_CACHE_SIZE": "state_cache_size",
            "ROCKSDB_MEMORY_MB": "rocksdb_memory_mb",
            "MAX_BATCH_RECORDS": "max_batch_records",
            "RECORDS_IN_FLIGHT": "records_in_flight",
            "WEB_MAX_BODY_BYTES": "web_max_body_bytes",
        }
        floats = {
            "STUCK_AFTER_HOURS": "stuck_after_hours",
            "STUCK_CHECK_INTERVAL_S": "stuck_check_interval_s",
            "PROMISE_RISK_THRESHOLD": "promise_risk_threshold",
            "SINK_FLUSH_S": "sink_flush_s",
            "SESSION_TIMEOUT_S": "session_timeout_s",
            "STALL_AFTER_S": "stall_after_s",
            "MAX_FUTURE_HOURS": "max_future_hours",
            "WEB_REQUEST_TIMEOUT_S": "web_request_timeout_s",
        }
        for var, attr in text.items():
            if (value := get(var)) is not None:
                kwargs[attr] = value
        for var, attr in paths.items():
            if (value := get(var)) is not None:
                kwargs[attr] = Path(value).expanduser()
        if (value := get("ETA")) is not None:
            kwargs["eta_enabled"] = value.lower() not in ("0", "false", "off", "no")
        if (value := get("PARCELS_PUBLIC")) is not None:
            kwargs["parcels_public"] = value.lower() not in ("0", "false", "off", "no")
        for var, attr in (
            ("KAFKA_PASSWORD_FILE", "kafka_password"),
            ("CARRIER_KEY_FILE", "carrier_key"),
        ):
            if (value := get(var)) is not None and attr not in kwargs:
                kwargs[attr] = _read_secret(PREFIX + var, Path(value).expanduser())
        if (value := get("API_KEYS")) is not None:
            kwargs["api_keys"] = _api_key_digests(value)
        protocol = str(kwargs.get("kafka_security_protocol", "PLAINTEXT")).upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise SettingError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL={protocol!r}: use one of "
                + ", ".join(sorted(SECURITY_PROTOCOLS))
            )
        kwargs["kafka_security_protocol"] = protocol
        for conv, table in ((int, ints), (float, floats)):
            for var, attr in table.items():
                if (value := get(var)) is not None:
                    try:
                        kwargs[attr] = conv(value)
                    except ValueError:
                        raise SettingError(
                            f"{PREFIX}{var}={value!r} is not a valid {conv.__name__}"
                        ) from None
        return cls(**kwargs)  # type: ignore[arg-type]


SECURITY_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})


def _read_secret(variable: str, path: Path) -> str:
    """A secret from a file (first line, surrounding whitespace dropped)."""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SettingError(f"{variable}={path}: cannot read it ({exc.strerror or exc})") from None


def _api_key_digests(value: str) -> tuple[str, ...]:
    """Comma-separated SHA-256 hex digests: keys are stored hashed, never in clear."""
    digests = tuple(d.strip().lower() for d in value.split(",") if d.strip())
    for digest in digests:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SettingError(
                f"{PREFIX}API_KEYS: entries must be SHA-256 hex digests of the keys"
                " (`trackbone api-key` makes one)"
            )
    return digests
