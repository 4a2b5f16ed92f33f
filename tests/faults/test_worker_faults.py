"""Worker faults on the 3-node cluster, under load: a paused zombie (past the consumer session
timeout, the poll timeout and the transaction timeout) and a network partition (past the
session and transaction timeouts). The exactly-once stream
workers run under the CLI's supervisor (``streamml run --workers 2``), which restarts a
worker that stopped on a fatal error (fenced). The verifier then finds every input exactly
once in the output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from streamml.chaos import AckedProducer, PartitionProxy, Procs, wait_until, write_app
from streamml.config import Settings
from streamml.errors import StreamMLError
from streamml.kafka.admin import ensure_topic
from streamml.kafka.local import LocalCluster
from streamml.verify import read_topic, verify

pytestmark = pytest.mark.faults

TXN_TIMEOUT_S = 30   # LoopOptions.transaction_timeout_ms, the product default
SESSION_S = 10       # LoopOptions.session_timeout_ms, the product default
POLL_S = 45          # LoopOptions.max_poll_interval_ms, the product default (no test-only override)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def _finish(settings: Settings, procs: Procs, producer: AckedProducer, raw: str, out: str) -> dict:
    producer.join(600)
    assert not producer.is_alive() and len(producer.acked) == producer.n
    ok = wait_until(lambda: len({r.header("sm.event_id") for r in read_topic(settings, out, 30)})
                    >= len(producer.acked), 240)
    procs.stop_all()
    assert ok, procs.log("workers", 60)
    report = verify(settings, [raw], [out])
    import re

    log = (procs.tmp / "workers.log").read_text(errors="replace")
    recoveries = [ln for ln in log.splitlines()
                  if re.search(r"fenced|restarting|aborted|epoch|timed out|FatalError", ln, re.I)]
    print(report.summary(), f"\nrecovery lines in the workers' log: {len(recoveries)}", *recoveries[:8], sep="\n")
    assert recoveries, "the fault left no trace: the workers never had to recover"
    assert report.ok, report.summary()
    return report.as_dict()


def _processing(settings: Settings, out: str, partitions: int = 4, timeout: float = 120) -> None:
    """Wait until every partition has output: the workers are up, joined and committing (on a
    busy machine starting them takes longer than any fixed pause)."""
    def every_partition() -> bool:
        try:
            return len({r.partition for r in read_topic(settings, out, 5)}) == partitions
        except StreamMLError:  # the workers have not created the output topic yet
            return False

    assert wait_until(every_partition, timeout), \
        f"the workers did not produce to every partition of {out} within {timeout:.0f} s"


def _setup(settings: Settings, tmp: Path, name: str) -> tuple[str, str, Path]:
    settings.home.mkdir(parents=True, exist_ok=True)
    raw, out = settings.topic("raw", name), settings.topic("features", name)
    ensure_topic(settings, raw, 4)
    return raw, out, write_app(tmp, name, name)


ZOMBIE_HOOK = """
# Fault injection for the zombie test: the first worker to find the marker file stops itself
# (SIGSTOP) inside an open transaction, after its records are written and before it commits.
import os, signal
from streamml.kafka import transactions as _tx

_commit = _tx.TransactionalSession.commit
def _commit_or_freeze(self, offsets=None):
    try:
        os.rename({marker!r}, {marker!r} + ".taken")
    except OSError:
        pass
    else:
        os.kill(os.getpid(), signal.SIGSTOP)
    return _commit(self, offsets)
_tx.TransactionalSession.commit = _commit_or_freeze
"""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return "?"


def test_paused_zombie_is_fenced_and_duplicates_nothing(settings3: Settings, tmp_path: Path) -> None:
    import os
    import signal

    raw, out, app = _setup(settings3, tmp_path, "zombie")
    marker = str(tmp_path / "freeze-once")
    app.write_text(ZOMBIE_HOOK.format(marker=marker) + app.read_text())
    procs = Procs(settings3, tmp_path)
    procs.start("workers", ["run", str(app), "--workers", "2", "--max-batch", "200"])
    producer = AckedProducer(settings3, raw, 5000, rate=200)
    assert wait_until(lambda: len(children(procs.procs["workers"].pid)) == 2, 30)
    producer.start()
    _processing(settings3, out)
    Path(marker).touch()
    stopped: list[int] = []
    assert wait_until(lambda: stopped.extend(p for p in children(procs.procs["workers"].pid) if _state(p) == "T")
                      or stopped, 30, every=0.2), "no worker froze inside a transaction"
    time.sleep(max(TXN_TIMEOUT_S, POLL_S) + SESSION_S)  # past the session, poll and transaction timeouts
    os.kill(stopped[0], signal.SIGCONT)             # the zombie wakes up and tries to commit
    result = _finish(settings3, procs, producer, raw, out)
    assert result["duplicated"] == 0 and result["lost"] == 0


def test_network_partition_past_the_transaction_timeout(cluster3: LocalCluster, settings3: Settings,
                                                        tmp_path: Path) -> None:
    raw, out, app = _setup(settings3, tmp_path, "partition")
    proxy = PartitionProxy(cluster3.external_routes()).start()
    # the workers reach the cluster only through the proxy; producer and verifier go direct
    behind = settings3.with_(bootstrap_servers=cluster3.external_bootstrap_servers)
    # with the product's defaults: a member that stops polling (stuck after the heal) leaves the
    # group after max.poll.interval.ms (45 s), and its watchdog restarts it (--stuck-after 50 s)
    procs = Procs(behind, tmp_path)
    try:
        procs.start("workers", ["run", str(app), "--workers", "2", "--max-batch", "200"])
        producer = AckedProducer(settings3, raw, 5000, rate=200)
        producer.start()
        _processing(settings3, out)
        proxy.cut()
        time.sleep(TXN_TIMEOUT_S + SESSION_S)
        proxy.heal()
        result = _finish(settings3, procs, producer, raw, out)
    finally:
        procs.stop_all()
        proxy.close()
    assert result["duplicated"] == 0 and result["lost"] == 0
