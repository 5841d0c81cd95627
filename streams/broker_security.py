"""The local broker's secure mode (``trackbone kafka start --secure``): TLS, SCRAM, ACLs.

Under ``<data_dir>/kafka/secure/`` (mode 0700), made on the first secure start:

- ``ca.p12``, ``ca.pem``: a CA of this data dir (keytool); clients trust ``ca.pem``
- ``broker.p12``: the broker's key and its certificate for 127.0.0.1/localhost
- ``<role>.password``: one SCRAM-SHA-512 credential per role (mode 0600)
- ``internal.json``: keystore and controller passwords (mode 0600)
- ``carrier-keys.json``: carriers' signing keys (``trackbone kafka carrier-key``)

The client listener speaks SASL_SSL only. The controller listener stays on loopback
with its own SASL/PLAIN password (KRaft controllers cannot read SCRAM credentials,
which live in the metadata they serve). The StandardAuthorizer denies whatever no ACL
allows; ``admin`` is the super user; the other roles get the ACLs of `role_acls`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import LocalBrokerError

ROLES = ("admin", "carrier", "worker", "sink", "downstream")
MECHANISM = "SCRAM-SHA-512"
ACL_TOOL = Path(__file__).resolve().parent / "kafka" / "SecurityAdmin.java"
TOOL_TIMEOUT_S = 120.0

ROLE_SUMMARY = {
    "admin": "super user: creates topics and ACLs; runs verify, demo and bench",
    "carrier": "writes the five input topics; reads nothing",
    "worker": "reads the inputs; writes the outputs; owns <app_id>-* topics and its group",
    "sink": "reads parcel-status and parcel-events in group <app_id>-clickhouse-sink",
    "downstream": "reads parcel-status, milestones, alerts (groups downstream-*); writes nothing",
}


class SecurityError(LocalBrokerError, RuntimeError):
    """The secure set-up (certificates, credentials, ACLs) could not be made."""


def write_private(path: Path, text: str) -> None:
    """Owner-only from the first byte: the file is created 0600, never chmod-ed after."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@dataclass(frozen=True, slots=True)
class Acl:
    principal: str
    resource: str
    """topic, group, cluster, transactional_id"""
    pattern: str
    """literal or prefixed"""
    name: str
    operation: str

    def line(self) -> str:
        return "\t".join(
            (
                f"User:{self.principal}",
                self.resource.upper(),
                self.pattern.upper(),
                self.name,
                self.operation.upper(),
            )
        )


def role_acls(topic_prefix: str, app_id: str) -> list[Acl]:
    """Least privilege per role for one deployment (topic prefix, app id)."""

    def t(base: str) -> str:
        return f"{topic_prefix}tracking.{base}"

    inputs = [t(n) for n in ("registrations", "scans", "handoffs", "customs", "corrections")]
    outputs = [t(n) for n in ("parcel-status", "milestones", "alerts", "dead-letter")]
    parcel_events, lanes = t("parcel-events"), t("lane-observations")
    acls: list[Acl] = []

    def allow(
        role: str, resource: str, names: Iterable[str], ops: Iterable[str], pattern: str = "literal"
    ) -> None:
        for name in names:
            acls.extend(Acl(role, resource, pattern, name, op) for op in ops)

    allow("carrier", "topic", inputs, ("write", "describe"))
    allow("worker", "topic", inputs, ("read", "describe"))
    allow("worker", "topic", [*outputs, parcel_events], ("write", "describe"))
    allow("worker", "topic", [lanes], ("read", "write", "describe", "create"))
    # Faust's own topics: table changelogs, the assignor's leader topic
    allow(
        "worker",
        "topic",
        [f"{app_id}-"],
        ("read", "write", "describe", "create", "describe_configs"),
        "prefixed",
    )
    allow("worker", "group", [app_id], ("read", "describe"))
    allow("sink", "topic", [t("parcel-status"), parcel_events], ("read", "describe"))
    allow("sink", "group", [f"{app_id}-clickhouse-sink"], ("read", "describe"))
    allow(
        "downstream",
        "topic",
        [t("parcel-status"), t("milestones"), t("alerts")],
        ("read", "describe"),
    )
    allow("downstream", "group", ["downstream-"], ("read", "describe"), "prefixed")
    return acls


