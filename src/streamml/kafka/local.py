"""A real Apache Kafka cluster on loopback, in KRaft mode: 1 or 3 nodes.

Each node is broker and controller at once. Node ``i`` (0-based) listens for clients
on ``port + i`` and for the controller quorum on ``port + 100 + i``. Everything the
cluster owns lives under its data dir: ``cluster.json`` (what was started), and per
node ``node-<id>/{data,server.properties,server.log,stdout.log,pid}``.

``down`` only signals the pids this module wrote, SIGTERM first, SIGKILL after a timeout.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamml.config import Settings
from streamml.errors import BrokerStartError, PortInUseError, ProvisioningError
from streamml.kafka.distribution import java_version, kafka_classpath

__all__ = ["LocalCluster", "NodeInfo", "ensure_local", "free_port_base"]

_LOG4J = """status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass
class NodeInfo:
    """One node of a local cluster."""

    node_id: int
    port: int
    controller_port: int
    dir: str
    pid: int | None = None

    @property
    def path(self) -> Path:
        return Path(self.dir)

    def alive(self) -> bool:
        """Whether the process this node's pid names is running (and is not a zombie)."""
        if not self.pid:
            return False
        try:
            os.kill(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        try:
            with open(f"/proc/{self.pid}/stat") as fh:
                return fh.read().split(") ", 1)[1][0] != "Z"
        except OSError:
            return True


@dataclass
class LocalCluster:
    """A local KRaft cluster rooted at ``data_dir``.

    >>> c = LocalCluster(Path("/tmp/x"), nodes=3, port=29092)
    >>> c.bootstrap_servers
    '127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094'
    """

    data_dir: Path
    nodes: int = 1
    port: int = 9092
    kafka_version: str = "4.3.1"
    cache_dir: Path | None = None
    heap: str = "512m"
    extra_properties: dict[str, str] = field(default_factory=dict)
    secure: bool = False
    external_listener: bool = False
    admin_user: str = "admin"
    admin_password: str = ""
    cluster_id: str = ""
    node_infos: list[NodeInfo] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if self.nodes not in (1, 3):
            raise ProvisioningError(f"--nodes must be 1 or 3, got {self.nodes}")
        if self.secure and not self.admin_password:
            import secrets

            self.admin_password = secrets.token_urlsafe(18)
        if not self.node_infos:
            self.node_infos = [
                NodeInfo(i + 1, self.port + i, self.port + 100 + i, str(self.data_dir / f"node-{i + 1}"))
                for i in range(self.nodes)
            ]

    # -- persistence ------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.data_dir / "cluster.json"

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> "LocalCluster":
        """The cluster described in the settings' cluster dir, or a new one from settings."""
        data_dir = Path(kw.pop("data_dir", None) or settings.cluster_dir)
        existing = cls.load(data_dir)
        if existing is not None:
            return existing
        kw.setdefault("nodes", settings.local_nodes)
        kw.setdefault("port", settings.local_port)
        return cls(data_dir, kafka_version=settings.kafka_version, cache_dir=settings.cache_dir, **kw)

    @classmethod
    def load(cls, data_dir: Path) -> "LocalCluster | None":
        """The cluster recorded in ``data_dir/cluster.json``, if any."""
        path = Path(data_dir).expanduser() / "cluster.json"
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        raw["node_infos"] = [NodeInfo(**n) for n in raw["node_infos"]]
        raw["data_dir"] = Path(raw["data_dir"])
        raw["cache_dir"] = Path(raw["cache_dir"]) if raw.get("cache_dir") else None
        return cls(**raw)

    def _save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        raw = asdict(self)
        raw["data_dir"] = str(self.data_dir)
        raw["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=2))
        tmp.chmod(0o600)  # holds the admin password of a secured cluster
        tmp.replace(self.state_file)
        if self.secure:
            opts = self.client_options()
            lines = [f'bootstrap_servers = "{self.bootstrap_servers}"', "", "[kafka]"]
            lines += [f'"{k}" = "{v}"' for k, v in opts.items()]
            client = self.data_dir / "client.toml"
            client.write_text("\n".join(lines) + "\n")
            client.chmod(0o600)

    # -- facts ------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.node_infos)

    def client_options(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """librdkafka security options for this cluster (empty when it is not secured).

        Without ``user`` the options are the admin's (a super user).
        """
        if not self.secure:
            return {}
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user or self.admin_user,
            "sasl.password": (password or "") if user else self.admin_password,
            "ssl.ca.location": str(self.data_dir / "tls" / "ca.pem"),
        }

    def settings(self, base: Settings | None = None, user: str | None = None,
                 password: str | None = None) -> Settings:
        """Settings that connect to this cluster (as the admin, or as ``user``)."""
        base = base or Settings.load(config_file=None)
        return base.with_(bootstrap_servers=self.bootstrap_servers,
                          kafka={**base.kafka, **self.client_options(user, password)})

    def running(self) -> list[NodeInfo]:
        """Nodes whose processes are alive."""
        return [n for n in self.node_infos if n.alive()]

    def is_up(self, timeout: float = 5.0) -> bool:
        """All nodes alive and the cluster answers an admin call with every broker."""
        if len(self.running()) != len(self.node_infos):
            return False
        return self._brokers_seen(timeout) == len(self.node_infos)

    def _brokers_seen(self, timeout: float) -> int:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0,
                             "logger": _quiet_logger(), **self.client_options()})
        try:
            md = admin.list_topics(timeout=timeout)
            return len(md.brokers)
        except Exception:
            return 0

    # -- lifecycle --------------------------------------------------------------------
    def up(self, timeout: float = 120.0) -> bool:
        """Start the cluster; return False when it was already running (idempotent)."""
        if self.state_file.exists() and self.running():
            if len(self.running()) == len(self.node_infos):
                self.wait_ready(timeout)
                return False
            # partly running: start the missing nodes only
            for node in self.node_infos:
                if not node.alive():
                    self.start_node(node.node_id)
            self.wait_ready(timeout)
            return True
        java_version()
        libs = kafka_classpath(self.kafka_version, self.cache_dir or Settings().cache_dir)
        self._check_ports()
        fresh = not self.cluster_id or not all((n.path / "data" / "meta.properties").exists() for n in self.node_infos)
        if fresh:
            self.cluster_id = _cluster_id()
        if self.secure and not (self.data_dir / "tls" / "broker.pem").exists():
            from streamml.kafka.tls import make_certificates

            make_certificates(self.data_dir / "tls")
        for node in self.node_infos:
            node.path.mkdir(parents=True, exist_ok=True)
            (node.path / "server.properties").write_text(self._properties(node))
            (node.path / "log4j2.properties").write_text(_LOG4J.format(log=node.path / "server.log"))
            if fresh:
                self._format(node, libs)
        self._save()
        for node in self.node_infos:
            self._spawn(node, libs)
        self._save()
        self.wait_ready(timeout)
        return True

    @property
    def external_bootstrap_servers(self) -> str:
        """With ``external_listener``: the addresses the EXTERNAL listener advertises
        (``port + 300 + i``), where a proxy forwarding to ``port + 200 + i`` can stand, so
        that the clients bootstrapped there can be cut off from the cluster on their own."""
        return ",".join(f"127.0.0.1:{n.port + 300}" for n in self.node_infos)

    def external_routes(self) -> list[tuple[int, int]]:
        """(advertised port, listening port) of each node's EXTERNAL listener."""
        return [(n.port + 300, n.port + 200) for n in self.node_infos]

    def _check_ports(self) -> None:
        for node in self.node_infos:
            extra = (node.port + 200,) if self.external_listener else ()
            for port in (node.port, node.controller_port, *extra):
                if not port_free(port):
                    raise PortInUseError(
                        f"port {port} on 127.0.0.1 is already in use (node {node.node_id})",
                        hint="stop what uses it, or pick another base port with --port",
                    )

    def _properties(self, node: NodeInfo) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.node_infos)
        rf = len(self.node_infos)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(node.path / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(rf),
            "min.insync.replicas": "2" if rf == 3 else "1",
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": "2" if rf == 3 else "1",
            "transaction.state.log.num.partitions": "10",
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.ms": "-1",  # a local cluster keeps history: replays of old event times must not vanish
            "log.segment.bytes": str(256 * 1024 * 1024),
            "message.max.bytes": str(1024 * 1024 + 1024),
            "transaction.max.timeout.ms": "900000",
        }
        if self.secure:
            tls = self.data_dir / "tls"
            jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                    f'username="{self.admin_user}" password="{self.admin_password}";')
            props.update({
                "listeners": f"SASL_SSL://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                "advertised.listeners": f"SASL_SSL://127.0.0.1:{node.port}",
                "inter.broker.listener.name": "SASL_SSL",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(tls / "broker.pem"),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(tls / "ca.pem"),
                "ssl.endpoint.identification.algorithm": "https",
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # the controller quorum talks PLAINTEXT on loopback only; its principal is ANONYMOUS
                "super.users": f"User:{self.admin_user};User:ANONYMOUS",
                "allow.everyone.if.no.acl.found": "false",
            })
        if self.external_listener and not self.secure:
            props["listeners"] += f",EXTERNAL://127.0.0.1:{node.port + 200}"
            props["advertised.listeners"] += f",EXTERNAL://127.0.0.1:{node.port + 300}"
            props["listener.security.protocol.map"] += ",EXTERNAL:PLAINTEXT"
        props.update(self.extra_properties)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, libs: Path, node: NodeInfo) -> list[str]:
        return ["java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={node.path / 'log4j2.properties'}",
                "-cp", f"{libs}/*"]

    def _format(self, node: NodeInfo, libs: Path) -> None:
        data = node.path / "data"
        data.mkdir(parents=True, exist_ok=True)
        cmd = self._java(libs, node) + ["kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}",
                                        "-c", str(node.path / "server.properties"), "--ignore-formatted"]
        if self.secure:
            cmd += ["--add-scram", f"SCRAM-SHA-512=[name={self.admin_user},password={self.admin_password}]"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            text = (proc.stdout + proc.stderr).strip().splitlines()
            cause = [ln for ln in text if "Exception" in ln or "Error" in ln][:3] or text[-5:]
            raise BrokerStartError(f"formatting storage of node {node.node_id} failed:\n" + "\n".join(cause),
                                   hint=f"check {node.path / 'server.properties'}")

    def _spawn(self, node: NodeInfo, libs: Path) -> None:
        out = open(node.path / "stdout.log", "ab")
        proc = subprocess.Popen(self._java(libs, node) + ["kafka.Kafka", str(node.path / "server.properties")],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=node.path)
        out.close()
        node.pid = proc.pid
        (node.path / "pid").write_text(str(proc.pid))

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every node answers; raise BrokerStartError with the log tail if one dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n in self.node_infos if not n.alive()]
            if dead:
                node = dead[0]
                raise BrokerStartError(
                    f"Kafka node {node.node_id} exited during start-up. Last lines of {node.path / 'server.log'}:\n"
                    + self.log_tail(node.node_id, 25),
                    hint=f"full logs: {node.path}",
                )
            if self._brokers_seen(2.0) == len(self.node_infos):
                return
            time.sleep(0.5)
        raise BrokerStartError(
            f"Kafka did not become ready within {timeout:.0f}s. Last lines of node 1's log:\n" + self.log_tail(1, 25),
            hint=f"full logs under {self.data_dir}",
        )

    def start_node(self, node_id: int) -> None:
        """(Re)start one node that is not running (fault tests use this)."""
        node = self.node(node_id)
        if node.alive():
            return
        libs = kafka_classpath(self.kafka_version, self.cache_dir or Settings().cache_dir)
        self._spawn(node, libs)
        self._save()

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL, wait: float = 30.0) -> None:
        """Send ``sig`` to one node and wait for it to exit (SIGKILL: hard crash)."""
        node = self.node(node_id)
        if node.pid and node.alive():
            os.kill(node.pid, sig)
            _wait_exit(node, wait)

    def node(self, node_id: int) -> NodeInfo:
        for n in self.node_infos:
            if n.node_id == node_id:
                return n
        raise ProvisioningError(f"no node {node_id}; nodes are " + ", ".join(str(n.node_id) for n in self.node_infos))

    def down(self, timeout: float = 30.0, *, purge: bool = False) -> int:
        """Stop the nodes this cluster started; return how many were running."""
        stopped = 0
        for node in self.node_infos:
            if node.pid and node.alive():
                stopped += 1
                try:
                    os.kill(node.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for node in self.node_infos:
            if node.pid and not _wait_exit(node, timeout):
                try:
                    os.kill(node.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _wait_exit(node, 10)
        if purge:
            import shutil

            shutil.rmtree(self.data_dir, ignore_errors=True)
        elif self.state_file.exists():
            self._save()
        return stopped

    def log_tail(self, node_id: int, lines: int = 50) -> str:
        node = self.node(node_id)
        chunks = []
        for name in ("server.log", "stdout.log"):
            path = node.path / name
            if path.exists():
                with path.open("rb") as fh:
                    fh.seek(0, 2)
                    fh.seek(max(0, fh.tell() - 200_000))
                    chunks.extend(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
        return "\n".join(chunks[-lines:]) or "(no log yet)"


def _wait_exit(node: NodeInfo, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.pid:
            try:  # reap if it is our child
                os.waitpid(node.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not node.alive():
            return True
        time.sleep(0.1)
    return not node.alive()


def _cluster_id() -> str:
    """A Kafka cluster id (base64url of a random UUID) that no command line reads as an option.

    >>> all(not _cluster_id().startswith("-") for _ in range(500))
    True
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; a common default elsewhere)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_base(nodes: int = 1, start: int | None = None, end: int | None = None) -> int:
    """A base port such that every port a cluster of ``nodes`` needs is free.

    The range avoids the kernel's ephemeral ports: a client reconnecting to a stopped broker
    can otherwise be handed that broker's port as its own local port (a TCP self-connect),
    and the restarted broker then fails to bind.
    """
    import random

    if start is None or end is None:
        lo, hi = _ephemeral_ports()
        start, end = (10000, lo) if lo - 10000 >= 2000 else (hi + 1, 65535)
    rng = random.Random(os.getpid() ^ int(time.time()))
    for _ in range(200):
        base = rng.randrange(start, end - 200)
        if all(port_free(base + i) and port_free(base + 100 + i) for i in range(nodes)):
            return base
    raise PortInUseError("no free port range found on 127.0.0.1")


def _quiet_logger() -> Any:
    import logging

    log = logging.getLogger("streamml.kafka.quiet")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def ensure_local(settings: Settings) -> Settings:
    """The embedded default: settings pointing at the local cluster, started if needed."""
    if settings.bootstrap_servers:
        return settings
    cluster = LocalCluster.from_settings(settings)
    if not cluster.is_up(timeout=3.0):
        cluster.up()
    return settings.with_(bootstrap_servers=cluster.bootstrap_servers,
                          kafka={**cluster.client_options(), **settings.kafka})
