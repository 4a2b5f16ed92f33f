"""The live runner on a real broker: stateless lineage, windows vs recomputation, replay,
restore after local state loss, table joins."""

from __future__ import annotations

import math
import random
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.stream import RunOptions, Table, Worker, count, last, max, mean, replay, stream, sum, tumbling
from streamml.stream.state import PartitionStore, store_dir
from streamml.verify import read_topic

FAST = RunOptions(max_batch=300, idle_wait_s=0.1)


def send(settings: Settings, topic: str, events: list[dict[str, Any]], key: str = "k",
         partition: int | None = None) -> None:
    p = clients.producer(settings)
    for e in events:
        kw = {} if partition is None else {"partition": partition}
        p.produce(topic, orjson.dumps(e), str(e[key]).encode(),
                  headers=[("sm.event_id", f"ev-{e.get('i')}".encode()), ("sm.event_time", b"1")], **kw)
    p.flush(30)


def run_until_idle(pipeline: Any, settings: Settings, idle: float = 3.0, **kw: Any) -> dict[str, int]:
    return Worker(pipeline, settings, FAST, **kw).run(idle_exit=idle)


def events(n: int, seed: int = 3, disorder: int = 2500, start: int = 0) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [{"i": i, "k": f"k{rnd.randrange(4)}", "ts": 1_000_000 + i * 40 + rnd.randint(-disorder, 0),
             "v": rnd.randrange(100)} for i in range(start, start + n)]


def recompute(evs: list[dict[str, Any]], size: int, grace: int, partition_of: dict[str, int]) -> tuple[dict, set]:
    """Reference: per-partition running max stream time; late = window closed on arrival."""
    st: dict[int, float] = defaultdict(lambda: -math.inf)
    wins: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    late = set()
    for e in evs:
        p = partition_of[e["k"]]
        st[p] = e["ts"] if e["ts"] > st[p] else st[p]
        start = e["ts"] // size * size
        if start + size + grace <= st[p]:
            late.add(e["i"])
        else:
            wins[(e["k"], start)].append(e)
    closed = {k: v for k, v in wins.items() if k[1] + size + grace <= st[partition_of[k[0]]]}
    return closed, late


def test_stateless_pipeline_carries_lineage(settings: Settings) -> None:
    src = settings.topic("raw", "pay")
    ensure_topic(settings, src, 2)
    evs = [{"i": i, "k": f"c{i % 5}", "amount": i * 1.5} for i in range(2000)]
    send(settings, src, evs)
    p = (stream("pay").filter(pl.col("amount") > 100)
         .with_columns(double=pl.col("amount") * 2, big=pl.col("amount") > 1000)
         .sql("SELECT *, i % 7 AS bucket FROM batch").to("pay_feats"))
    stats = run_until_idle(p, settings)
    out = read_topic(settings, settings.topic("features", "pay_feats"))
    want = {e["i"]: e for e in evs if e["amount"] > 100}
    assert stats["in"] == 2000 and len(out) == len(want) == stats["out"]
    for r in out:
        row = r.json()
        e = want[row["i"]]
        assert row == {**e, "double": e["amount"] * 2, "big": e["amount"] > 1000, "bucket": e["i"] % 7}
        assert r.key == e["k"].encode()
        assert r.header("sm.event_id") == f"ev-{e['i']}" and r.header("sm.component") == "stream.pay_feats"


def test_window_results_equal_recomputation_and_replay(settings: Settings) -> None:
    src = settings.topic("raw", "clicks")
    ensure_topic(settings, src, 2)
    evs = events(4000)
    parts = {"k0": 0, "k1": 0, "k2": 1, "k3": 1}
    for p in (0, 1):
        send(settings, src, [e for e in evs if parts[e["k"]] == p], partition=p)
    pipe = (stream("clicks").window(key="k", size=tumbling(1000, grace=1500), time="ts", late="dlq")
            .agg(n=count(), total=sum("v"), avg=mean("v"), hi=max("v"), lastv=last("v")).to("click_stats"))
    stats = run_until_idle(pipe, settings)
    closed, late = recompute(evs, 1000, 1500, parts)
    assert late and stats["late"] == len(late)
    live = [r.json() for r in read_topic(settings, settings.topic("features", "click_stats"))]
    got = {(r["k"], r["window_start"]): r for r in live}
    assert len(got) == len(live) == len(closed)
    for key, rows in closed.items():
        r = got[key]
        vs = [e["v"] for e in rows]
        assert (r["n"], r["total"], r["hi"]) == (len(vs), builtins_sum(vs), builtins_max(vs))
        assert r["avg"] == pytest.approx(builtins_sum(vs) / len(vs))
        assert r["lastv"] == builtins_max(rows, key=lambda e: (e["ts"], e["i"]))["v"]
    dlq = read_topic(settings, settings.topic("dlq"))
    assert sorted(orjson.loads(r.value)["i"] for r in dlq) == sorted(late)
    assert all(r.header("sm.reason").startswith("late") for r in dlq)
    replayed = replay(pipe, settings, batch_size=777)
    assert sorted(replayed.to_dicts(), key=str) == sorted(live, key=str)   # live == replayed features


