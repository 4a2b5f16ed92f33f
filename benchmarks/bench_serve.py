"""Scoring in the stream: throughput vs the raw pass-through, latency at half the peak rate,
latency during model swaps, and the same job in Quix Streams scoring record by record.

1. Throughput: the fraud features (6 float features + ids, ~230 B JSON) scored by an ONNX
   logistic regression, one ONNX Runtime call per micro-batch, predictions written with
   lineage headers — exactly-once and at-least-once — against the raw confluent-kafka
   consume→produce pass-through of the same records in the same run.
2. Quix Streams: the same model in a Quix ``Application`` that scores each record with its
   own ``InferenceSession.run`` call (the usual way to call a model from a per-record
   stream API).
3. Latency: ``streamml serve`` (a separate process, exactly-once, models from the registry)
   fed at 50 % of the peak rate measured in step 1; latency is event produced → prediction
   readable by a read_committed consumer. Then the same load while a new version is
   promoted every 2 s: p99 during swaps against the steady-state p99.

Run: ``python -m benchmarks.bench_serve [--events N] [--quix-events N]``
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.common import Measurement, Report, bench_broker, console, measure, new_topic, raw_passthrough
from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.serve import MemorySource, Role, Scorer, ServeOptions, Single
from streamml.serve.testing import (
    FRAUD_FEATURES,
    fraud_events,
    fraud_frame,
    onnx_candidate,
    produce_events,
    train_fraud_onnx,
)


def serve_throughput(s: Settings, src: str, n: int, data: bytes | None, *, eos: bool, headers: bool = True,
                     source: Any = None, out: str | None = None) -> Measurement:
    """The Scorer over ``src`` until ``n`` are scored: the ONNX ``data`` from memory, or ``source``
    (e.g. a ``RegistrySource``) when given; predictions to ``out`` (default: a new topic)."""
    if source is None:
        assert data is not None
        source = MemorySource()
        source.publish(onnx_candidate("fraud", 1, data))
    out = out or new_topic(s, "serve-out", 1)
    scorer = Scorer(s, Single([Role("fraud")]), source,
                    ServeOptions(src, output_topic=out, mode="exactly-once" if eos else "at-least-once",
                                 group=f"bench-{uuid.uuid4().hex[:8]}", batch_size=10_000,
                                 instance=uuid.uuid4().hex[:6], lineage_headers=headers))
    scorer.start()  # topics, model load and group join are not part of the measured time

    def go() -> int:
        deadline = time.monotonic() + 300
        while scorer.stats.scored < n and time.monotonic() < deadline:
            scorer.step()
        if not eos:
            scorer.producer.flush(60)  # every prediction acknowledged, as the raw baseline's final flush
        return scorer.stats.scored

    name = f"streamml serve ONNX ({'EOS' if eos else 'ALOS'}{'' if headers else ', no lineage headers'})"
    m = measure(name, go)
    scorer.close()
    return m


def quix_throughput(s: Settings, src: str, n: int, data: bytes, *, eos: bool) -> Measurement:
    import onnxruntime as ort
    from quixstreams import Application

    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    cols = list(FRAUD_FEATURES)
    app = Application(broker_address=s.bootstrap_servers, consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="quix-serve-"),
                      loglevel="WARNING", processing_guarantee="exactly-once" if eos else "at-least-once")
    topic = app.topic(src, value_deserializer="json")
    out = app.topic(f"quix-pred-{uuid.uuid4().hex[:8]}", value_serializer="json")
    seen = {"n": 0}

    def score(v: dict[str, Any]) -> dict[str, Any]:
        x = np.array([[v[c] for c in cols]], dtype=np.float32)
        label, probs = sess.run(["label", "probabilities"], {in_name: x})
        seen["n"] += 1
        if seen["n"] >= n:
            app.stop()
        return {"event_id": v["event_id"], "model": "fraud", "model_version": 1, "score": float(probs[0, 1]),
                "label": int(label[0])}

    sdf = app.dataframe(topic).apply(score)
    sdf.to_topic(out)

    def run() -> int:
        app.run()
        return seen["n"]

    return measure(f"Quix Streams per-record ONNX ({'EOS' if eos else 'ALOS'})", run)


# --- latency ------------------------------------------------------------------------------

class Load:
    """Produces feature events at a rate with ``event_time`` = the moment of ``produce()``, and
    reads the predictions back (read_committed), recording ``(produced at, latency ms)``.

    Payloads are pre-serialised templates with the id and time spliced in, so the generator
    costs well under a microsecond per event and leaves the CPU to the system under test.
    """

    def __init__(self, s: Settings, topic: str, out: str, rows: list[dict[str, Any]]) -> None:
        self.s, self.topic, self.out = s, topic, out
        self.templates = [(r["card_id"].encode(), orjson.dumps({k: v for k, v in r.items()
                                                                if k not in ("event_id", "event_time")})[1:])
                          for r in rows]
        self.lat: list[tuple[float, float]] = []
        self.received = 0
        self.stop = threading.Event()
        self.reader_ready = threading.Event()
        self.producer = clients.producer(s, linger_ms=2)

    def produce(self, rate: float | None, seconds: float, start_index: int, count: int | None = None) -> int:
        """At ``rate``/s for ``seconds`` (or ``count`` events as fast as possible when rate is None)."""
        p, topic, tpl = self.producer, self.topic, self.templates
        t0 = time.perf_counter()
        i = 0
        while True:
            elapsed = time.perf_counter() - t0
            if rate is None:
                if i >= (count or 0):
                    break
                due = min(i + 1000, count or 0)
            else:
                if elapsed >= seconds:
                    break
                due = int(elapsed * rate)
            while i < due:
                key, rest = tpl[(start_index + i) % len(tpl)]
                v = b'{"event_id":"L%d","event_time":%d,%s' % (start_index + i, int(time.time() * 1000), rest)
                try:
                    p.produce(topic, v, key)
                except BufferError:
                    p.poll(0.01)
                    continue
                i += 1
            p.poll(0)
            if rate is not None:
                time.sleep(0.002)
        p.flush(60)
        return i

    def read(self) -> None:
        c = clients.consumer(self.s, f"lat-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest",
                             fetch_wait_max_ms=5)
        c.subscribe([self.out])
        while not self.stop.is_set():
            msgs = c.consume(5000, timeout=0.05)
            if not self.reader_ready.is_set() and c.assignment():
                self.reader_ready.set()
            now = time.time() * 1000
            for m in msgs:
                if m.error() is None:
                    et = orjson.loads(m.value())["event_time"]
                    self.lat.append((et, now - et))
            self.received += len(msgs)
        c.close()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def latency(s: Settings, peak: float, phase_s: float, artifacts: list[Any]) -> dict[str, Any]:
    from streamml.registry import Registry

    reg = Registry(s)
    reg.publish(artifact=artifacts[0], name="fraud", stage="production")
    topic = s.topic("features", "lat")
    ensure_topic(s, topic, 1)
    out = s.topic("predictions", "fraud")
    ensure_topic(s, out, 1)
    env = {**os.environ, "STREAMML_HOME": str(s.home)}
    log = open(Path(tempfile.gettempdir()) / f"bench-serve-{uuid.uuid4().hex[:6]}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamml", "--bootstrap-servers", s.bootstrap_servers,
                             "--namespace", s.namespace, "serve", "--model", "fraud", "--input", topic,
                             "--instance", "bench", "--batch-size", "5000"], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    rows = fraud_frame(20_000, seed=9).drop("is_fraud").to_dicts()
    load = Load(s, topic, out, rows)
    reader = threading.Thread(target=load.read, daemon=True)
    reader.start()
    load.reader_ready.wait(30)
    try:
        ready = time.monotonic() + 90
        while not load.lat and time.monotonic() < ready:  # until the scorer answers a probe
            load.produce(20, 0.25, 0)
        # the peak of this very setup (scorer process + generator + reader + broker on one machine):
        # a burst as fast as the generator goes, timed until its last prediction is read
        burst = int(min(max(peak, 10_000) * 3, 300_000))
        before, t0 = load.received, time.monotonic()
        load.produce(None, 0, 100_000, count=burst)
        while load.received - before < burst and time.monotonic() - t0 < 120:
            time.sleep(0.01)
        e2e_peak = (load.received - before) / (time.monotonic() - t0)
        rate = 0.5 * min(peak, e2e_peak)
        load.produce(rate, 3.0, 1_000_000)  # warm-up at the target rate
        t_steady = time.time() * 1000
        sent = load.produce(rate, phase_s, 2_000_000)
        t_swap = time.time() * 1000
        swaps: list[float] = []

        def swapper() -> None:
            for art in artifacts[1:]:
                time.sleep(phase_s / len(artifacts))
                swaps.append(time.time() * 1000)
                reg.publish(artifact=art, name="fraud", stage="production")

        th = threading.Thread(target=swapper, daemon=True)
        th.start()
        sent += load.produce(rate, phase_s, 3_000_000)
        th.join(30)
        t_end = time.time() * 1000
        time.sleep(2.0)
    finally:
        load.stop.set()
        reader.join(10)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    steady = [lat for t, lat in load.lat if t_steady <= t < t_swap]
    during = [lat for t, lat in load.lat if t_swap <= t < t_end]
    near = [lat for t, lat in load.lat if any(w - 200 <= t < w + 1500 for w in swaps)]
    return {"in_process_peak": peak, "e2e_peak": e2e_peak, "rate": rate, "sent": sent,
            "received": len(steady) + len(during), "swaps": len(swaps),
            "steady_p50": pct(steady, 50), "steady_p99": pct(steady, 99),
            "swap_p50": pct(during, 50), "swap_p99": pct(during, 99), "near_swap_p99": pct(near, 99),
            "steady_n": len(steady), "swap_n": len(during), "near_n": len(near)}


def median(ms: list[Measurement]) -> Measurement:
    """The run with the median rate, its name marked with the spread of all runs."""
    ordered = sorted(ms, key=lambda m: m.per_s)
    m = ordered[len(ordered) // 2]
    m.extra["runs_per_s"] = [round(x.per_s) for x in ms]
    return m


def run(n: int, quix_n: int, phase_s: float, skip_quix: bool, repeats: int = 3) -> None:
    report = Report("bench_serve", f"scoring fraud features with ONNX ({n:,} events; Quix {quix_n:,})")
    with bench_broker() as s:
        events = fraud_events(n, seed=1)
        src = new_topic(s, "serve-feat", 1)
        produce_events(s, src, events)
        nbytes = sum(len(v) for _, v in events)
        data = train_fraud_onnx(seed=1)
        runs: dict[str, list[Measurement]] = {}
        for _ in range(repeats):  # interleaved, so a busy moment on the machine hits every kind alike
            for eos in (False, True):
                runs.setdefault(f"raw{eos}", []).append(raw_passthrough(s, src, n, eos=eos))
            for eos, headers in ((False, True), (True, True), (True, False)):
                m = serve_throughput(s, src, n, data, eos=eos, headers=headers)
                m.bytes = nbytes
                runs.setdefault(f"serve{eos}{headers}", []).append(m)
        med = {k: median(v) for k, v in runs.items()}
        base = {eos: med[f"raw{eos}"] for eos in (False, True)}
        for eos in (False, True):
            report.add(base[eos], group="throughput")
        for key, eos in (("serveFalseTrue", False), ("serveTrueTrue", True), ("serveTrueFalse", True)):
            report.add(med[key], base[eos], group="throughput")
        peak = med["serveTrueTrue"].per_s
        if not skip_quix:
            for eos in (False, True):
                q = quix_throughput(s, src, quix_n, data, eos=eos)
                report.add(q, base[eos], group="Quix Streams")

        from sklearn.linear_model import LogisticRegression

        from streamml.registry.formats import export_model

        df = fraud_frame(3000, seed=2)
        x, y = df.select(FRAUD_FEATURES).to_numpy().astype(np.float32), df["is_fraud"].to_numpy()
        arts = [export_model(LogisticRegression(C=1.0 + i / 10, max_iter=500).fit(x, y), list(FRAUD_FEATURES))
                for i in range(5)]
        lat = latency(s, peak, phase_s, arts)
    ratio = lat["swap_p99"] / lat["steady_p99"] if lat["steady_p99"] else float("nan")
    near_ratio = lat["near_swap_p99"] / lat["steady_p99"] if lat["steady_p99"] else float("nan")
    lat.update({"swap_p99_over_steady": round(ratio, 3), "near_swap_p99_over_steady": round(near_ratio, 3)})
    report.note(f"peak: serve EOS alone {peak:,.0f}/s, end to end with generator and reader {lat['e2e_peak']:,.0f}/s; "
                f"latency load {lat['rate']:,.0f}/s (50 % of the lower), "
                f"{lat['sent']:,} sent, {lat['received']:,} predictions read, {lat['swaps']} swaps")
    report.note("throughput rows: the median of " + str(repeats) + " interleaved runs (all rates in the JSON)")
    report.note(f"end-to-end latency steady: p50 {lat['steady_p50']:.1f} ms, p99 {lat['steady_p99']:.1f} ms "
                f"({lat['steady_n']:,} events)")
    report.note(f"during swaps: p50 {lat['swap_p50']:.1f} ms, p99 {lat['swap_p99']:.1f} ms ({ratio:.2f}x steady); "
                f"within 1.5 s after a swap p99 {lat['near_swap_p99']:.1f} ms ({near_ratio:.2f}x)")
    path = report.show()
    import json

    doc = json.loads(path.read_text())
    doc["latency"] = {k: (round(float(v), 3) if isinstance(v, float) else v) for k, v in lat.items()}
    path.write_text(json.dumps(doc, indent=2))
    console.print(doc["latency"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--quix-events", type=int, default=50_000)
    ap.add_argument("--phase-seconds", type=float, default=8.0)
    ap.add_argument("--skip-quix", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="Throughput runs per kind (the median is reported).")
    a = ap.parse_args()
    run(a.events, a.quix_events, a.phase_seconds, a.skip_quix, a.repeat)


if __name__ == "__main__":
    main()
