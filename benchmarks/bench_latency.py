"""End-to-end latency, p50 and p99: the raw client against streamml, on one broker in one run.

Latency is *the reader sees the output record* minus *the generator produced the input*:
the generator writes its wall clock (``time.time_ns() // 1000``, field ``"t"``) into every
value, the systems carry it through (a window carries the newest ``t`` it aggregated), and a
read_committed reader in the same process takes the clock again on arrival: one clock.

Systems, one after another, each in its own process (spawned), each on fresh 1-partition topics:

- raw produce -> consume (no hop): the reader reads the generator's topic directly;
- raw pass-through at-least-once: poll, produce (linger.ms=0), ``commit(asynchronous=True)``;
- raw pass-through exactly-once: the fastest loop we could write with confluent-kafka: the first
  record with ``poll``, whatever else has arrived with ``consume(n, 0)``, one transaction per such
  small batch with ``send_offsets_to_transaction``, ``retry.backoff.ms=2``; and the same with
  librdkafka's default ``retry.backoff.ms`` (100): each ``send_offsets`` right after a commit
  meets ``CONCURRENT_TRANSACTIONS`` and waits out that back-off;
- streamml stream pipeline (``Worker``) at both guarantees: (a) stateless filter + columns;
  (b) that plus a per-card 10 s tumbling window with ``emit="update"`` (``count`` and ``max("t")``);
- streamml serve (``Scorer``, ``Single`` strategy, an ONNX logistic regression from a
  ``MemorySource``, as in tests/integration/test_serve_stream.py) in both modes, ``keep=("t",)``.

streamml runs with its product defaults (batching, linger, poll waits); only names are set.

Each system is measured at a fixed 500 events/s and at 50 % of its own peak, the peak being
one quick burst (as fast as the generator goes) timed until the output of its last record is
read (``--high-rate R`` uses a fixed rate instead). Warm-up is excluded from the figures.

Every streamml row is also given as p50 and p99 ratios to its raw confluent-kafka baseline of the
same run and kind of rate: at-least-once to the raw at-least-once pass-through, exactly-once to
the raw exactly-once one with ``retry.backoff.ms=2`` (the back-off streamml's transactional
producers use). Figures are reported, never asserted.

Run: ``python -m benchmarks.bench_latency [--seconds S] [--warmup S] [--only raw,stream,serve]``
(also part of ``python -m benchmarks`` and ``make bench``); results in
``benchmarks/results/bench_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from rich.markup import escape
from rich.table import Table

from benchmarks.common import RESULTS, bench_broker, console, new_topic
from streamml.config import Settings
from streamml.kafka import clients

LOW_RATE = 500.0
WINDOW = "10s"
RAW_ALOS = "raw pass-through"
RAW_EOS = "raw pass-through (retry.backoff.ms=2)"
# the raw baseline of each streamml guarantee: the same hop with confluent-kafka alone (exactly-once:
# the same transactional back-off, 2 ms, that streamml's transactional producers use)
BASELINE = {"at-least-once": (RAW_ALOS, "at-least-once"), "exactly-once": (RAW_EOS, "exactly-once")}


def _now_us() -> int:
    return time.time_ns() // 1000


# --- the systems under test, each the body of a child process ------------------------------

def _settings(conf: dict[str, Any]) -> Settings:
    return Settings.load(config_file=None).with_(bootstrap_servers=conf["bootstrap"], namespace=conf["namespace"],
                                                 home=Path(conf["home"]))


def _drain(c: Any, first: Any, limit: int = 10_000) -> list[Any]:
    """The record ``poll`` returned plus whatever else has arrived already (no waiting)."""
    msgs = [first] + (c.consume(limit, timeout=0) if limit > 1 else [])
    return [m for m in msgs if m.error() is None]


def _raw_alos(conf: dict[str, Any], stop: Any) -> dict[str, Any]:
    s = _settings(conf)
    c = clients.consumer(s, conf["group"])
    c.assign([TopicPartition(conf["src"], 0, OFFSET_BEGINNING)])
    p = clients.producer(s, linger_ms=0)
    n = 0
    while not stop.is_set():
        m = c.poll(0.1)
        if m is None:
            p.poll(0)
            continue
        msgs = _drain(c, m)
        for x in msgs:
            while True:
                try:
                    p.produce(conf["dst"], x.value(), x.key())
                    break
                except BufferError:
                    p.poll(0.01)
        p.poll(0)
        if msgs:
            last = msgs[-1]
            c.commit(offsets=[TopicPartition(last.topic(), last.partition(), last.offset() + 1)], asynchronous=True)
            n += len(msgs)
    p.flush(30)
    c.close()
    return {"in": n}


def _raw_eos(conf: dict[str, Any], stop: Any) -> dict[str, Any]:
    s = _settings(conf)
    c = clients.consumer(s, conf["group"])
    c.assign([TopicPartition(conf["src"], 0, OFFSET_BEGINNING)])
    # clients.producer gives transactional producers retry.backoff.ms=2 unless told otherwise: the
    # librdkafka-default case passes librdkafka's defaults (100 ms, growing to 1000 ms) explicitly
    backoff = {k: conf[k] for k in ("retry_backoff_ms", "retry_backoff_max_ms") if k in conf}
    p = clients.producer(s, transactional_id=f"{conf['group']}.tx", linger_ms=0, **backoff)
    p.init_transactions(30)
    n = txns = 0
    while not stop.is_set():
        m = c.poll(0.1)
        if m is None:
            continue
        msgs = _drain(c, m)
        if not msgs:
            continue
        p.begin_transaction()
        for x in msgs:
            p.produce(conf["dst"], x.value(), x.key())
        last = msgs[-1]
        p.send_offsets_to_transaction([TopicPartition(last.topic(), last.partition(), last.offset() + 1)],
                                      c.consumer_group_metadata())
        p.commit_transaction()
        n += len(msgs)
        txns += 1
    c.close()
    return {"in": n, "transactions": txns}


def _stream(conf: dict[str, Any], stop: Any) -> dict[str, Any]:
    import polars as pl

    from streamml.runtime import LoopOptions
    from streamml.stream import Worker, count, stream, tumbling
    from streamml.stream import max as smax

    p = (stream(conf["src"]).filter(pl.col("amount") > 0)
         .with_columns(cents=(pl.col("amount") * 100).round().cast(pl.Int64), big=pl.col("amount") > 100))
    if conf["windowed"]:
        p = p.window(key="card_id", size=tumbling(WINDOW), time="event_time", emit="update").agg(
            n=count(), t=smax("t"))
    p = p.to(conf["dst"]).named(conf["group"])
    opts = LoopOptions(guarantee="exactly-once" if conf["eos"] else "at-least-once", instance=uuid.uuid4().hex[:8])
    w = Worker(p, _settings(conf), opts)
    threading.Thread(target=lambda: (stop.wait(), w.stop()), daemon=True).start()
    return {"guarantee": opts.guarantee, **w.run()}


def _serve(conf: dict[str, Any], stop: Any) -> dict[str, Any]:
    from streamml.serve import MemorySource, Role, Scorer, ServeOptions, Single
    from streamml.serve.testing import onnx_candidate

    mode = "exactly-once" if conf["eos"] else "at-least-once"
    source = MemorySource()
    source.publish(onnx_candidate("lat", 1, conf["model"]))
    scorer = Scorer(_settings(conf), Single([Role("lat")]), source,
                    ServeOptions(conf["src"], output_topic=conf["dst"], mode=mode, group=conf["group"],
                                 instance=uuid.uuid4().hex[:8], keep=("t",)))
    threading.Thread(target=lambda: (stop.wait(), scorer.stop_event.set()), daemon=True).start()
    stats = scorer.run()
    return {"mode": mode, **stats.as_dict()}


_BODIES = {"raw_alos": _raw_alos, "raw_eos": _raw_eos, "stream": _stream, "serve": _serve}


def _child(kind: str, conf: dict[str, Any], stop: Any, out: Any) -> None:
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    try:
        out.put(("stats", _BODIES[kind](conf, stop)))
    except BaseException as exc:  # reported by the parent, which goes on with the next system
        out.put(("error", f"{exc!r}\n{traceback.format_exc()[-1500:]}"))


# --- load and measurement, in the parent process -------------------------------------------

class Reader:
    """Reads an output topic from the start (read_committed) and records (sent µs, seen µs)."""

    def __init__(self, s: Settings, topic: str) -> None:
        self.c = clients.consumer(s, f"lat-reader-{uuid.uuid4().hex[:8]}", fetch_wait_max_ms=5)
        self.c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.sent: list[int] = []
        self.seen: list[int] = []
        self.max_t = 0
        self.max_t_seen_at = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lat-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        c, loads = self.c, orjson.loads
        while not self.stop.is_set():
            m = c.poll(0.05)
            if m is None:
                continue
            msgs = [m] + c.consume(10_000, timeout=0)
            now = _now_us()
            ts = []
            for x in msgs:
                if x.error() is None and x.value():
                    try:
                        ts.append(int(loads(x.value())["t"]))
                    except (KeyError, ValueError, TypeError):
                        pass
            if ts:
                self.sent.extend(ts)
                self.seen.extend([now] * len(ts))
                top = max(ts)
                if top > self.max_t:
                    self.max_t, self.max_t_seen_at = top, now
        self.c.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def wait_for(self, t_us: int, timeout: float) -> bool:
        """Until the output of the input sent at ``t_us`` (or later) has been read."""
        deadline = time.monotonic() + timeout
        while self.max_t < t_us and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.max_t >= t_us

    def quiet(self, idle: float = 0.5, timeout: float = 30.0) -> None:
        """Until nothing new arrived for ``idle`` seconds."""
        deadline = time.monotonic() + timeout
        n = -1
        while time.monotonic() < deadline:
            if len(self.sent) == n:
                return
            n = len(self.sent)
            time.sleep(idle)

    def latencies_ms(self, t0: int, t1: int) -> np.ndarray:
        k = len(self.sent)
        sent = np.fromiter(self.sent[:k], dtype=np.int64, count=k)
        seen = np.fromiter(self.seen[:k], dtype=np.int64, count=k)
        sel = (sent >= t0) & (sent < t1)
        return (seen[sel] - sent[sel]) / 1000.0


class Generator:
    """Produces feature events (pre-serialised templates with id, event_time and ``t`` spliced in)."""

    def __init__(self, s: Settings) -> None:
        from streamml.serve.testing import fraud_frame

        rows = fraud_frame(5000, seed=9).drop("is_fraud").to_dicts()
        self.templates = [(r["card_id"].encode(),
                           orjson.dumps({k: v for k, v in r.items() if k not in ("event_id", "event_time")})[1:])
                          for r in rows]
        self.p = clients.producer(s, linger_ms=0)
        self.i = 0

    def produce(self, topic: str, rate: float | None, seconds: float = 0.0, count: int = 0) -> tuple[int, int, int]:
        """At ``rate``/s for ``seconds`` (or ``count`` as fast as it goes when ``rate`` is None).
        Returns (events, first t, last t)."""
        p, tpl, nt = self.p, self.templates, len(self.templates)
        t0 = time.perf_counter()
        n, first, last = 0, 0, 0
        while True:
            elapsed = time.perf_counter() - t0
            if rate is None:
                if n >= count:
                    break
                due = min(n + 1000, count)
            else:
                if elapsed >= seconds:
                    break
                due = int(elapsed * rate) + 1
            while n < due:
                key, rest = tpl[self.i % nt]
                now = time.time_ns()
                t = now // 1000
                v = b'{"event_id":"L%d","event_time":%d,"t":%d,%s' % (self.i, now // 1_000_000, t, rest)
                try:
                    p.produce(topic, v, key)
                except BufferError:
                    p.poll(0.005)
                    continue
                if not first:
                    first = t
                last = t
                n += 1
                self.i += 1
            p.poll(0)
            if rate is not None:
                time.sleep(0.0005)
        p.poll(0)
        return n, first, last

    def close(self) -> None:
        self.p.flush(30)


@dataclass
class Case:
    system: str
    guarantee: str
    kind: str | None                      # child body, None = no hop
    conf: dict[str, Any] = field(default_factory=dict)
    group: str = ""                       # raw / stream / serve (for --only)
    high: bool = True                     # also measured at the high rate


@dataclass
class Row:
    system: str
    guarantee: str
    rate_label: str
    target_rate: float
    achieved_rate: float
    sent: int
    received: int
    p50: float
    p99: float
    p999: float
    max: float
    peak: float | None = None
    high: bool = False                    # the row of the high rate (50 % of peak, or --high-rate)
    baseline: str = ""                    # the raw row the ratios divide by (same run, same kind of rate)
    p50_ratio: float | None = None
    p99_ratio: float | None = None

    def as_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else round(float(v), 3)  # noqa: E731
        return {"system": self.system, "guarantee": self.guarantee, "rate": self.rate_label,
                "target_rate": r(self.target_rate), "achieved_rate": r(self.achieved_rate), "sent": self.sent,
                "received": self.received, "p50_ms": r(self.p50), "p99_ms": r(self.p99), "p999_ms": r(self.p999),
                "max_ms": r(self.max), "peak_per_s": r(self.peak), "baseline": self.baseline or None,
                "p50_over_baseline": r(self.p50_ratio), "p99_over_baseline": r(self.p99_ratio)}


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def measure_case(s: Settings, gen: Generator, case: Case, ctx: Any, *, seconds: float, warmup: float,
                 high_rate: float | None, model: bytes) -> tuple[list[Row], dict[str, Any]]:
    # dotted names are taken as they are (a bare name would become <ns>.raw.<name> for the stream worker)
    src = new_topic(s, "lat.in")
    dst = new_topic(s, "lat.out") if case.kind else src
    reader = Reader(s, dst)
    info: dict[str, Any] = {"system": case.system, "guarantee": case.guarantee}
    proc, stop, out = None, ctx.Event(), ctx.Queue()
    rows: list[Row] = []
    try:
        if case.kind:
            conf = {"bootstrap": s.bootstrap_servers, "namespace": s.namespace, "home": str(s.home),
                    "src": src, "dst": dst, "group": f"lat-{uuid.uuid4().hex[:8]}", "model": model, **case.conf}
            proc = ctx.Process(target=_child, args=(case.kind, conf, stop, out), daemon=True)
            proc.start()
        t_ready = time.monotonic()
        ok = False
        while time.monotonic() - t_ready < 120:  # probes until the system answers
            _, _, last = gen.produce(src, 20, 0.25)
            if reader.wait_for(last, 0.25):
                ok = True
                break
            if proc is not None and not proc.is_alive():
                break
        info["ready_s"] = round(time.monotonic() - t_ready, 2)
        if not ok:
            raise RuntimeError(f"no output within {info['ready_s']} s" + _child_error(out))
        reader.quiet(0.3, 10)

        def phase(label: str, rate: float, high: bool) -> None:
            gen.produce(src, rate, warmup)
            t0 = _now_us()
            n, _, last = gen.produce(src, rate, seconds)
            t1 = _now_us()
            reader.wait_for(last, 10)
            time.sleep(0.2)
            lat = reader.latencies_ms(t0, t1)
            rows.append(Row(case.system, case.guarantee, label, rate, n / ((t1 - t0) / 1e6), n, len(lat),
                            _pct(lat, 50), _pct(lat, 99), _pct(lat, 99.9),
                            float(lat.max()) if len(lat) else float("nan"), peak=info.get("peak_per_s"),
                            high=high))
            reader.quiet(0.3, 15)

        phase(f"{LOW_RATE:.0f}/s", LOW_RATE, False)  # first: before any burst has loaded the broker
        if not case.high:
            return rows, info
        if high_rate:
            high, info["high_rate"] = high_rate, "fixed"
        else:  # the peak: a burst as fast as the generator goes, until its last output is read
            est = _burst(gen, reader, src, 5000)
            n_burst = int(min(max(est * 3, 5000), 150_000))
            peak = _burst(gen, reader, src, n_burst)
            info.update(peak_per_s=round(peak, 1), burst=n_burst, high_rate="50% of peak")
            high = 0.5 * peak
        phase(f"{high:,.0f}/s fixed" if high_rate else f"50% peak {high:,.0f}/s", high, True)
    except Exception as exc:
        info["error"] = f"{exc}"
        console.print(f"[red]{escape(f'{case.system} {case.guarantee}: {exc}')}[/red]")
    finally:
        stop.set()
        if proc is not None:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
                info["killed"] = True
            try:
                kind, payload = out.get(timeout=2)
                info["child_" + kind] = payload
            except queue.Empty:
                pass
        reader.close()
    return rows, info


def _child_error(out: Any) -> str:
    try:
        kind, payload = out.get_nowait()
        return f" ({kind}: {payload})"
    except queue.Empty:
        return ""


def _burst(gen: Generator, reader: Reader, src: str, n: int, timeout: float = 30.0) -> float:
    start = _now_us()
    _, first, last = gen.produce(src, None, count=n)
    done = reader.wait_for(last, timeout)
    if done:
        per_s = n / max((reader.max_t_seen_at - start) / 1e6, 1e-6)
    else:  # a share of the burst went through: the newest t read tells how much
        share = max(0.0, (reader.max_t - first) / max(last - first, 1))
        per_s = share * n / timeout
    reader.quiet(0.5, 60)
    return per_s


def cases(only: set[str]) -> list[Case]:
    all_cases = [
        Case("raw produce -> consume (no hop)", "-", None, group="raw"),
        Case(RAW_ALOS, "at-least-once", "raw_alos", group="raw"),
        Case(RAW_EOS, "exactly-once", "raw_eos", {"retry_backoff_ms": 2}, group="raw"),
        Case("raw pass-through (retry.backoff.ms default)", "exactly-once", "raw_eos",
             {"retry_backoff_ms": 100, "retry_backoff_max_ms": 1000}, group="raw"),
        Case("streamml stream (a) stateless", "at-least-once", "stream", {"eos": False, "windowed": False},
             group="stream"),
        Case("streamml stream (a) stateless", "exactly-once", "stream", {"eos": True, "windowed": False},
             group="stream"),
        Case("streamml stream (b) window", "at-least-once", "stream", {"eos": False, "windowed": True},
             group="stream"),
        Case("streamml stream (b) window", "exactly-once", "stream", {"eos": True, "windowed": True},
             group="stream"),
        Case("streamml serve", "at-least-once", "serve", {"eos": False}, group="serve"),
        Case("streamml serve", "exactly-once", "serve", {"eos": True}, group="serve"),
    ]
    return [c for c in all_cases if not only or c.group in only or c.group == "raw"]


def _ratios(rows: list[Row]) -> None:
    """Each streamml row's p50 and p99 over those of its raw baseline (same run, same kind of rate)."""
    base = {(r.system, r.guarantee, r.high): r for r in rows}
    for r in rows:
        if not r.system.startswith("streamml") or r.guarantee not in BASELINE:
            continue
        b = base.get((*BASELINE[r.guarantee], r.high))
        if b is None:
            continue
        r.baseline = f"{b.system} [{b.guarantee}] {b.rate_label}"
        ok = lambda v: v and not np.isnan(v)  # noqa: E731
        r.p50_ratio = r.p50 / b.p50 if ok(b.p50) and ok(r.p50) else None
        r.p99_ratio = r.p99 / b.p99 if ok(b.p99) and ok(r.p99) else None


