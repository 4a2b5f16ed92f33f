"""Scoring on Spark beside ``streamml serve`` and the raw pass-through, on one broker in one run.

The same input topic (``--events`` fraud feature records, ~200 B JSON, ``--partitions``
partitions, keyed by card) and the same ONNX logistic regression, published to the models
topic, are run through:

1. the raw confluent-kafka consume→produce pass-through, at-least-once and exactly-once (the
   ceiling on this machine; no processing);
2. ``streamml serve`` (the :class:`~streamml.serve.Scorer` with a ``RegistrySource``, the model
   from the models topic), at-least-once and exactly-once, each against the raw loop of its
   guarantee; topics, model load and group join are outside the timed part, as in bench_serve;
3. the Spark Structured Streaming scorer of :mod:`streamml.spark` (``local[2]`` by default,
   processing-time trigger, predictions through Spark's Kafka sink, at least once) with the
   model followed on the models topic inside the executors' Python workers. A read_committed
   reader in this process follows the predictions topic; three figures of one run:
   session start (JVM) → last prediction read, query start → last prediction read, and first →
   last prediction read (the steady part, without Python worker start and model load).
4. Flink: not built (PyFlink pins older numpy/pandas/pyarrow; see docs/flink-bridge.md).

Every output is checked afterwards by a read_committed consumer: each input ``event_id`` must
be there at least once; duplicates (expected only from an at-least-once retry) are reported.
CPU-s/M counts this process for raw and serve; for Spark it counts this process and all its
descendants (the JVM and its Python workers; the broker is not included in any row).

Run: ``python -m benchmarks.bench_spark [--events N] [--partitions P] [--master local[2]]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from benchmarks.bench_serve import median, serve_throughput
from benchmarks.common import Measurement, Report, bench_broker, console, new_topic, raw_passthrough
from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.serve.testing import FRAUD_FEATURES, fraud_events, fraud_frame, produce_events

FLINK_REASON = ("not built: PyFlink (apache-flink) pins older numpy, pandas and pyarrow than streamml's "
                "environment, so the bridge needs a venv of its own (docs/flink-bridge.md)")


def publish_model(s: Settings) -> int:
    """Train the fraud logistic regression, publish it as ONNX to the models topic (production)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from streamml.registry import Registry
    from streamml.registry.formats import export_model

    df = fraud_frame(4000, seed=1001)
    x, y = df.select(list(FRAUD_FEATURES)).to_numpy().astype(np.float32), df["is_fraud"].to_numpy()
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    art = export_model(est, list(FRAUD_FEATURES))
    return int(Registry(s).publish(artifact=art, name="fraud", stage="production").version)


def verify(s: Settings, topic: str, ids: set[str]) -> dict[str, int]:
    """Read ``topic`` to its end (read_committed): records, distinct input ids, missing, duplicates."""
    from streamml.kafka.read import pin, read_ranges

    records, seen = 0, set()
    for batch in read_ranges(s, pin(s, topic)):
        for m in batch:
            records += 1
            seen.add(orjson.loads(m.value() or b"{}").get("event_id"))
    found = seen & ids
    return {"records": records, "distinct": len(found), "missing": len(ids) - len(found),
            "duplicates": records - len(seen)}


def _tree_cpu() -> float:
    """CPU seconds of this process and every live descendant (falls back to this process alone)."""
    try:
        import psutil
    except ImportError:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class Follower:
    """Reads a predictions topic from the start (read_committed) while a query runs: the time of
    the first record and of the moment every expected id had been seen."""

    def __init__(self, s: Settings, topic: str, partitions: int, n: int) -> None:
        self.n = n
        self.c = clients.consumer(s, f"spark-follow-{uuid.uuid4().hex[:8]}")
        self.c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.seen: set[str] = set()
        self.records = 0
        self.first: float | None = None
        self.first_cpu = 0.0
        self.done: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set() and len(self.seen) < self.n:
            msgs = [m for m in self.c.consume(10_000, timeout=0.2) if m.error() is None]
            if not msgs:
                continue
            if self.first is None:
                self.first, self.first_cpu = time.perf_counter(), _tree_cpu()
            self.records += len(msgs)
            self.seen.update(orjson.loads(m.value() or b"{}").get("event_id") for m in msgs)
            if len(self.seen) >= self.n:
                self.done = time.perf_counter()
        self.c.close()


def spark_throughput(s: Settings, src: str, partitions: int, n: int, *, master: str, trigger_s: float,
                     timeout: float) -> tuple[list[Measurement], str, float]:
    """One Spark scoring run; three measurements of it, the output topic, the session start seconds."""
    from streamml.spark import score_stream, session

    out = new_topic(s, "spark-out", partitions)  # created first, so the follower reads it from offset 0
    ensure_topic(s, s.topic("dlq"), 1)
    c0, t0 = _tree_cpu(), time.perf_counter()
    spark = session(s, master=master, app_name="streamml-bench-spark")
    t_session, c_session = time.perf_counter(), _tree_cpu()
    follower = Follower(s, out, partitions, n)
    follower.thread.start()
    try:
        with tempfile.TemporaryDirectory(prefix="streamml-bench-spark-") as ckpt:
            tq = time.perf_counter()
            q = score_stream(spark, s, "fraud", src, checkpoint=ckpt, output_topic=out, trigger_s=trigger_s)
            try:
                deadline = time.monotonic() + timeout
                while follower.done is None and time.monotonic() < deadline:
                    if not q.isActive:
                        raise RuntimeError(f"the Spark query stopped: {q.exception()}")
                    time.sleep(0.05)
                c_end = _tree_cpu()
            finally:
                q.stop()
    finally:
        follower.stop.set()
        follower.thread.join(10)
        spark.stop()
    if follower.done is None:
        raise RuntimeError(f"Spark scored {len(follower.seen):,} of {n:,} events in {timeout:.0f} s")
    first = follower.first or tq
    count = len(follower.seen)
    name = f"Spark Structured Streaming ONNX (ALOS, {master})"
    ms = [Measurement(f"{name}, session start → last prediction", count, follower.done - t0, c_end - c0),
          Measurement(f"{name}, query start → last prediction", count, follower.done - tq, c_end - c_session),
          Measurement(f"{name}, first → last prediction", count, follower.done - first,
                      c_end - (follower.first_cpu or c_session))]
    for m in ms:
        m.extra.update({"session_start_s": round(t_session - t0, 3), "first_prediction_after_query_start_s":
                        round(first - tq, 3), "records_read_while_running": follower.records})
    return ms, out, t_session - t0


