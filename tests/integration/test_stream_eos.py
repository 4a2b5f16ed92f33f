"""Exactly-once under SIGKILL and scaling, checked by an independent read_committed verifier.

Worker processes run through ``streamml run app.py --worker-index i`` (the real CLI). A
producer thread writes keyed events while workers are killed with SIGKILL mid-stream and
restarted under the same index; at the end every partition gets a far-future sentinel so
that all windows close. The verifier then reads the output topic (read_committed) and
compares it with a recomputation from the input events: every (key, window) exactly once,
with the right count and sum.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.verify import open_transactions, read_topic

SIZE = 500          # window size, ms of event time
KEYS = 12
PARTITIONS = 3

APP = """
from streamml.stream import stream, tumbling, count, sum
features = (stream({src!r}).window(key="k", size=tumbling({size}), time="ts")
            .agg(n=count(), total=sum("v")).to({dst!r}))
"""


def write_app(tmp: Path, src: str, dst: str) -> Path:
    path = tmp / "eos_app.py"
    path.write_text(APP.format(src=src, dst=dst, size=SIZE))
    return path


class Workers:
    """Worker processes started through the CLI, by index."""

    def __init__(self, settings: Settings, app: Path, tmp: Path) -> None:
        self.settings, self.app, self.tmp = settings, app, tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.kills = 0

    def start(self, i: int) -> None:
        env = dict(os.environ, STREAMML_BOOTSTRAP_SERVERS=self.settings.bootstrap_servers or "",
                   STREAMML_NAMESPACE=self.settings.namespace, STREAMML_HOME=str(self.settings.home))
        log = open(self.tmp / f"worker{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "streamml", "run", str(self.app), "--worker-index", str(i), "--max-batch", "500"],
            env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)
        self.kills += 1

    def stop(self, i: int) -> int:
        p = self.procs.pop(i)
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            return -9

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.stop(i)

    def alive(self, i: int) -> bool:
        return self.procs[i].poll() is None


def produce_events(settings: Settings, topic: str, n: int, rate: float, done: threading.Event,
                   sent: list[dict[str, Any]]) -> None:
    p = clients.producer(settings)
    rnd = random.Random(5)
    batch = 200
    for start in range(0, n, batch):
        t0 = time.monotonic()
        for i in range(start, min(n, start + batch)):
            ev = {"k": f"k{rnd.randrange(KEYS)}", "ts": i * 3, "v": rnd.randrange(1000), "i": i}
            p.produce(topic, orjson.dumps(ev), ev["k"].encode())
            sent.append(ev)
        p.poll(0)
        time.sleep(max(0.0, batch / rate - (time.monotonic() - t0)))
    for part in range(PARTITIONS):   # close every window: stream time is per partition
        p.produce(topic, orjson.dumps({"k": f"__end{part}", "ts": n * 3 + 100_000, "v": 0, "i": -1}),
                  f"__end{part}".encode(), partition=part)
    p.flush(30)
    done.set()


def expected_windows(events: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[int, int]]:
    acc: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for e in events:
        a = acc[(e["k"], e["ts"] // SIZE * SIZE)]
        a[0] += 1
        a[1] += e["v"]
    return {k: (v[0], v[1]) for k, v in acc.items()}


def aborted_records(settings: Settings, topic: str, committed: int) -> int:
    """Records present with read_uncommitted but not committed: writes of aborted transactions."""
    c = clients.consumer(settings, f"uncommitted-{time.time_ns()}", isolation_level="read_uncommitted",
                         enable_partition_eof=True)
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    n, eof, deadline = 0, set(), time.monotonic() + 30
    while len(eof) < len(md.partitions) and time.monotonic() < deadline:
        for m in c.consume(5000, timeout=0.5):
            if m.error() is None:
                n += 1
            else:
                eof.add(m.partition())
    c.close()
    return n - committed


def wait_for_outputs(settings: Settings, topic: str, expect: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(read_topic(settings, topic, timeout=30)) >= expect:
                return
        except Exception:  # noqa: BLE001 - topic not created yet
            pass
        time.sleep(1.0)


def verify_outputs(settings: Settings, topic: str, events: list[dict[str, Any]]) -> dict[str, int]:
    recs = read_topic(settings, topic, timeout=60)
    rows = [r.json() for r in recs]
    got = Counter((r["k"], r["window_start"]) for r in rows)
    dups = sum(c - 1 for c in got.values() if c > 1)
    exp = expected_windows(events)
    lost = len(set(exp) - set(got))
    extra = len(set(got) - set(exp))
    wrong = sum(1 for r in rows if (r["k"], r["window_start"]) in exp
                and (r["n"], r["total"]) != exp[(r["k"], r["window_start"])])
    ids = Counter(r.header("sm.event_id") for r in recs)
    return {"outputs": len(rows), "expected": len(exp), "lost": lost, "duplicates": dups, "extra": extra,
            "wrong": wrong, "dup_ids": sum(c - 1 for c in ids.values() if c > 1)}


def wait_members(settings: Settings, pipeline: str, n: int, timeout: float) -> list[int]:
    """Partitions per member of the pipeline's consumer group once it has ``n`` members."""
    admin = clients.admin(settings)
    group = f"{settings.namespace}.stream.{pipeline}"
    deadline = time.monotonic() + timeout
    counts: list[int] = []
    while time.monotonic() < deadline:
        desc = admin.describe_consumer_groups([group])[group].result(10)
        counts = sorted(len(m.assignment.topic_partitions) for m in desc.members)
        if len(counts) == n and sum(counts) == PARTITIONS and str(desc.state).endswith("STABLE"):
            return counts
        time.sleep(0.5)
    return counts


