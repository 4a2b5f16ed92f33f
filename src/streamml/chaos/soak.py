"""``streamml soak``: the pipeline under continuous load and random faults, then the verifier.

A fresh local 3-node cluster (replication 3, min.insync.replicas 2) runs the scoring pipeline:
an acknowledging producer writes card payments to ``<ns>.raw.payments``; exactly-once stream
workers (``streamml run --workers 2``) derive features into ``<ns>.features.payments``;
exactly-once scorers (two ``streamml serve`` instances) write ``<ns>.predictions.fraud``.
While the load runs, a seeded chaos loop injects, at random, broker SIGKILLs and clean
restarts, SIGKILLs of stream workers and scorers (restarted), and SIGSTOP pauses. The load
lasts ``minutes`` and at least until ``faults`` faults were injected under it, so a slow broker
restart on a busy machine lengthens the run instead of thinning the fault schedule. At the end
the independent verifier checks every stage: each acknowledged event exactly once in the
features, each feature exactly once in the predictions, no open transaction, and no
under-replicated partition.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streamml.chaos.brokers import BrokerChaos
from streamml.chaos.workload import AckedProducer, Procs, wait_until, write_app
from streamml.config import Settings
from streamml.errors import StreamMLError
from streamml.kafka.admin import ensure_topic
from streamml.kafka.inspect import under_replicated, wait_fully_replicated
from streamml.kafka.local import LocalCluster, free_port_base
from streamml.verify import VerifyReport, read_topic, verify

__all__ = ["SoakOptions", "SoakReport", "soak", "publish_soak_model"]

FEATURES = ["amount", "cents"]


@dataclass(frozen=True)
class SoakOptions:
    """How long, how fast, and how violent."""

    minutes: float = 2.0
    rate: float = 200.0
    seed: int = 1
    faults: int = 3
    fault_every: tuple[float, float] = (6.0, 14.0)
    secure: bool = False
    data_dir: Path | None = None


@dataclass
class SoakReport:
    records: int = 0
    acked: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    under_replicated: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.acked == self.records and self.under_replicated == 0
                and all(s.get("ok") for s in self.stages.values()) and len(self.stages) == 2)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "acked": self.acked, "faults": dict(self.faults),
                "faults_total": sum(self.faults.values()), "stages": self.stages,
                "under_replicated": self.under_replicated, "log": self.log}


def publish_soak_model(settings: Settings) -> None:
    """A small fraud model over the soak features, published as production."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from streamml.registry import Registry

    rng = np.random.default_rng(0)
    amount = rng.uniform(1, 500, 2000)
    x = np.column_stack([amount, np.round(amount * 100)]).astype(np.float32)
    y = (amount + rng.normal(0, 40, amount.size) > 380).astype(int)
    Registry(settings).publish(LogisticRegression(max_iter=500).fit(x, y), name="fraud", features=FEATURES,
                               stage="production")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _stage(report: VerifyReport) -> dict[str, Any]:
    d = report.as_dict()
    return {k: d[k] for k in ("ok", "inputs", "outputs", "lost", "duplicated", "reordered", "open_transactions")}


