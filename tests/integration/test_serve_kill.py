"""``streamml serve`` as a process: SIGKILL mid-stream in exactly-once mode loses and duplicates nothing;
two processes in one group share the work; the HTTP endpoint runs beside the stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from sklearn.linear_model import LogisticRegression

from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.kafka.local import free_port_base
from streamml.registry import Registry
from streamml.serve.testing import FRAUD_FEATURES, fraud_events, fraud_frame, produce_events, read_topic


def publish_model(settings: Settings, seed: int = 1) -> int:
    df = fraud_frame(3000, seed=seed)
    est = LogisticRegression(max_iter=500).fit(df.select(FRAUD_FEATURES).to_numpy().astype(np.float32),
                                               df["is_fraud"].to_numpy())
    return Registry(settings).publish(est, name="fraud", features=list(FRAUD_FEATURES), stage="production").version


def spawn(settings: Settings, tmp: Path, instance: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STREAMML_HOME": str(tmp / "home")}
    log = open(tmp / f"serve-{instance}-{time.time_ns()}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "streamml", "--bootstrap-servers", settings.bootstrap_servers,
                             "--namespace", settings.namespace, "serve", "--model", "fraud", "--input", "pay",
                             "--instance", instance, "--batch-size", "500", *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def count_uncommitted(settings: Settings, topic: str) -> int:
    from streamml.kafka import clients

    c = clients.consumer(settings, f"peek-{time.time_ns()}", isolation_level="read_uncommitted")
    c.subscribe([topic])
    n, quiet = 0, time.monotonic()
    while time.monotonic() - quiet < 0.5:
        msgs = c.consume(5000, timeout=0.2)
        if msgs:
            quiet = time.monotonic()
            n += sum(1 for m in msgs if m.error() is None)
    c.close()
    return n


def check_exactly_once(settings: Settings, expected_ids: set[str], timeout: float = 60) -> list:  # type: ignore[type-arg]
    got = read_topic(settings, settings.topic("predictions", "fraud"), expect=len(expected_ids), timeout=timeout,
                     quiet_s=2.0)
    ids = [r.value["event_id"] for r in got]
    assert len(expected_ids - set(ids)) == 0, f"lost {len(expected_ids - set(ids))}"
    assert len(ids) == len(set(ids)), f"duplicated {len(ids) - len(set(ids))}"
    assert set(ids) == expected_ids
    return got


def test_sigkill_in_exactly_once_mode_loses_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 3)
    publish_model(settings)
    events = fraud_events(20_000, seed=4)
    produce_events(settings, topic, events[:10_000])
    p = spawn(settings, tmp_path, "k")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and count_uncommitted(settings, settings.topic("predictions", "fraud")) < 2000:
        time.sleep(0.2)
    produce_events(settings, topic, events[10_000:])
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    assert p.returncode == -signal.SIGKILL
    q = spawn(settings, tmp_path, "k", "--idle", "4")
    try:
        got = check_exactly_once(settings, {f"e{i}" for i in range(20_000)})
        q.wait(60)
    finally:
        if q.poll() is None:
            q.kill()
    assert {r.headers["sm.component"] for r in got} == {"serve.fraud"}


def test_two_processes_share_the_group_and_http_answers(settings: Settings, tmp_path: Path) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 4)
    publish_model(settings)
    port = free_port_base(1)
    a = spawn(settings, tmp_path, "a", "--port", str(port))
    b = spawn(settings, tmp_path, "b")
    try:
        produce_events(settings, topic, fraud_events(8000, seed=6, prefix="s"))
        got = check_exactly_once(settings, {f"s{i}" for i in range(8000)})
        assert len({r.partition for r in got}) == 4
        row = {c: 1.0 for c in FRAUD_FEATURES}
        # the endpoint listens while the model loads (503, not ready): traffic waits for /readyz, as a
        # load balancer's readiness probe would; b may have scored everything before a finished loading
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "scorer a never became ready"
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/models/fraud/predict", json={"instances": [row]})
        assert r.status_code == 200 and r.json()["version"] == 1
        assert httpx.post(f"http://127.0.0.1:{port}/v1/models/fraud/predict",
                          json={"instances": [{"amount": "x"}]}).status_code == 422
    finally:
        for proc in (a, b):
            proc.send_signal(signal.SIGTERM)
        for proc in (a, b):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert a.returncode == 0 and b.returncode == 0
    logs = "".join(f.read_text(errors="replace") for f in tmp_path.glob("serve-*.log"))
    assert "scoring" in logs


def test_a_fenced_scorer_reconnects_and_loses_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    """Another producer takes the scorer's transactional id mid-stream (as a restarted twin would):
    the scorer's open transaction is aborted, its producer is fenced, and it reconnects with new
    clients instead of stopping; every event is then scored exactly once."""
    from streamml.kafka import clients

    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 3)
    publish_model(settings)
    events = fraud_events(12_000, seed=9, prefix="f")
    produce_events(settings, topic, events[:6000])
    p = spawn(settings, tmp_path, "f", "--idle", "8")
    try:
        deadline = time.monotonic() + 60
        predictions = settings.topic("predictions", "fraud")
        while time.monotonic() < deadline and count_uncommitted(settings, predictions) < 1000:
            time.sleep(0.2)
        twin = clients.producer(settings, transactional_id=f"{settings.namespace}.serve.fraud.f")
        twin.init_transactions(30)
        produce_events(settings, topic, events[6000:])
        check_exactly_once(settings, {f"f{i}" for i in range(12_000)}, timeout=120)
        p.wait(90)
    finally:
        if p.poll() is None:
            p.kill()
    log = b"".join(f.read_bytes() for f in tmp_path.glob("serve-f-*.log")).decode(errors="replace")
    assert "replacing the clients (recovery 1)" in log, log[-3000:]
    assert p.returncode == 0, log[-3000:]
