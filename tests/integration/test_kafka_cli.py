"""``streamml kafka up|status|logs|down`` as a user runs them: real processes, real ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic, topic_config
from streamml.kafka.inspect import cluster_overview
from streamml.kafka.local import LocalCluster, free_port_base


def sm(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamml", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    e["STREAMML_HOME"] = str(tmp_path / "home")
    e["STREAMML_CACHE_DIR"] = str(Settings.load(config_file=None).cache_dir)
    e["COLUMNS"] = "200"
    return e


def _pids_under(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True)
    return out.stdout.split()


def test_three_node_cluster_lifecycle(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port_base(3)
    up = sm("kafka", "up", "--nodes", "3", "--port", str(port), env=env)
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip().splitlines()[-1]
    assert bootstrap == ",".join(f"127.0.0.1:{port + i}" for i in range(3))
    try:
        again = sm("kafka", "up", env=env)
        assert again.returncode == 0 and "already running" in again.stdout

        s = Settings(bootstrap_servers=bootstrap, namespace="t3")
        ensure_topic(s, "t3.raw.replicated", 3, replication=3, config={"min.insync.replicas": "2"})
        assert topic_config(s, "t3.raw.replicated")["min.insync.replicas"] == "2"
        p = clients.producer(s)
        for i in range(100):
            p.produce("t3.raw.replicated", str(i).encode(), str(i).encode())
        assert p.flush(30) == 0
        ov = cluster_overview(s)
        assert [b["id"] for b in ov["brokers"]] == [1, 2, 3]
        assert ov["controller"] in (1, 2, 3)
        topic = next(t for t in ov["topics"] if t["name"] == "t3.raw.replicated")
        assert topic["replication"] == 3 and topic["under_replicated"] == 0

        status = sm("kafka", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert "t3.raw.replicated" in status.stdout and "broker+controller*" in status.stdout

        logs = sm("kafka", "logs", "--node", "2", "--lines", "5", env=env)
        assert logs.returncode == 0 and logs.stdout.strip()
    finally:
        down = sm("kafka", "down", env=env)
    assert down.returncode == 0 and "stopped 3 node(s)" in down.stdout
    assert _pids_under(tmp_path / "home") == []


def test_port_in_use_is_a_clear_error(env: dict[str, str]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        res = sm("kafka", "up", "--port", str(port), env=env)
    assert res.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_java_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**env, "PATH": str(empty)}
    env.pop("JAVA_HOME", None)
    res = sm("kafka", "up", "--port", str(free_port_base(1)), env=env)
    assert res.returncode == 1
    assert "Java was not found" in res.stderr and "Traceback" not in res.stderr


def test_broker_that_fails_to_start_shows_its_log(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "bad", port=free_port_base(1),
                           cache_dir=Settings.load(config_file=None).cache_dir,
                           extra_properties={"authorizer.class.name": "org.example.NoSuchAuthorizer"})
    from streamml.errors import BrokerStartError

    with pytest.raises(BrokerStartError) as info:
        cluster.up(timeout=60)
    cluster.down(timeout=5)
    assert "exited during start-up" in str(info.value)
    assert "NoSuchAuthorizer" in str(info.value) and "server.log" in str(info.value)
