"""``streamml monitor``, ``streamml status`` and ``streamml dashboard`` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import orjson
from test_dashboard import _seed
from test_kafka_layer import drain
from test_monitor_drift import produce_features

from streamml.config import Settings
from streamml.kafka.admin import ensure_topic


def sm(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160", "STREAMML_HOME": str(settings.home)}
    return subprocess.run([sys.executable, "-m", "streamml", "-b", settings.bootstrap_servers or "",
                           "-N", settings.namespace, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_status_shows_models_lag_control_and_dead_letters(settings: Settings) -> None:
    lag = _seed(settings)
    out = sm(settings, "status", "-f", "json")
    assert out.returncode == 0, out.stderr
    data = orjson.loads(out.stdout)
    assert [v["version"] for v in data["models"]["fraud"]] == [1]
    assert data["models"]["fraud"][0]["serving"] == ["production"]
    assert data["lag_total"] == lag > 0
    assert data["control"][0]["reason"] == "drift: psi(amount)=0.41>0.2"
    assert len(data["dlq"]) == 3
    text = sm(settings, "status")
    assert text.returncode == 0, text.stderr
    for needle in ("fraud", "v1", "production", "promoted", "amount: 'lots' is not a number",
                   f"{settings.namespace}.scorer-test", f"total {lag:,}"):
        assert needle in text.stdout, (needle, text.stdout)


def test_monitor_command_asks_for_one_retrain_on_drift(settings: Settings) -> None:
    from streamml.registry.registry import Registry
    from streamml.train.job import TrainingJob
    from streamml.train.trainers import SklearnClassifier

    topic = settings.topic("features", "payments")
    ensure_topic(settings, topic, 2)
    produce_features(settings, topic, 1500, 0, drifted=False, seed=1)
    TrainingJob("fraud", topic, SklearnClassifier(), features=["amount", "velocity"]).run(settings, Registry(settings))
    produce_features(settings, topic, 1500, 1500, drifted=True, seed=2)
    out = sm(settings, "monitor", "--model", "fraud", "--features", "payments", "--window", "1000",
             "--duration", "6")
    assert out.returncode == 0, out.stderr
    assert "retrain requested" in out.stdout and "drift: psi(" in out.stdout, out.stdout
    cmds = [orjson.loads(v) for _, v in drain(settings, settings.topic("control"), expect=1)]
    assert [c["command"] for c in cmds] == ["retrain"] and cmds[0]["model"] == "fraud"


def test_dashboard_command_serves_the_page(settings: Settings) -> None:
    env = {**os.environ, "STREAMML_HOME": str(settings.home)}
    proc = subprocess.Popen([sys.executable, "-m", "streamml", "-b", settings.bootstrap_servers or "", "-N",
                             settings.namespace, "dashboard", "--port", "0", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "http://" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
        url = line[line.index("http://"):].split()[0]
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "uPlot.iife.min.js" in page.text
        assert httpx.get(url + "static/uPlot.iife.min.js", timeout=10).status_code == 200
        assert httpx.get(url + "api/overview", timeout=10).json()["namespace"] == settings.namespace
    finally:
        proc.terminate()
        proc.wait(timeout=30)