def run(seconds: float, warmup: float, high_rate: float | None, only: set[str]) -> Path:
    from streamml.serve.testing import train_fraud_onnx

    ctx = mp.get_context("spawn")
    model = train_fraud_onnx(seed=1) if not only or "serve" in only else b""
    rows: list[Row] = []
    infos: list[dict[str, Any]] = []
    t_start = time.monotonic()
    with bench_broker() as s:
        gen = Generator(s)
        try:
            # a fresh broker's JVM is slow for its first seconds (p99 of hundreds of ms): warm its produce,
            # fetch and transaction paths with a short exactly-once pass-through whose figures are dropped
            t0 = time.monotonic()
            _, winfo = measure_case(s, gen, Case("broker warm-up", "exactly-once", "raw_eos", {"retry_backoff_ms": 2}),
                                    ctx, seconds=4, warmup=2, high_rate=5000, model=model)
            console.print(f"broker warmed up in {time.monotonic() - t0:.0f} s {winfo.get('error', '')}")
            for case in cases(only):
                t0 = time.monotonic()
                r, info = measure_case(s, gen, case, ctx, seconds=seconds, warmup=warmup, high_rate=high_rate,
                                       model=model)
                info["wall_s"] = round(time.monotonic() - t0, 1)
                rows += r
                infos.append(info)
                for x in r:
                    console.print(escape(f"  {x.system} [{x.guarantee}] {x.rate_label}: p50 {x.p50:.2f} ms, "
                                         f"p99 {x.p99:.2f} ms ({x.received:,} outputs, {x.achieved_rate:,.0f}/s sent)"))
        finally:
            gen.close()
    _ratios(rows)
    notes = [
        "latency = read by a read_committed consumer minus produced by the generator, one wall clock (same host);",
        f"{seconds:.0f} s per rate after {warmup:.0f} s warm-up; 1 partition; ~200 B JSON fraud-feature events;",
        "high rate: " + (f"fixed {high_rate:,.0f}/s" if high_rate else
                         "50% of each system's own peak (one burst as fast as the generator goes, timed until "
                         "the output of its last record was read)"),
        "ratios: a streamml row's p50 (p99) over the p50 (p99) of its raw baseline in this run at the same kind "
        f"of rate: at-least-once over '{RAW_ALOS}', exactly-once over '{RAW_EOS}' (streamml's transactional "
        "producers back off 2 ms too)" + ("; at the high rate each system ran at 50% of its own peak, so the raw "
                                           "baseline ran at its own rate" if not high_rate else "") + ";",
        "raw pass-throughs: linger.ms=0, first record by poll(), the rest by consume(n, 0); exactly-once: "
        "one transaction per such batch with send_offsets_to_transaction;",
        "streamml: product defaults (linger, batching, poll waits); (b) window emits updates, so its figures "
        "are per emitted update, measured from the newest input in it (max t);",
        "generator, reader and broker share the machine with the system under test "
        f"({os.cpu_count()} CPUs).",
    ]
    table = Table(title=f"end-to-end latency, 1 partition ({seconds:.0f} s per rate)")
    for col in ("system", "guarantee", "rate", "sent/s", "outputs", "p50 ms", "p99 ms", "p50 / raw", "p99 / raw"):
        table.add_column(col, justify="left" if col in ("system", "guarantee", "rate") else "right")
    x = lambda v: f"{v:.2f}x" if v is not None else "-"  # noqa: E731
    for r in rows:
        table.add_row(r.system, r.guarantee, r.rate_label, f"{r.achieved_rate:,.0f}", f"{r.received:,}",
                      f"{r.p50:.2f}", f"{r.p99:.2f}", x(r.p50_ratio), x(r.p99_ratio))
    console.print(table)
    for i in infos:
        if "error" in i or "child_error" in i:
            console.print("[red]" + escape(f"{i['system']} [{i['guarantee']}] failed: {i.get('error', '')} "
                                           f"{i.get('child_error', '')}") + "[/red]")
    for n in notes:
        console.print(f"[dim]{escape(n)}[/dim]")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "bench_latency.json"
    path.write_text(json.dumps({
        "benchmark": "bench_latency", "title": "end-to-end latency p50/p99 vs the raw client",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"seconds": seconds, "warmup": warmup, "low_rate": LOW_RATE,
                     "high_rate": high_rate or "50% of peak"},
        "rows": [r.as_dict() for r in rows], "systems": infos, "notes": notes,
        "wall_s": round(time.monotonic() - t_start, 1),
    }, indent=2, default=str))
    console.print(f"results written to {path} ({time.monotonic() - t_start:.0f} s)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per system and rate")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds at each rate before measuring")
    ap.add_argument("--high-rate", type=float, default=None,
                    help="a fixed high rate (events/s) instead of 50%% of each system's measured peak")
    ap.add_argument("--only", default="", help="comma list of raw,stream,serve (the raw rows always run)")
    a = ap.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    run(a.seconds, a.warmup, a.high_rate, {x for x in a.only.split(",") if x})


if __name__ == "__main__":
    main()