class SecureDir:
    """The secure mode's files under a broker directory."""

    def __init__(self, broker_dir: Path) -> None:
        self.dir = broker_dir / "secure"
        self.ca_pem = self.dir / "ca.pem"
        self.ca_store = self.dir / "ca.p12"
        self.keystore = self.dir / "broker.p12"
        self.internal = self.dir / "internal.json"
        self.carrier_keys = self.dir / "carrier-keys.json"

    def exists(self) -> bool:
        return self.internal.is_file()

    def password_file(self, role: str) -> Path:
        return self.dir / f"{role}.password"

    def password(self, role: str) -> str:
        return self.password_file(role).read_text().strip()

    def internal_secrets(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.internal.read_text())
        return data

    def ensure(self) -> dict[str, str] | None:
        """Make credentials and certificates once; the new role passwords, or None if kept."""
        if self.exists() and self.keystore.is_file() and self.ca_pem.is_file():
            return None
        keytool = shutil.which("keytool")
        if keytool is None:
            raise SecurityError(
                "`keytool` (from the JDK) is not on PATH: it makes the TLS certificates"
            )
        shutil.rmtree(self.dir, ignore_errors=True)  # an interrupted first start
        self.dir.mkdir(parents=True, mode=0o700)
        passwords = {role: secrets.token_urlsafe(24) for role in ROLES}
        internal = {"store": secrets.token_urlsafe(24), "controller": secrets.token_urlsafe(24)}
        self._make_certificates(keytool, internal["store"])
        for role, password in passwords.items():
            write_private(self.password_file(role), password + "\n")
        write_private(self.carrier_keys, "{}\n")
        write_private(self.internal, json.dumps(internal) + "\n")  # last: marks complete
        return passwords

    def _make_certificates(self, keytool: str, store: str) -> None:
        san = "SAN=ip:127.0.0.1,dns:localhost"
        csr, crt = self.dir / "broker.csr", self.dir / "broker.crt"
        common = ["-storetype", "PKCS12", "-storepass", store, "-keypass", store]
        steps = [
            [
                "-genkeypair",
                "-alias",
                "ca",
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-validity",
                "3650",
                "-dname",
                "CN=trackbone local CA",
                "-ext",
                "bc:c",
                "-keystore",
                str(self.ca_store),
                *common,
            ],
            [
                "-exportcert",
                "-rfc",
                "-alias",
                "ca",
                "-keystore",
                str(self.ca_store),
                "-file",
                str(self.ca_pem),
                "-storepass",
                store,
            ],
            [
                "-genkeypair",
                "-alias",
                "broker",
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-validity",
                "825",
                "-dname",
                "CN=localhost",
                "-ext",
                san,
                "-keystore",
                str(self.keystore),
                *common,
            ],
            [
                "-certreq",
                "-alias",
                "broker",
                "-keystore",
                str(self.keystore),
                "-file",
                str(csr),
                "-storepass",
                store,
            ],
            [
                "-gencert",
                "-rfc",
                "-alias",
                "ca",
                "-keystore",
                str(self.ca_store),
                "-infile",
                str(csr),
                "-outfile",
                str(crt),
                "-ext",
                san,
                "-ext",
                "KU=digitalSignature,keyEncipherment",
                "-ext",
                "EKU=serverAuth",
                "-validity",
                "825",
                "-storepass",
                store,
            ],
            [
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                str(self.ca_pem),
                "-keystore",
                str(self.keystore),
                "-storepass",
                store,
            ],
            [
                "-importcert",
                "-noprompt",
                "-alias",
                "broker",
                "-file",
                str(crt),
                "-keystore",
                str(self.keystore),
                "-storepass",
                store,
            ],
        ]
        for step in steps:
            done = subprocess.run(
                [keytool, *step], capture_output=True, text=True, timeout=60, check=False
            )
            if done.returncode != 0:
                raise SecurityError(
                    f"keytool {step[0]} failed: {(done.stdout + done.stderr).strip()}"
                )
        csr.unlink(missing_ok=True)
        for path in (self.ca_store, self.keystore, self.ca_pem, crt):
            path.chmod(0o600 if path.suffix == ".p12" else 0o644)

    # broker configuration ---------------------------------------------------------------

    def server_properties(self, text: str, broker_port: int, controller_port: int) -> str:
        """The plaintext template's properties turned secure: listeners, TLS, SASL, ACLs."""
        internal = self.internal_secrets()
        replaced = {
            "listeners",
            "advertised.listeners",
            "inter.broker.listener.name",
            "listener.security.protocol.map",
        }
        kept = [ln for ln in text.splitlines() if ln.split("=", 1)[0].strip() not in replaced]
        admin = self.password("admin")
        controller = internal["controller"]
        store = internal["store"]
        scram = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{admin}";'
        )
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="controller" password="{controller}" user_controller="{controller}";'
        )
        secure = [
            "# secure mode (streams/broker_security.py): SASL_SSL clients, SASL/PLAIN controller",
            f"listeners=SASL_SSL://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
            "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={plain}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={self.keystore}",
            f"ssl.keystore.password={store}",
            f"ssl.key.password={store}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_pem}",
            "ssl.client.auth=none",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            "super.users=User:admin;User:controller",
            "auto.create.topics.enable=false",
        ]
        kept = [ln for ln in kept if not ln.startswith("auto.create.topics.enable")]
        return "\n".join([*kept, "", *secure]) + "\n"

    def scram_format_args(self) -> list[str]:
        """``kafka-storage format --add-scram`` for every role: users exist from the start."""
        args: list[str] = []
        for role in ROLES:
            args += ["--add-scram", f"{MECHANISM}=[name={role},password={self.password(role)}]"]
        return args

    def client_options(self, role: str) -> dict[str, Any]:
        """Aiokafka options for a role (the readiness probe and admin calls use ``admin``)."""
        from aiokafka.helpers import create_ssl_context

        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": role,
            "sasl_plain_password": self.password(role),
            "ssl_context": create_ssl_context(cafile=str(self.ca_pem)),
        }

    def client_env(self, role: str) -> dict[str, str]:
        """The ``TRACKBONE_KAFKA_*`` variables a client of this role sets (no secret inline)."""
        return {
            "TRACKBONE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TRACKBONE_KAFKA_SASL_MECHANISM": MECHANISM,
            "TRACKBONE_KAFKA_USER": role,
            "TRACKBONE_KAFKA_PASSWORD_FILE": str(self.password_file(role)),
            "TRACKBONE_KAFKA_CA_FILE": str(self.ca_pem),
        }

    def create_acls(
        self, java: str, classpath: str, log4j: Path, bootstrap: str, acls: list[Acl]
    ) -> None:
        """One JVM run of ``SecurityAdmin.java`` (Kafka's Admin API) as the admin user."""
        with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            props = Path(tmp) / "admin.properties"
            jaas = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="admin" password="{self.password("admin")}";'
            )
            write_private(
                props,
                "\n".join(
                    [
                        f"bootstrap.servers={bootstrap}",
                        "security.protocol=SASL_SSL",
                        f"sasl.mechanism={MECHANISM}",
                        f"sasl.jaas.config={jaas}",
                        "ssl.truststore.type=PEM",
                        f"ssl.truststore.location={self.ca_pem}",
                    ]
                )
                + "\n",
            )
            lines = Path(tmp) / "acls.tsv"
            lines.write_text("\n".join(acl.line() for acl in acls) + "\n")
            cmd = [
                java,
                "-Xmx128m",
                "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp",
                classpath,
                str(ACL_TOOL),
                str(props),
                str(lines),
            ]
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                raise SecurityError(
                    f"creating ACLs failed: {(done.stdout + done.stderr).strip()[-2000:]}"
                )

    def add_carrier_key(self, carrier: str) -> str:
        """A new signing key for ``carrier`` (replacing an old one); returned once."""
        from streams.carrier_auth import new_key

        keys = json.loads(self.carrier_keys.read_text()) if self.carrier_keys.is_file() else {}
        keys[carrier] = key = new_key()
        write_private(self.carrier_keys, json.dumps(keys, indent=2, sort_keys=True) + "\n")
        return key