import builtins  # noqa: E402

builtins_sum, builtins_max = builtins.sum, builtins.max


def store_contents(settings: Settings, pipeline: str, partition: int) -> dict[bytes, bytes]:
    s = PartitionStore(store_dir(settings, pipeline) / f"p{partition}")
    try:
        return dict(s.items())
    finally:
        s.close()


def test_restore_after_local_state_loss(settings: Settings) -> None:
    src = settings.topic("raw", "sensor")
    ensure_topic(settings, src, 2)
    first, second = events(1500, seed=9, disorder=0), events(1500, seed=10, disorder=0, start=1500)
    parts = {"k0": 0, "k1": 0, "k2": 1, "k3": 1}
    for p in (0, 1):
        send(settings, src, [e for e in first if parts[e["k"]] == p], partition=p)
    pipe = (stream("sensor").window(key="k", size=tumbling(5000, grace=1000), time="ts")
            .agg(n=count(), total=sum("v")).to("sensor_stats"))
    run_until_idle(pipe, settings)
    before = {p: store_contents(settings, pipe.name, p) for p in (0, 1)}
    assert all(len(b) > 1 for b in before.values())          # open windows + stream time
    shutil.rmtree(store_dir(settings, pipe.name))              # the worker loses its disk
    for p in (0, 1):
        send(settings, src, [e for e in second if parts[e["k"]] == p], partition=p)
    log: list[tuple[str, Any]] = []
    restored: dict[int, dict[bytes, bytes]] = {}
    holder: dict[str, Worker] = {}

    def on_event(kind: str, info: dict[str, Any]) -> None:
        log.append((kind, info))
        if kind == "assigned":
            for p in info["partitions"]:
                restored[p] = dict(holder["w"].state.stores[p].items())  # type: ignore[union-attr]

    w = Worker(pipe, settings, FAST, on_event=on_event)
    holder["w"] = w
    w.run(idle_exit=3.0)
    assert restored == before                                  # identical to the lost state
    kinds = [k for k, _ in log]
    first_batch = kinds.index("batch")
    assert [i["partition"] for k, i in log[:first_batch] if k == "restored"] == [0, 1]
    assert all(i["records"] > 0 for k, i in log if k == "restored")   # rebuilt from the changelog
    closed, _ = recompute(first + second, 5000, 1000, parts)
    got = {(r["k"], r["window_start"]): (r["n"], r["total"])
           for r in (x.json() for x in read_topic(settings, settings.topic("features", "sensor_stats")))}
    assert got == {k: (len(v), builtins_sum(e["v"] for e in v)) for k, v in closed.items()}


def test_join_with_table_from_compacted_topic(settings: Settings) -> None:
    src, tab = settings.topic("raw", "tx"), settings.topic("raw", "cards")
    ensure_topic(settings, src, 1)
    ensure_topic(settings, tab, 2, compacted=True)
    p = clients.producer(settings)
    for c in range(5):
        p.produce(tab, orjson.dumps({"limit": c * 100}), f"c{c}".encode())
    p.produce(tab, orjson.dumps({"limit": 999}), b"c4")       # the latest value wins
    p.produce(tab, None, b"c3")                                # tombstone: deleted
    p.flush(10)
    send(settings, src, [{"i": i, "card": f"c{i % 5}", "amount": i} for i in range(50)], key="card")
    pipe = (stream("tx").join(Table("cards", key="card"))
            .with_columns(over=pl.col("amount") > pl.col("limit")).to("tx_enriched"))
    run_until_idle(pipe, settings)
    rows = [r.json() for r in read_topic(settings, settings.topic("features", "tx_enriched"))]
    limits = {"c0": 0, "c1": 100, "c2": 200, "c3": None, "c4": 999}
    assert len(rows) == 50
    for r in rows:
        assert r["limit"] == limits[r["card"]]
        assert r["over"] == (None if r["limit"] is None else r["amount"] > r["limit"])


