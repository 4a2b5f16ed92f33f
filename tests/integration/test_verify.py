"""The independent verifier finds what it must: loss, duplication, reordering, open transactions."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Callable

import orjson

from streamml.config import Settings
from streamml.errors import EXIT_DATA_LOSS
from streamml.headers import lineage
from streamml.kafka import clients
from streamml.kafka.transactions import TransactionalSession
from streamml.verify import open_transactions, verify


def _write(settings: Settings, topic: str, ids: list[int], key: Callable[[int], str] = lambda i: f"k{i % 4}") -> None:
    p = clients.producer(settings)
    for i in ids:
        p.produce(topic, orjson.dumps({"event_id": f"e{i}", "n": i}), key(i).encode(),
                  headers=lineage(event_id=f"e{i}", component="test"))
    assert p.flush(20) == 0


def test_clean_copy_passes_and_aggregates_match(settings: Settings, new_topic: Callable[..., str]) -> None:
    src, dst = new_topic("in", partitions=2), new_topic("out", partitions=2)
    _write(settings, src, list(range(200)))
    _write(settings, dst, list(range(200)))

    def sums(recs: list) -> dict:
        out: dict = {}
        for r in recs:
            out[r.key] = out.get(r.key, 0) + r.json()["n"]
        return out

    report = verify(settings, [src], [dst], recompute=sums, observe=sums)
    assert report.ok, report.summary()
    assert (report.inputs, report.outputs, report.unique_outputs) == (200, 200, 200)


def test_loss_duplication_and_reordering_are_reported(settings: Settings, new_topic: Callable[..., str]) -> None:
    src, dst = new_topic("in"), new_topic("out")
    _write(settings, src, list(range(50)), key=lambda i: "same")
    outputs = [i for i in range(50) if i not in (3, 7)] + [10, 11]   # 2 lost, 2 duplicated
    outputs[20], outputs[21] = outputs[21], outputs[20]                # 1 inversion
    _write(settings, dst, outputs, key=lambda i: "same")
    report = verify(settings, [src], [dst])
    assert report.lost == ["e3", "e7"]
    assert report.duplicated == {"e10": 2, "e11": 2}
    assert report.reordered >= 1
    assert not report.ok


def test_open_transaction_is_reported_then_clears(settings: Settings, new_topic: Callable[..., str],
                                                  unique: Callable[[str], str]) -> None:
    topic = new_topic("tx")
    p = clients.producer(settings, transactional_id=unique("tid"))
    tx = TransactionalSession(p)
    tx.begin()
    p.produce(topic, b'{"event_id": "x"}')
    p.flush(10)
    deadline = time.monotonic() + 10
    found = []
    while not found and time.monotonic() < deadline:
        found = open_transactions(settings, [topic])
    assert found and found[0][0] == topic
    tx.commit()
    assert open_transactions(settings, [topic]) == []


def test_verify_waits_for_an_open_transaction_to_end_then_reads_it(settings: Settings, new_topic: Callable[..., str],
                                                                   unique: Callable[[str], str]) -> None:
    """A transaction that ends while the verifier settles is read (its records count); with no
    settling time the same open transaction is reported."""
    import threading

    src, dst = new_topic("in"), new_topic("out")
    _write(settings, src, [1, 2])
    _write(settings, dst, [1])
    p = clients.producer(settings, transactional_id=unique("tid"))
    tx = TransactionalSession(p)
    tx.begin()
    p.produce(dst, b'{"event_id": "e2"}')
    p.flush(10)
    assert not verify(settings, [src], [dst], settle_s=0).ok  # open now: reported, e2 not readable
    timer = threading.Timer(3.0, tx.commit)
    timer.start()
    report = verify(settings, [src], [dst], settle_s=30)
    timer.join()
    assert report.ok, report.summary()
    assert report.outputs == 2


def test_cli_exit_code_follows_the_verdict(settings: Settings, new_topic: Callable[..., str]) -> None:
    src, dst = new_topic("in"), new_topic("out")
    _write(settings, src, [1, 2, 3])
    _write(settings, dst, [1, 2])
    cmd = [sys.executable, "-m", "streamml", "-b", settings.bootstrap_servers or "", "verify",
           "-i", src, "-o", dst, "--format", "json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == EXIT_DATA_LOSS, res.stderr
    assert orjson.loads(res.stdout)["lost"] == 1
    assert res.stderr.startswith("error: verification failed") and "Traceback" not in res.stderr
