"""What a fault test prints when a stage stalls: the open-transaction gap and stack dumps."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable

from streamml.chaos import Procs, stage_report, wait_until
from streamml.chaos.workload import catches
from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic


def test_stage_report_shows_an_open_transaction(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("open-txn")
    p = clients.producer(settings, transactional_id=f"{topic}.tx")
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, b"{}")
    p.flush(10)  # written, not committed: the last stable offset stays behind the high watermark
    report = stage_report(settings, [topic])
    assert f"{topic}[0] high=1 stable=0" in report, report
    p.commit_transaction(10)
    report = stage_report(settings, [topic])
    assert f"{topic}[0] high=2 stable=2" in report, report  # the record and its commit marker


def test_sigusr1_dumps_the_stacks_of_a_running_command(settings: Settings, tmp_path: Path) -> None:
    ensure_topic(settings, settings.topic("features", "pay"), 1)
    procs = Procs(settings, tmp_path)
    # waits for a model that is never published, so the process is alive and idle
    procs.start("scorer", ["serve", "--model", "never-published", "--input", "pay", "--wait", "60"])
    try:
        pid = procs.procs["scorer"].pid
        assert wait_until(lambda: catches(pid, signal.SIGUSR1), 30, every=0.1), "no SIGUSR1 handler installed"
        procs.dump_stacks()
        log = procs.log("scorer", 400)
        assert "Current thread" in log or "Thread 0x" in log, log
        assert procs.alive("scorer"), "the stack dump must not stop the process"
    finally:
        procs.stop_all()