def soak(options: SoakOptions, console: Console | None = None) -> SoakReport:
    """Run the soak; the returned report says what was injected and what the verifier found."""
    console = console or Console()
    base = Settings.load(config_file=None)
    owned = options.data_dir is None
    root = Path(options.data_dir or tempfile.mkdtemp(prefix="streamml-soak-"))
    cluster = LocalCluster(root / "cluster", nodes=3, port=free_port_base(3), cache_dir=base.cache_dir,
                           secure=options.secure)
    rng = random.Random(options.seed)
    report = SoakReport()
    with console.status("starting a 3-node cluster..."):
        cluster.up(timeout=180)
    procs: Procs | None = None
    try:
        settings = cluster.settings(base).with_(namespace="soak", home=root / "home")
        settings.home.mkdir(parents=True, exist_ok=True)
        raw, feats = settings.topic("raw", "payments"), settings.topic("features", "payments")
        preds = settings.topic("predictions", "fraud")
        ensure_topic(settings, raw, 3, replication=3)
        ensure_topic(settings, feats, 3, replication=3)
        publish_soak_model(settings)
        app = write_app(root, "payments", "payments")
        procs = Procs(settings, root)
        procs.start("stream", ["run", str(app), "--workers", "2", "--max-batch", "500"])
        for inst in ("a", "b"):
            procs.start(f"scorer-{inst}", ["serve", "--model", "fraud", "--input", "payments", "--instance", inst,
                                          "--batch-size", "500"])
        producer = AckedProducer(settings, raw, None, options.rate, seed=options.seed)
        chaos = BrokerChaos(cluster, settings)
        time.sleep(5)
        producer.start()
        load_until = time.monotonic() + options.minutes * 60
        console.print(f"soak: events at {options.rate:g}/s for {options.minutes:g} min and at least "
                      f"{options.faults} faults, one every {options.fault_every[0]:g}-{options.fault_every[1]:g} s")
        while time.monotonic() < load_until or sum(report.faults.values()) < options.faults:
            time.sleep(rng.uniform(*options.fault_every))
            action = rng.choice(["broker-kill", "broker-restart", "stream-kill", "scorer-kill", "pause"])
            t = time.strftime("%H:%M:%S")
            if action in ("broker-kill", "broker-restart"):
                node = rng.choice(cluster.node_infos).node_id
                chaos.bounce(node, hard=action == "broker-kill")
                report.log.append(f"{t} {chaos.log[-1]}")
            elif action == "stream-kill":
                kids = _children(procs.procs["stream"].pid)
                if kids:
                    victim = rng.choice(kids)
                    os.kill(victim, signal.SIGKILL)
                    report.log.append(f"{t} SIGKILL stream worker pid {victim} (the supervisor restarts it)")
            elif action == "scorer-kill":
                name = rng.choice(["scorer-a", "scorer-b"])
                procs.kill(name, restart=True)
                report.log.append(f"{t} SIGKILL {name}, restarted")
            else:
                kids = _children(procs.procs["stream"].pid)
                targets = [("stream worker", k) for k in kids] + [
                    (n, procs.procs[n].pid) for n in ("scorer-a", "scorer-b")]
                what, pid = rng.choice(targets)
                secs = rng.uniform(1, 12)
                os.kill(pid, signal.SIGSTOP)
                time.sleep(secs)
                os.kill(pid, signal.SIGCONT)
                report.log.append(f"{t} SIGSTOP {what} pid {pid} for {secs:.1f}s")
            report.faults[action] += 1
            console.print(f"  fault {sum(report.faults.values())}: {report.log[-1] if report.log else action}")
        producer.stop()
        producer.join()
        report.records, report.acked = producer.sent, len(producer.acked)
        with console.status("load done; waiting for the pipeline to drain..."):
            wait_until(lambda: len(read_topic(settings, preds, 60)) >= report.acked, 300, every=2.0)
        procs.stop_all()
        expected = producer.acked
        report.stages["ingest → features"] = _stage(verify(
            settings, [raw], [feats], expected=lambda r: r.header("sm.event_id") in expected))
        report.stages["features → predictions"] = _stage(verify(settings, [feats], [preds]))
        if not all(st["ok"] for st in report.stages.values()):  # what each process said, for the post-mortem
            for name in sorted(procs.procs):
                tail = [ln for ln in procs.log(name, 400).splitlines() if "rdkafka" not in ln][-40:]
                report.log += [f"--- {name} (last lines, librdkafka's own lines left out)", *tail]
        wait_fully_replicated(settings, 120)
        report.under_replicated = under_replicated(settings)
    finally:
        if procs is not None:
            procs.stop_all()
        cluster.down(timeout=20, purge=owned)
    if not owned:
        (root / "soak-report.json").write_text(json.dumps(report.as_dict(), indent=2))
    return report


def show(report: SoakReport, console: Console) -> None:
    table = Table(title="soak: verification (independent read_committed reader)")
    for col in ("stage", "inputs", "outputs", "lost", "duplicated", "reordered", "open txns", "verdict"):
        table.add_column(col, justify="right" if col not in ("stage", "verdict") else "left")
    for name, s in report.stages.items():
        table.add_row(name, f"{s['inputs']:,}", f"{s['outputs']:,}", str(s["lost"]), str(s["duplicated"]),
                      str(s["reordered"]), str(s["open_transactions"]),
                      "[green]ok[/green]" if s["ok"] else "[red]FAILED[/red]")
    console.print(table)
    faults = ", ".join(f"{k} {v}" for k, v in sorted(report.faults.items())) or "none"
    console.print(f"records {report.records:,}, acknowledged {report.acked:,}; faults injected "
                  f"{sum(report.faults.values())} ({faults}); under-replicated partitions at the end "
                  f"{report.under_replicated}")
    if not report.ok:
        raise StreamMLError("soak failed: " + json.dumps(
            {k: v for k, v in report.as_dict().items() if k in ("records", "acked", "stages")}))
