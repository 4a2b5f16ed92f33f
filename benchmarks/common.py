"""What every benchmark shares: a broker, event payloads, the raw-client baselines, and reporting.

The broker is ``STREAMML_BENCH_BOOTSTRAP_SERVERS`` when set, otherwise a fresh single-node
local cluster that the benchmark starts and stops itself (``bench_broker()``).

The raw baselines are the ceiling on this machine: plain confluent-kafka with the same
producer/consumer settings streamml uses (idempotent, acks=all, lz4; read_committed), no
processing at all. CPU seconds are this Python process's (user + system), not the broker's.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.kafka.local import LocalCluster, free_port_base

__all__ = [
    "bench_broker", "make_events", "fill_topic", "raw_produce", "raw_consume", "raw_passthrough",
    "Measurement", "measure", "Report", "new_topic",
]

RESULTS = Path(__file__).parent / "results"
console = Console(width=max(Console().width, 130))


@contextmanager
def bench_broker() -> Iterator[Settings]:
    """Settings for the benchmark broker: an existing one, or a fresh local cluster."""
    base = Settings.load(config_file=None)
    ns = "bench" + uuid.uuid4().hex[:6]
    if os.environ.get("STREAMML_BENCH_BOOTSTRAP_SERVERS"):
        yield base.with_(bootstrap_servers=os.environ["STREAMML_BENCH_BOOTSTRAP_SERVERS"], namespace=ns)
        return
    with tempfile.TemporaryDirectory(prefix="streamml-bench-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=1, port=free_port_base(1), cache_dir=base.cache_dir, heap="1g")
        cluster.up(timeout=180)
        try:
            yield base.with_(bootstrap_servers=cluster.bootstrap_servers, namespace=ns, home=Path(tmp) / "home")
        finally:
            cluster.down(timeout=20)


def new_topic(settings: Settings, prefix: str, partitions: int = 1) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ensure_topic(settings, name, partitions)
    return name


def make_events(n: int, size: int = 100, seed: int = 7, start_ms: int = 1_700_000_000_000) -> list[bytes]:
    """``n`` JSON card-payment events of about ``size`` bytes each (padding fills the rest).

    >>> evs = make_events(3, 100)
    >>> all(90 <= len(e) <= 110 for e in evs), orjson.loads(evs[0])["event_id"]
    (True, 'e0')
    """
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        ev = {"event_id": f"e{i}", "event_time": start_ms + i * 10, "card_id": f"c{rng.randrange(1000)}",
              "amount": round(rng.expovariate(1 / 50), 2), "merchant": f"m{rng.randrange(200)}", "pad": ""}
        raw = orjson.dumps(ev)
        ev["pad"] = "x" * max(0, size - len(raw))
        out.append(orjson.dumps(ev))
    return out


def _keys(events: list[bytes]) -> list[bytes]:
    return [orjson.loads(e)["card_id"].encode() for e in events]


def fill_topic(settings: Settings, topic: str, events: list[bytes], keyed: bool = True,
               keys: list[bytes] | None = None) -> None:
    """Write ``events`` to ``topic`` (keyed by card id, or by ``keys``) and wait for every acknowledgement."""
    p = clients.producer(settings)
    if keys is None:
        keys = _keys(events) if keyed else [None] * len(events)
    for k, v in zip(keys, events):
        _produce(p, topic, v, k)
    p.flush(120)


def _produce(p: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    while True:
        try:
            p.produce(topic, value, key)
            return
        except BufferError:
            p.poll(0.05)


@dataclass
class Measurement:
    """Throughput of one run: count, wall seconds, CPU seconds of this process, bytes."""

    name: str
    count: int
    seconds: float
    cpu_seconds: float
    bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_seconds / self.count * 1e6 if self.count else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "seconds": round(self.seconds, 4),
                "per_s": round(self.per_s, 1), "mb_per_s": round(self.mb_per_s, 2),
                "cpu_s_per_million": round(self.cpu_s_per_million, 3), **self.extra}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(name: str, fn: Callable[[], int], nbytes: int = 0, **extra: Any) -> Measurement:
    """Run ``fn`` (which returns how many items it handled) and time it."""
    c0, t0 = _cpu(), time.perf_counter()
    count = fn()
    t1, c1 = time.perf_counter(), _cpu()
    return Measurement(name, count, t1 - t0, c1 - c0, nbytes, dict(extra))


def raw_produce(settings: Settings, events: list[bytes], topic: str | None = None) -> Measurement:
    """Raw producer: produce ``events`` keyed, until every one is acknowledged."""
    topic = topic or new_topic(settings, "raw-produce")
    p = clients.producer(settings)
    keys = _keys(events)

    def run() -> int:
        for k, v in zip(keys, events):
            _produce(p, topic, v, k)
        p.flush(120)
        return len(events)

    return measure("raw produce", run, sum(map(len, events)))


def _consume_all(c: Consumer, n: int, timeout: float = 120.0) -> tuple[int, int]:
    got = nbytes = 0
    deadline = time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        for m in c.consume(10_000, timeout=0.5):
            if m.error() is None:
                got += 1
                nbytes += len(m.value() or b"")
    return got, nbytes


def _assigned_consumer(settings: Settings, topic: str) -> Consumer:
    c = clients.consumer(settings, f"raw-{uuid.uuid4().hex[:8]}")
    md = c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    return c


def raw_consume(settings: Settings, topic: str, n: int) -> Measurement:
    """Raw consumer: read ``n`` records of ``topic`` from the start (read_committed)."""
    c = _assigned_consumer(settings, topic)
    box: dict[str, int] = {}

    def run() -> int:
        got, box["bytes"] = _consume_all(c, n)
        return got

    m = measure("raw consume", run)
    m.bytes = box["bytes"]
    c.close()
    return m


def raw_passthrough(settings: Settings, src: str, n: int, *, eos: bool = False, batch: int = 10_000,
                    dst: str | None = None, exclude_join: bool = False) -> Measurement:
    """Raw consume→produce with no processing: at-least-once, or exactly-once with a
    transaction per consumed batch (offsets sent to the transaction). ``dst``: the output
    topic (a new one-partition topic when not given). ``exclude_join``: the consumer group
    join happens before the timed part (as ``Scorer.start()`` does for the scorer); records a
    join poll returns are kept and passed through in the timed part."""
    dst = dst or new_topic(settings, "raw-pass", 1)
    group = f"raw-pass-{uuid.uuid4().hex[:8]}"
    c = clients.consumer(settings, group)
    assigned: list[bool] = []
    c.subscribe([src], on_assign=lambda _c, parts: assigned.append(bool(parts)))
    p = clients.producer(settings, transactional_id=f"raw-{group}" if eos else None)
    if eos:
        p.init_transactions(30)
    box = {"bytes": 0}
    pending: list[Any] = []
    join_deadline = time.monotonic() + 60
    while exclude_join and not any(assigned) and time.monotonic() < join_deadline:
        pending.extend(c.consume(batch, timeout=0.2))

    def run() -> int:
        got = 0
        deadline = time.monotonic() + 300
        while got < n and time.monotonic() < deadline:
            msgs = pending + c.consume(batch, timeout=0.5) if pending else c.consume(batch, timeout=0.5)
            pending.clear()
            msgs = [m for m in msgs if m.error() is None]
            if not msgs:
                continue
            if eos:
                p.begin_transaction()
            for m in msgs:
                _produce(p, dst, m.value(), m.key())
                box["bytes"] += len(m.value() or b"")
            if eos:
                offsets = {}
                for m in msgs:
                    offsets[(m.topic(), m.partition())] = m.offset() + 1
                p.send_offsets_to_transaction([TopicPartition(t, q, o) for (t, q), o in offsets.items()],
                                              c.consumer_group_metadata())
                p.commit_transaction()
            else:
                p.poll(0)
                c.commit(asynchronous=True)
            got += len(msgs)
        p.flush(120)
        return got

    m = measure("raw pass-through (EOS)" if eos else "raw pass-through (ALOS)", run)
    m.bytes = box["bytes"]
    c.close()
    return m


class Report:
    """Collects measurements, prints them as a table with ratios, writes JSON results."""

    def __init__(self, name: str, title: str) -> None:
        self.name, self.title = name, title
        self.rows: list[tuple[str, Measurement, Measurement | None]] = []
        self.notes: list[str] = []

    def add(self, m: Measurement, baseline: Measurement | None = None, group: str = "") -> None:
        self.rows.append((group, m, baseline))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def show(self) -> Path:
        table = Table(title=self.title)
        for col in ("group", "run", "count", "events/s", "MB/s", "CPU-s/M", "vs raw", "baseline"):
            table.add_column(col, justify="right" if col not in ("group", "run", "baseline") else "left")
        for group, m, base in self.rows:
            ratio = f"{m.per_s / base.per_s:.2f}x" if base and base.per_s else "-"
            table.add_row(group, m.name, f"{m.count:,}", f"{m.per_s:,.0f}", f"{m.mb_per_s:.1f}",
                          f"{m.cpu_s_per_million:.1f}", ratio, base.name if base else "")
        console.print(table)
        for n in self.notes:
            console.print(f"[dim]{n}[/dim]")
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"{self.name}.json"
        out.write_text(json.dumps({
            "benchmark": self.name, "title": self.title, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "rows": [{"group": g, **m.as_dict(),
                      "baseline": b.name if b else None,
                      "ratio_to_baseline": round(m.per_s / b.per_s, 3) if b and b.per_s else None}
                     for g, m, b in self.rows],
            "notes": self.notes,
        }, indent=2))
        console.print(f"results written to {out}")
        return out


def best(runs: list[Measurement]) -> Measurement:
    """The fastest of repeated runs of one measurement."""
    return max(runs, key=lambda m: m.per_s)