def run(n: int, partitions: int, master: str, trigger_s: float, timeout: float, repeats: int) -> None:
    report = Report("bench_spark", f"Spark scoring beside streamml serve and the raw pass-through "
                                   f"({n:,} events, {partitions} partitions)")
    from streamml.serve.registry_source import RegistrySource

    with bench_broker() as s:
        events = fraud_events(n, seed=1)
        src = new_topic(s, "spark-feat", partitions)
        produce_events(s, src, events)
        nbytes = sum(len(v) for _, v in events)
        ids = {orjson.loads(v)["event_id"] for _, v in events}
        version = publish_model(s)
        checks: dict[str, dict[str, Any]] = {}

        def check(name: str, topic: str) -> None:
            c = verify(s, topic, ids)
            agg = checks.setdefault(name, {"runs": 0, "records": [], "missing": 0, "duplicates": 0})
            agg["runs"] += 1
            agg["records"].append(c["records"])
            agg["missing"] = max(agg["missing"], c["missing"])
            agg["duplicates"] += c["duplicates"]

        runs: dict[str, list[Measurement]] = {}
        for _ in range(repeats):  # interleaved, so a busy moment on the shared machine hits every kind alike
            for eos in (False, True):
                dst = new_topic(s, "raw-pass", 1)
                m = raw_passthrough(s, src, n, eos=eos, dst=dst, exclude_join=True)
                check(m.name, dst)
                runs.setdefault(f"raw{eos}", []).append(m)
            for eos in (False, True):
                out = new_topic(s, "serve-out", 1)
                m = serve_throughput(s, src, n, None, eos=eos, source=RegistrySource(s), out=out)
                m.bytes = nbytes
                check(m.name, out)
                runs.setdefault(f"serve{eos}", []).append(m)
        base = {eos: median(runs[f"raw{eos}"]) for eos in (False, True)}
        for eos in (False, True):
            report.add(base[eos], group="raw")
        for eos in (False, True):
            report.add(median(runs[f"serve{eos}"]), base[eos], group="streamml serve")
        spark_ms, spark_out, startup = spark_throughput(s, src, partitions, n, master=master, trigger_s=trigger_s,
                                                        timeout=timeout)
        check("Spark Structured Streaming (one run, all three Spark rows)", spark_out)
        for m in spark_ms:
            m.bytes = nbytes
            report.add(m, base[False], group="Spark")
    report.note(f"raw and serve rows: the median of {repeats} interleaved runs (all rates in the JSON); the raw "
                "loops' group join is outside the timed part, as the scorer's is; Spark: one run")
    for name, c in checks.items():
        status = "OK" if c["missing"] == 0 else "MISSING EVENTS"
        records = ", ".join(f"{r:,}" for r in c["records"])
        report.note(f"verified (read_committed) {name}: {c['runs']} run(s), records {records}; "
                    f"{c['missing']:,} of {n:,} events missing (worst run), {c['duplicates']:,} duplicates (all runs)"
                    f" — {status}")
    first_s = spark_ms[0].extra["first_prediction_after_query_start_s"]
    report.note(f"Spark session start (JVM, connector jars, {master}): {startup:.1f} s, included only in the "
                f"'session start' row; first prediction read {first_s:.1f} "
                f"s after query start (Python workers, model {version} loaded from the models topic)")
    report.note(f"Spark trigger: processing time {trigger_s:g} s; CPU-s/M of Spark rows counts the JVM and its "
                "Python workers (and this process's follower), raw and serve rows this process only")
    report.note(f"Flink: {FLINK_REASON}")
    path = report.show()
    import json

    doc = json.loads(path.read_text())
    doc.update({"events": n, "partitions": partitions, "event_bytes_avg": round(nbytes / n, 1),
                "spark": {"master": master, "trigger_s": trigger_s, "session_start_s": round(startup, 3)},
                "verification": checks,
                "flink": {"status": "not built", "reason": FLINK_REASON}})
    path.write_text(json.dumps(doc, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--trigger-seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3, help="Raw and serve runs per kind (the median is reported).")
    ap.add_argument("--timeout", type=float, default=600.0, help="Give up on the Spark run after this many seconds.")
    a = ap.parse_args()
    try:
        import pyspark  # noqa: F401
    except ImportError:
        console.print("bench_spark skipped: PySpark is not installed (pip install 'streamml[spark]')", markup=False)
        return
    run(a.events, a.partitions, a.master, a.trigger_seconds, a.timeout, a.repeat)


if __name__ == "__main__":
    main()