def test_at_least_once_mode(settings: Settings) -> None:
    src = settings.topic("raw", "alo")
    ensure_topic(settings, src, 1)
    send(settings, src, [{"i": i, "k": "a"} for i in range(500)])
    pipe = stream("alo").with_columns(j=pl.col("i") + 1).to("alo_out")
    w = Worker(pipe, settings, FAST.with_(guarantee="at_least_once"))
    w.run(idle_exit=2.0)
    rows = [r.json() for r in read_topic(settings, settings.topic("features", "alo_out"))]
    assert sorted(r["j"] for r in rows) == list(range(1, 501))
    # committed offsets: a second run finds nothing new
    assert Worker(pipe, settings, FAST.with_(guarantee="at_least_once")).run(idle_exit=2.0)["in"] == 0


def test_cli_runs_workers_until_idle(settings: Settings, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    src = settings.topic("raw", "cli")
    ensure_topic(settings, src, 3)
    send(settings, src, [{"i": i, "k": f"k{i % 9}"} for i in range(3000)])
    app = tmp_path / "cli_app.py"
    app.write_text("import polars as pl\nfrom streamml.stream import stream\n"
                   "doubled = stream('cli').with_columns(j=pl.col('i') * 2).to('cli_out')\n")
    env = dict(os.environ, STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "",
               STREAMML_NAMESPACE=settings.namespace, STREAMML_HOME=str(settings.home))
    res = subprocess.run([sys.executable, "-m", "streamml", "run", str(app), "--workers", "2", "--idle", "4"],
                         env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    rows = [r.json() for r in read_topic(settings, settings.topic("features", "cli_out"))]
    assert sorted(r["j"] for r in rows) == [2 * i for i in range(3000)]


def test_cli_worker_stuck_in_a_batch_stops_with_its_stacks(settings: Settings, tmp_path: Path) -> None:
    """A batch that outlives --stuck-after stops the worker (so that a supervisor restarts it)
    with the stacks of its threads in the log, and commits nothing of that batch."""
    import os
    import subprocess
    import sys

    from streamml.runtime.supervisor import EXIT_STUCK

    src = settings.topic("raw", "stuck")
    ensure_topic(settings, src, 1)
    send(settings, src, [{"i": i, "k": "a"} for i in range(50)])
    app = tmp_path / "stuck_app.py"
    app.write_text("import time\nfrom streamml.stream import stream\n"
                   "def hang(df):\n    time.sleep(60)\n    return df\n"
                   "stuck = stream('stuck').map_batch(hang).to('stuck_out')\n")
    env = dict(os.environ, STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "",
               STREAMML_NAMESPACE=settings.namespace, STREAMML_HOME=str(settings.home))
    res = subprocess.run([sys.executable, "-m", "streamml", "run", str(app), "--stuck-after", "3"],
                         env=env, capture_output=True, timeout=50)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == EXIT_STUCK, err[-2000:]
    assert "made no progress" in err and "in hang" in err, err[-2000:]
    assert read_topic(settings, settings.topic("features", "stuck_out"), 5) == []


def test_replay_over_bounded_offset_and_time_ranges(settings: Settings) -> None:
    src = settings.topic("raw", "hist")
    ensure_topic(settings, src, 1)
    p = clients.producer(settings)
    for i in range(300):
        p.produce(src, orjson.dumps({"i": i}), timestamp=1_700_000_000_000 + i * 1000)
    p.flush(10)
    pipe = stream("hist").with_columns(sq=pl.col("i") * pl.col("i")).to("hist_out")
    part = replay(pipe, settings, start={0: 100}, end={0: 200})
    assert part["i"].to_list() == list(range(100, 200)) and part["sq"].to_list() == [i * i for i in range(100, 200)]
    by_time = replay(pipe, settings, start=1_700_000_000_000 + 250_000, by_time=True)
    assert by_time["i"].to_list() == list(range(250, 300))
    replay(pipe, settings, start=290, to="hist_copy")
    copied = [r.json()["i"] for r in read_topic(settings, settings.topic("features", "hist_copy"))]
    assert copied == list(range(290, 300))
