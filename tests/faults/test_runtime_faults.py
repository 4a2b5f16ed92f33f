"""The runtime's defaults under worker faults, on the session broker, verified independently.

- The workers of ``streamml run --workers 2`` are SIGKILLed ten times at 3-7 s intervals while
  input flows: the supervisor restarts each one (a kill by a signal is not a start failure),
  the app runs to the end, and the read_committed verifier finds every window exactly once
  with the aggregates of a recomputation.
- Two ``streamml run`` processes with distinct ``--instance`` share one group (as on two
  hosts): neither fences the other; one is SIGKILLed and not restarted, the other takes over
  all partitions, and nothing is lost or duplicated.

No timeout is loosened or tightened for the tests: the product's defaults are used.
"""

from __future__ import annotations

import importlib
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamml.chaos import Procs, wait_until
from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.verify import open_transactions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
eos = importlib.import_module("test_stream_eos")

pytestmark = pytest.mark.faults


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def _produce(settings: Settings, src: str, n: int, rate: float) -> tuple[threading.Thread, threading.Event,
                                                                         list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    done = threading.Event()
    t = threading.Thread(target=eos.produce_events, args=(settings, src, n, rate, done, sent), daemon=True)
    return t, done, sent


def _check(settings: Settings, dst: str, sent: list[dict[str, Any]], procs: Procs, name: str) -> dict[str, int]:
    eos.wait_for_outputs(settings, dst, len(eos.expected_windows(sent)), timeout=120)
    r = eos.verify_outputs(settings, dst, sent)
    r["open_transactions"] = len(open_transactions(settings, [dst]))
    print("fault report", r)
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["extra"] == 0 and r["wrong"] == 0, \
        (r, procs.log(name, 60))
    assert r["dup_ids"] == 0 and r["outputs"] == r["expected"]
    assert r["open_transactions"] == 0
    return r


def test_supervised_workers_killed_ten_times_keep_the_app_running(settings: Settings, tmp_path: Path) -> None:
    src, dst = settings.topic("raw", "eos"), settings.topic("features", "eos_out")
    ensure_topic(settings, src, eos.PARTITIONS)
    app = eos.write_app(tmp_path, "eos", "eos_out")
    procs = Procs(settings, tmp_path)
    procs.start("app", ["run", str(app), "--workers", "2", "--max-batch", "500"])
    prod, done, sent = _produce(settings, src, 60_000, 1000)
    try:
        assert wait_until(lambda: len(children(procs.procs["app"].pid)) == 2, 30), procs.log("app", 40)
        time.sleep(3.0)
        prod.start()
        rnd = random.Random(7)
        kills = 0
        for _ in range(10):
            time.sleep(rnd.uniform(3.0, 7.0))
            workers = children(procs.procs["app"].pid)
            assert procs.alive("app"), procs.log("app", 60)
            if workers:
                subprocess.run(["kill", "-9", str(rnd.choice(workers))], check=False)
                kills += 1
        prod.join(180)
        assert done.is_set()
        r = _check(settings, dst, sent, procs, "app")
        assert procs.alive("app"), "the supervisor stopped the app: " + procs.log("app", 60)
    finally:
        procs.stop_all()
    log = (tmp_path / "app.log").read_text(errors="replace")
    assert kills == 10 and log.count("killed by SIGKILL") >= 10, log[-3000:]
    assert "stopping the app" not in log
    r["kills"] = kills


def test_two_instances_share_a_group_and_one_takes_over(settings: Settings, tmp_path: Path) -> None:
    src, dst = settings.topic("raw", "eos"), settings.topic("features", "eos_out")
    ensure_topic(settings, src, eos.PARTITIONS)
    app = eos.write_app(tmp_path, "eos", "eos_out")
    procs = Procs(settings, tmp_path)
    procs.start("host-a", ["run", str(app), "--instance", "host-a", "--max-batch", "500"])
    procs.start("host-b", ["run", str(app), "--instance", "host-b", "--max-batch", "500"])
    prod, done, sent = _produce(settings, src, 30_000, 1500)
    try:
        counts = eos.wait_members(settings, "eos_out", 2, timeout=60)
        assert sorted(counts) == [1, 2], counts  # the two instances share the partitions
        prod.start()
        time.sleep(6.0)
        assert procs.alive("host-a") and procs.alive("host-b"), procs.log("host-a", 30) + procs.log("host-b", 30)
        procs.kill("host-b", restart=False)  # its static membership is dropped after the session timeout
        assert eos.wait_members(settings, "eos_out", 1, timeout=60) == [eos.PARTITIONS], "no takeover"
        prod.join(180)
        assert done.is_set()
        _check(settings, dst, sent, procs, "host-a")
        assert procs.alive("host-a")
        assert "fenced" not in (tmp_path / "host-a.log").read_text(errors="replace").lower()
    finally:
        procs.stop_all()
