"""Shared fixtures: a real Kafka broker per test session, unique names per test.

The broker comes from the project's own provisioning (``LocalCluster``) on free loopback
ports, or from ``STREAMML_TEST_BOOTSTRAP_SERVERS`` when that is set. The 3-node cluster
for fault tests is started only when a test asks for it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.kafka.local import LocalCluster, free_port_base, port_free


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        if f"{os.sep}faults{os.sep}" in path:
            item.add_marker(pytest.mark.faults)


def _start(tmp: Path, nodes: int, **kw: object) -> LocalCluster:
    base = Settings.load(config_file=None)
    port = free_port_base(nodes)
    while kw.get("external_listener") and not all(
            port_free(port + off + i) for off in (200, 300) for i in range(nodes)):
        port = free_port_base(nodes)
    cluster = LocalCluster(tmp, nodes=nodes, port=port, cache_dir=base.cache_dir, **kw)  # type: ignore[arg-type]
    cluster.up(timeout=180)
    return cluster


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster | None]:
    """The session's single-node cluster (None when an external one is configured)."""
    if os.environ.get("STREAMML_TEST_BOOTSTRAP_SERVERS"):
        yield None
        return
    cluster = _start(tmp_path_factory.mktemp("kafka1"), 1)
    yield cluster
    cluster.down(timeout=20)


@pytest.fixture(scope="session")
def bootstrap(local_cluster: LocalCluster | None) -> str:
    return os.environ.get("STREAMML_TEST_BOOTSTRAP_SERVERS") or local_cluster.bootstrap_servers  # type: ignore[union-attr]


@pytest.fixture
def settings(bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for one test: the session broker, a namespace of its own, private dirs."""
    ns = "t" + uuid.uuid4().hex[:10]
    return Settings(bootstrap_servers=bootstrap, namespace=ns, home=tmp_path / "home",
                    cache_dir=Settings.load(config_file=None).cache_dir)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` -> ``"orders-3f2a9c0d1e"``: a fresh topic or group name."""
    return lambda prefix="x": f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def new_topic(settings: Settings, unique: Callable[[str], str]) -> Callable[..., str]:
    """Create a fresh topic and return its name: ``new_topic(partitions=3)``."""

    def make(prefix: str = "topic", partitions: int = 1, **kw: object) -> str:
        name = unique(prefix)
        ensure_topic(settings, name, partitions, **kw)  # type: ignore[arg-type]
        return name

    return make


@pytest.fixture(scope="session")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node KRaft cluster on loopback (replication 3, min.insync.replicas 2), with an
    EXTERNAL listener that a partition proxy can stand in front of."""
    cluster = _start(tmp_path_factory.mktemp("kafka3"), 3, external_listener=True)
    yield cluster
    cluster.down(timeout=20)


@pytest.fixture
def settings3(cluster3: LocalCluster, tmp_path: Path) -> Settings:
    ns = "t" + uuid.uuid4().hex[:10]
    return Settings(bootstrap_servers=cluster3.bootstrap_servers, namespace=ns, home=tmp_path / "home",
                    cache_dir=Settings.load(config_file=None).cache_dir)


@pytest.fixture(scope="session")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A single-node cluster with SASL_SSL (SCRAM-SHA-512 over TLS) and ACLs enforced."""
    base = Settings.load(config_file=None)
    cluster = LocalCluster(tmp_path_factory.mktemp("kafka-secure"), nodes=1, port=free_port_base(1),
                           cache_dir=base.cache_dir, secure=True)
    cluster.up(timeout=180)
    yield cluster
    cluster.down(timeout=20)


@pytest.fixture(scope="session")
def secure_cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node SASL_SSL cluster with ACLs, for the fault suite's secured scenario."""
    base = Settings.load(config_file=None)
    cluster = LocalCluster(tmp_path_factory.mktemp("kafka-secure3"), nodes=3, port=free_port_base(3),
                           cache_dir=base.cache_dir, secure=True)
    cluster.up(timeout=180)
    yield cluster
    cluster.down(timeout=20)


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real Confluent-compatible Schema Registry: Apicurio Registry, provisioned by
    streamml from Maven Central and started on a free loopback port (in-memory storage), or
    ``STREAMML_TEST_SCHEMA_REGISTRY_URL`` when that is set."""
    url = os.environ.get("STREAMML_TEST_SCHEMA_REGISTRY_URL")
    if url:
        yield url
        return
    from streamml.schema.server import RegistryServer

    server = RegistryServer(tmp_path_factory.mktemp("registry"),
                            cache_dir=Settings.load(config_file=None).cache_dir)
    server.start(timeout=240)
    yield server.url
    server.stop()