def kill_scenario(settings: Settings, tmp: Path, *, kills: int, workers: int, n: int, rate: float,
                  seed: int = 1) -> dict[str, int]:
    src, dst = settings.topic("raw", "eos"), settings.topic("features", "eos_out")
    ensure_topic(settings, src, PARTITIONS)
    app = write_app(tmp, "eos", "eos_out")
    ws = Workers(settings, app, tmp)
    for i in range(workers):
        ws.start(i)
    sent: list[dict[str, Any]] = []
    done = threading.Event()
    prod = threading.Thread(target=produce_events, args=(settings, src, n, rate, done, sent), daemon=True)
    time.sleep(3.0)                      # workers start and join the group
    prod.start()
    rnd = random.Random(seed)
    try:
        for k in range(kills):
            time.sleep(rnd.uniform(1.5, 2.5))
            victim = k % workers
            ws.kill(victim)
            ws.start(victim)             # same index: fences the zombie's transaction
        prod.join(120)
        assert done.is_set()
        exp = len(expected_windows(sent))
        wait_for_outputs(settings, dst, exp, timeout=90)
    finally:
        ws.stop_all()
    report = verify_outputs(settings, dst, sent)
    report["kills"] = ws.kills
    report["aborted_records"] = aborted_records(settings, dst, report["outputs"])
    report["open_transactions"] = len(open_transactions(settings, [dst]))
    return report


def test_exactly_once_survives_sigkill(settings: Settings, tmp_path: Path) -> None:
    r = kill_scenario(settings, tmp_path, kills=3, workers=1, n=20_000, rate=2500)
    print("kill report", r)
    assert r["kills"] == 3
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["extra"] == 0 and r["wrong"] == 0, r
    assert r["dup_ids"] == 0 and r["outputs"] == r["expected"]
    assert r["open_transactions"] == 0


def test_scale_one_to_three_to_two_workers(settings: Settings, tmp_path: Path) -> None:
    src, dst = settings.topic("raw", "eos"), settings.topic("features", "eos_out")
    ensure_topic(settings, src, PARTITIONS)
    ws = Workers(settings, write_app(tmp_path, "eos", "eos_out"), tmp_path)
    ws.start(0)
    sent: list[dict[str, Any]] = []
    done = threading.Event()
    prod = threading.Thread(target=produce_events, args=(settings, src, 24_000, 2000, done, sent), daemon=True)
    time.sleep(3.0)
    prod.start()
    try:
        time.sleep(3.0)
        ws.start(1)
        ws.start(2)                               # 1 -> 3 workers
        # two new processes import the stack and join: a bound for a loaded machine, not a speed claim
        assert wait_members(settings, "eos_out", 3, timeout=120) == [1, 1, 1]
        time.sleep(2.0)
        assert ws.alive(0) and ws.alive(1) and ws.alive(2)
        assert ws.stop(2) == 0                    # 3 -> 2 workers, gracefully
        prod.join(120)
        assert done.is_set()
        wait_for_outputs(settings, dst, len(expected_windows(sent)), timeout=90)
        assert ws.alive(0) and ws.alive(1)
    finally:
        ws.stop_all()
    r = verify_outputs(settings, dst, sent)
    print("scale report", r)
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["extra"] == 0 and r["wrong"] == 0, r
    logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(3))
    assert "Traceback" not in logs, logs[-3000:]
