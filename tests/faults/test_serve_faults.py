"""Scorer faults, the long version: two ``streamml serve`` processes in exactly-once mode, each
SIGKILLed and restarted several times while events flow and new model versions are promoted.
An independent read_committed consumer then finds every event scored exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from streamml.chaos import wait_until
from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.kafka.read import watermarks
from streamml.registry import Registry
from streamml.serve.testing import FRAUD_FEATURES, fraud_events, fraud_frame, produce_events, read_topic


def _spawn(settings: Settings, tmp: Path, instance: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STREAMML_HOME": str(tmp / "home")}
    log = open(tmp / f"serve-{instance}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "streamml", "--bootstrap-servers", settings.bootstrap_servers,
                             "--namespace", settings.namespace, "serve", "--model", "fraud", "--input", "pay",
                             "--instance", instance, "--batch-size", "400"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def test_repeated_sigkill_with_swaps_loses_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 4)
    reg = Registry(settings)
    df = fraud_frame(3000, seed=1)
    x, y = df.select(FRAUD_FEATURES).to_numpy().astype(np.float32), df["is_fraud"].to_numpy()

    def publish(c: float) -> None:
        reg.publish(LogisticRegression(C=c, max_iter=500).fit(x, y), name="fraud", features=list(FRAUD_FEATURES),
                    stage="production")

    publish(1.0)
    total, phases = 30_000, 5
    events = fraud_events(total, seed=8)
    preds = settings.topic("predictions", "fraud")
    procs = {name: _spawn(settings, tmp_path, name) for name in ("a", "b")}

    def scored() -> int:  # committed end offsets of the predictions (markers included: it only grows)
        return sum(high for _, high in watermarks(settings, preds, committed=True, timeout=10).values())

    def load(phase: int) -> threading.Thread:
        per = total // phases

        def run() -> None:
            batch = events[phase * per:(phase + 1) * per]
            for i in range(0, per, per // 6):
                produce_events(settings, topic, batch[i:i + per // 6])
                time.sleep(0.3)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    # Each round feeds a fifth of the events and waits until some of them are scored, so the kill
    # lands while the scorers work and each promotion has records left to be scored by it, however
    # slow the machine (the test waits for progress, not for a fixed time).
    rng = random.Random(3)
    kills, mark = 0, 0
    loaders = []
    try:
        for round_ in range(4):
            loaders.append(load(round_))
            assert wait_until(lambda m=mark: scored() > m, 120), f"round {round_}: nothing scored in 120 s"
            victim = rng.choice(sorted(procs))
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(10)
            kills += 1
            publish(1.0 + (round_ + 1) / 10)
            procs[victim] = _spawn(settings, tmp_path, victim)
            mark = scored()
        loaders.append(load(4))
        for t in loaders:
            t.join(120)
        got = read_topic(settings, preds, expect=total, timeout=180, quiet_s=3.0)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    ids = [r.value["event_id"] for r in got]
    expected = {f"e{i}" for i in range(total)}
    print(f"{kills} SIGKILLs; {len(expected)} events, {len(expected - set(ids))} lost, "
          f"{len(ids) - len(set(ids))} duplicated; model versions seen: "
          f"{sorted({r.value['model_version'] for r in got})}")
    assert kills == 4
    assert not expected - set(ids), f"lost {len(expected - set(ids))}"
    assert len(ids) == len(set(ids)), f"duplicated {len(ids) - len(set(ids))}"
    assert len({r.value["model_version"] for r in got}) >= 2  # the promotions were picked up on the way
    for part in {r.partition for r in got}:  # output partition = input partition (same key, same count)
        versions = [r.value["model_version"] for r in sorted(got, key=lambda r: r.offset) if r.partition == part]
        assert versions == sorted(versions), f"partition {part} went back in version"
