"""The project's own single-node Apache Kafka broker (KRaft), assembled from Maven Central.

No Docker and no apache.org downloads: Maven resolves the broker's runtime classpath
into a per-version jar cache once, then the broker runs detached on the installed
JDK, with its state under ``<data_dir>/kafka/``:

- ``server.properties``  rendered from the packaged template (loopback, free ports)
- ``log-dirs/``          the formatted KRaft storage; kept across stop/start
- ``broker.log``         the JVM's stdout+stderr (previous run in ``broker.log.1``)
- ``broker.json``        pid, bootstrap, ports, started_at, timings: exists while it runs
- ``ports.json``         the last ports used, reused on restart so the quorum keeps its address

Start-up is mostly class loading: the first run of a JVM build dumps an AppCDS archive
of the broker's classes at exit (``<kafka_home>/<version>/broker-<jvm>.jsa``), later runs
map it, which roughly halves the time to ready.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from streams.broker_security import MECHANISM, SecureDir, role_acls, write_private
from streams.errors import BadKafkaAddressError, BrokerNotRunningError, LocalBrokerError
from streams.settings import Settings

log = logging.getLogger(__name__)

KAFKA_CONFIG_DIR = Path(__file__).resolve().parent / "kafka"
POM = KAFKA_CONFIG_DIR / "pom.xml"
SERVER_TEMPLATE = KAFKA_CONFIG_DIR / "server.properties.template"
BROKER_LOG4J = KAFKA_CONFIG_DIR / "log4j2.properties"
TOOLS_LOG4J = KAFKA_CONFIG_DIR / "tools-log4j2.properties"

LIBS_MARKER = ".complete"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
FETCH_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 120.0
JVM_OPTS = ("-Xms256m", "-Xmx1g", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError")
MAIN_CLASS = "kafka.Kafka"

T = TypeVar("T")


class BrokerError(LocalBrokerError, RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


class BrokerNotRunning(BrokerError, BrokerNotRunningError):
    """No bootstrap configured and no local broker running."""

    exit_code = BrokerNotRunningError.exit_code


def log4j_version_for(kafka_version: str) -> str:
    """Log4j2 release that Kafka itself ships with (the published POM lacks the binding)."""
    major_minor = tuple(int(p) for p in kafka_version.split(".")[:2] if p.isdigit())
    return "2.25.3" if major_minor >= (4, 2) else "2.24.3"


def new_cluster_id() -> str:
    """Base64url of 16 random bytes without padding; a leading '-' would read as a CLI flag."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):
            return cid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Could a listener bind ``port``? Asked as Kafka binds: with ``SO_REUSEADDR``.

    Without it, connections of clients that just went away (TIME_WAIT) made a port
    look taken, so a restarted broker moved to new ports while every running client
    kept dialling the old address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    """Tell whether pid runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")


def tail(path: Path, lines: int = 40, start: int = 0) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return "(no log)"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def run_coro(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="trackbone-broker-async", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def port_open(address: str, timeout_s: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


async def answers(
    bootstrap: str, timeout_s: float = 5.0, security: dict[str, Any] | None = None
) -> bool:
    """One readiness probe: an admin client can bootstrap and list topics."""
    from aiokafka.admin import AIOKafkaAdminClient

    # a plain connect first: aiokafka logs every refused connection as an error
    if not port_open(bootstrap.split(",")[0], timeout_s):
        return False

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="trackbone-readiness",
        request_timeout_ms=int(timeout_s * 1000),
        **(security or {}),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise fetch/start/stop across processes (two shells, a test run and a demo)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LocalBroker:
    """A single-node KRaft broker+controller on loopback, owned by one data dir."""

    def __init__(
        self, settings: Settings, *, ready_timeout_s: float = READY_TIMEOUT_S, secure: bool = False
    ) -> None:
        self.settings = settings
        self.ready_timeout_s = ready_timeout_s
        self.dir = (settings.data_dir / "kafka").resolve()
        self.log_dirs = self.dir / "log-dirs"
        self.properties = self.dir / "server.properties"
        self.log_file = self.dir / "broker.log"
        self.state_file = self.dir / "broker.json"
        self.ports_file = self.dir / "ports.json"
        self.version = settings.kafka_version
        self.libs = (settings.kafka_home / self.version / "libs").resolve()
        self.timings: dict[str, float] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.security = SecureDir(self.dir)
        self.secure = secure or self.security.exists()
        """Secure once, secure for good: the storage holds the SCRAM users."""
        self.new_passwords: dict[str, str] | None = None
        """Role passwords made by this start (printed once by ``trackbone kafka start``)."""

    def _probe_options(self) -> dict[str, Any] | None:
        return self.security.client_options("admin") if self.secure else None

    # jars -------------------------------------------------------------------------------

    def jars_ready(self) -> bool:
        return (self.libs / LIBS_MARKER).is_file()

    def ensure_jars(self) -> Path:
        """Resolve the broker's runtime classpath from Maven Central once per version."""
        if self.jars_ready():
            self.timings["jar_fetch_s"] = 0.0
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (`mvn`) is not on PATH: it fetches the Kafka jars once")
        with _locked(self.libs.parent / ".fetch.lock"):
            if self.jars_ready():  # another process fetched while we waited
                self.timings["jar_fetch_s"] = 0.0
                return self.libs
            started = time.perf_counter()
            staging = self.libs.parent / f"libs.partial-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            cmd = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
                f"-Dkafka.version={self.version}",
                f"-Dlog4j2.version={log4j_version_for(self.version)}",
            ]
            log.info("fetching Kafka %s jars from Maven Central into %s", self.version, self.libs)
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                shutil.rmtree(staging, ignore_errors=True)
                raise BrokerError(
                    f"fetching Kafka {self.version} jars took over {FETCH_TIMEOUT_S:.0f} s"
                ) from None
            if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
                shutil.rmtree(staging, ignore_errors=True)
                output = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
                raise BrokerError(
                    f"could not fetch Kafka {self.version} jars (mvn exit {done.returncode}):\n"
                    f"{output}"
                )
            elapsed = time.perf_counter() - started
            (staging / LIBS_MARKER).write_text(
                json.dumps({"kafka_version": self.version, "fetched_at": _now_iso()}) + "\n"
            )
            shutil.rmtree(self.libs, ignore_errors=True)  # a stale dir without marker
            staging.rename(self.libs)
            self.timings["jar_fetch_s"] = elapsed
            log.info("fetched Kafka jars in %.1f s", elapsed)
            return self.libs

    def _classpath(self) -> str:
        return str(self.libs / "*")  # the JVM expands the wildcard, not a shell

    def _cds_archive(self, java: str) -> Path:
        """Per JVM build: an archive from another JDK would be ignored, never regenerated."""
        real = Path(java).resolve()
        stat = real.stat()
        tag = hashlib.sha1(f"{real}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()
        return self.libs.parent / f"broker-{tag[:12]}.jsa"

    def _cds_options(self, java: str) -> tuple[list[str], str | None]:
        """JVM flags for class data sharing, and the partial dump file to adopt on stop."""
        archive = self._cds_archive(java)
        quiet = "-Xlog:cds*=off"  # dumping warns about every class it cannot archive
        if archive.is_file():
            return [quiet, "-Xshare:auto", f"-XX:SharedArchiveFile={archive}"], None
        for stale in archive.parent.glob(f"{archive.name}.partial-*"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 3600:  # a broker killed mid-dump
                    stale.unlink()
        partial = archive.with_name(f"{archive.name}.partial-{os.getpid()}-{time.time_ns()}")
        return [quiet, f"-XX:ArchiveClassesAtExit={partial}"], str(partial)

    # lifecycle --------------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        """Return the recorded broker if its process is alive, else None."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        pid = state.get("pid")
        if not isinstance(pid, int) or not self._is_our_broker(pid):
            return None
        return dict(state)

    def start(self) -> str:
        """Start (or find) the broker and return its bootstrap address once it answers.

        Secure: the default deployment (the settings' topic prefix and app id) gets its
        topics and ACLs on the first start.
        """
        bootstrap = self._start()
        if self.secure:
            self.grant(self.settings.topic_prefix, self.settings.app_id, bootstrap)
        return bootstrap

    def _start(self) -> str:
        self.timings = {}
        with _locked(self.dir / ".lock"):
            running = self.status()
            if running is not None:
                return self._await_existing(running)
            self.state_file.unlink(missing_ok=True)
            self.ensure_jars()
            java = shutil.which("java")
            if java is None:
                raise BrokerError("`java` is not on PATH: the broker needs a JDK 17+")
            if self.secure:
                if (self.dir / ".formatted").is_file() and not self.security.exists():
                    raise BrokerError(
                        f"the broker under {self.dir} was formatted without --secure (its "
                        "storage has no SCRAM users): use a fresh --data-dir for --secure"
                    )
                self.new_passwords = self.security.ensure()
            last_error: BrokerError | None = None
            recorded = self._recorded_ports()
            for attempt in range(3):
                ports = self._choose_ports(fresh=attempt > 0)
                try:
                    return self._launch(java, ports)
                except _PortTaken as exc:
                    if recorded is not None:
                        raise self._address_taken(recorded) from exc
                    last_error = exc
                    log.warning("port taken, retrying with fresh ports: %s", exc)
            assert last_error is not None
            raise last_error

    def stop(self) -> bool:
        """SIGTERM (clean shutdown), SIGKILL after a deadline. True if a broker was running."""
        with _locked(self.dir / ".lock"):
            state = self.status()
            if state is None:
                self.state_file.unlink(missing_ok=True)
                return False
            pid = int(state["pid"])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            clean = self._wait_exit(pid, STOP_TIMEOUT_S)
            if not clean:
                log.warning(
                    "broker pid %d ignored SIGTERM for %.0f s: SIGKILL", pid, STOP_TIMEOUT_S
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not self._wait_exit(pid, 10.0):
                    raise BrokerError(f"broker pid {pid} survived SIGKILL")
            self._adopt_cds_dump(state.get("cds_dump"), complete=clean)
            self._await_ports_released(state.get("ports") or {})
            self.state_file.unlink(missing_ok=True)
            return True

    def _await_ports_released(self, ports: dict[str, int], timeout_s: float = 10.0) -> None:
        """Return once nothing listens on the broker's ports: it has exited for its clients too.

        (A broker whose parent is gone may linger as a zombie until init reaps it: it has
        exited and holds no sockets, but ``ps`` still lists it as ``<defunct>``.)
        """
        deadline = time.monotonic() + timeout_s
        for port in ports.values():
            while not port_is_free(int(port)) and time.monotonic() < deadline:
                time.sleep(0.05)  # poll interval, not a synchronisation

    # internals --------------------------------------------------------------------------

    def _adopt_cds_dump(self, dump: object, *, complete: bool) -> None:
        """Keep the class archive the JVM wrote while exiting, only if it exited cleanly."""
        if not isinstance(dump, str):
            return
        partial = Path(dump)
        final = Path(dump.rsplit(".partial-", 1)[0])
        if complete and partial.is_file() and not final.exists():
            partial.replace(final)  # atomic: a concurrent start sees all or nothing
        partial.unlink(missing_ok=True)

    def _is_our_broker(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            self._proc.poll()  # reap if it exited
        if not pid_alive(pid):
            return False
        cmd = _cmdline(pid)
        # pid reuse guard: same main class, same properties file
        return cmd is None or (MAIN_CLASS in cmd and str(self.properties) in cmd)

    def _await_existing(self, state: dict[str, Any]) -> str:
        bootstrap = str(state["bootstrap"])
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if run_coro(lambda: answers(bootstrap, 3.0, self._probe_options())):
                self.timings["start_to_ready_s"] = 0.0
                return bootstrap
            if self.status() is None:
                raise BrokerError(
                    f"recorded broker pid {state['pid']} died:\n{tail(self.log_file)}"
                )
            time.sleep(0.2)  # poll interval between probes, not a synchronisation
        raise BrokerError(
            f"broker pid {state['pid']} runs but does not answer on {bootstrap}; "
            f"try `trackbone kafka stop`. Log tail:\n{tail(self.log_file)}"
        )

    def _recorded_ports(self) -> dict[str, int] | None:
        """The ports of the last start: the address clients were given."""
        try:
            previous = json.loads(self.ports_file.read_text())
            return {"broker": int(previous["broker"]), "controller": int(previous["controller"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _address_taken(self, ports: dict[str, int]) -> BrokerError:
        return BrokerError(
            f"the broker's address 127.0.0.1:{ports['broker']} (controller "
            f"{ports['controller']}, from {self.ports_file}) is in use by another process; "
            "clients were given that address, so the broker will not move: stop that process, "
            f"or delete {self.ports_file} to start on new ports"
        )

    def _choose_ports(self, *, fresh: bool) -> dict[str, int]:
        if not fresh:
            # Keep the last ports: clients hold the address, the quorum the controller's.
            ports = self._recorded_ports()
            if ports is not None:
                if not all(port_is_free(p) for p in ports.values()):
                    raise self._address_taken(ports)
                return ports
        broker = free_port()
        controller = free_port()
        while controller == broker:
            controller = free_port()
        return {"broker": broker, "controller": controller}

    def _render_properties(self, ports: dict[str, int]) -> None:
        template = string.Template(SERVER_TEMPLATE.read_text())
        text = template.substitute(
            BROKER_PORT=ports["broker"],
            CONTROLLER_PORT=ports["controller"],
            DATA_DIR=str(self.log_dirs),
            PARTITIONS=self.settings.partitions,
        )
        if self.secure:
            text = self.security.server_properties(text, ports["broker"], ports["controller"])
        if self.version.startswith("3."):
            # share groups (and their coordinator settings) arrived in 4.0
            text = "\n".join(
                ln for ln in text.splitlines() if not ln.startswith("share.coordinator.")
            )
        write_private(self.properties, text)  # secure: it holds the broker's passwords

    def _format_storage(self, java: str) -> None:
        marker = self.dir / ".formatted"  # written last: an interrupted format is redone
        if marker.is_file() and (self.log_dirs / "meta.properties").is_file():
            self.timings["format_s"] = 0.0
            return
        started = time.perf_counter()
        shutil.rmtree(self.log_dirs, ignore_errors=True)  # half-formatted leftovers
        archive = self._cds_archive(java)
        share = [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=off"] if archive.is_file() else []
        cmd = [
            java,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            *share,
            f"-Dlog4j2.configurationFile={TOOLS_LOG4J}",
            "-cp",
            self._classpath(),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            new_cluster_id(),
            "-c",
            str(self.properties),
            *(self.security.scram_format_args() if self.secure else []),
        ]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            shutil.rmtree(self.log_dirs, ignore_errors=True)
            raise BrokerError(
                f"formatting Kafka storage failed (exit {done.returncode}):\n"
                f"{(done.stdout + done.stderr).strip()}"
            )
        marker.write_text(_now_iso() + "\n")
        self.timings["format_s"] = time.perf_counter() - started

    def _launch(self, java: str, ports: dict[str, int]) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._render_properties(ports)
        self._format_storage(java)
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name("broker.log.1"))
        cds_options, cds_dump = self._cds_options(java)
        cmd = [
            java,
            *JVM_OPTS,
            *cds_options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={BROKER_LOG4J}",
            "-cp",
            self._classpath(),
            MAIN_CLASS,
            str(self.properties),
        ]
        bootstrap = f"127.0.0.1:{ports['broker']}"
        started = time.perf_counter()
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: survives the CLI and Ctrl-C in its shell
            )
        proc = self._proc
        state = {
            "pid": proc.pid,
            "bootstrap": bootstrap,
            "ports": ports,
            "started_at": _now_iso(),
            "kafka_version": self.version,
            "data_dir": str(self.dir),
            "cds_dump": cds_dump,
            "secure": self.secure,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")
        self.ports_file.write_text(json.dumps(ports) + "\n")
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if proc.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                self._adopt_cds_dump(cds_dump, complete=False)
                log_tail = tail(self.log_file)
                if "Address already in use" in log_tail or "BindException" in log_tail:
                    raise _PortTaken(f"broker could not bind {ports}")
                raise BrokerError(
                    f"Kafka broker exited with code {proc.returncode} during start-up. "
                    f"Log {self.log_file} ends with:\n{log_tail}"
                )
            if run_coro(lambda: answers(bootstrap, 2.0, self._probe_options())):
                break
            if time.monotonic() > deadline:
                self._kill(proc)
                self.state_file.unlink(missing_ok=True)
                self._adopt_cds_dump(cds_dump, complete=False)
                raise BrokerError(
                    f"Kafka broker did not answer on {bootstrap} within "
                    f"{self.ready_timeout_s:.0f} s. Log ends with:\n{tail(self.log_file)}"
                )
            time.sleep(0.2)  # poll interval between probes, not a synchronisation
        self.timings["start_to_ready_s"] = time.perf_counter() - started
        state["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")
        return bootstrap

    def grant(self, topic_prefix: str, app_id: str, bootstrap: str | None = None) -> bool:
        """Create a deployment's topics (as admin) and its roles' ACLs, once per deployment."""
        from streams.kafka_io import ensure_deployment_topics

        if not self.secure:
            raise BrokerError("ACLs need the secure broker: `trackbone kafka start --secure`")
        granted_file = self.security.dir / "granted.json"
        try:
            granted = set(json.loads(granted_file.read_text()))
        except (OSError, ValueError):
            granted = set()
        name = f"{topic_prefix}|{app_id}"
        if name in granted:
            return False
        if bootstrap is None:
            bootstrap = resolve_bootstrap(self.settings)
        started = time.perf_counter()
        admin = replace(
            self.settings,
            topic_prefix=topic_prefix,
            app_id=app_id,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism=MECHANISM,
            kafka_user="admin",
            kafka_password=self.security.password("admin"),
            kafka_ca_file=self.security.ca_pem,
        )
        run_coro(lambda: ensure_deployment_topics(admin, bootstrap))
        java = shutil.which("java") or "java"
        self.security.create_acls(
            java, self._classpath(), TOOLS_LOG4J, bootstrap, role_acls(topic_prefix, app_id)
        )
        granted.add(name)
        granted_file.write_text(json.dumps(sorted(granted)) + "\n")
        self.timings["grant_s"] = time.perf_counter() - started
        return True

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.1)
        return not pid_alive(pid)


class _PortTaken(BrokerError):
    """A port chosen as free was taken before the broker bound it."""


def check_bootstrap(address: str) -> str:
    """Return the address if it is ``host:port[,host:port...]``, else say what is wrong."""
    for entry in address.split(","):
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadKafkaAddressError(
                f"bad Kafka address {address!r}: expected host:port[,host:port...]"
                " (--bootstrap / TRACKBONE_KAFKA_BOOTSTRAP), e.g. 127.0.0.1:9092"
            )
    return address


def resolve_bootstrap(settings: Settings) -> str:
    """Return the configured bootstrap servers, else the running local broker's address."""
    if settings.kafka_bootstrap:
        return check_bootstrap(settings.kafka_bootstrap)
    state = LocalBroker(settings).status()
    if state is None:
        raise BrokerNotRunning(
            "no Kafka to talk to: TRACKBONE_KAFKA_BOOTSTRAP is not set and the local broker "
            f"under {settings.data_dir / 'kafka'} is not running; run `trackbone kafka start`"
        )
    return str(state["bootstrap"])
