"""Stream engines side by side: streamml vs Quix Streams vs Faust, as ratios to raw pass-through.

Two jobs over the same topic of JSON card events (keyed by card, one partition):

(a) stateless: parse JSON, keep ``amount > 1``, add three columns (cents, big, hour), write JSON;
(b) stateful: (a) plus a per-card 1-minute tumbling window (event time) with count and mean.

Each runs at-least-once and exactly-once where the library offers it. Every figure is
divided by the raw confluent-kafka consume→produce pass-through measured in the same run
(ALOS rows by the ALOS pass-through, EOS rows by the EOS one).

Run: ``python -m benchmarks.bench_stream [--events N] [--size B] [--skip-faust]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Measurement,
    Report,
    bench_broker,
    fill_topic,
    make_events,
    measure,
    new_topic,
    raw_passthrough,
)
from streamml.config import Settings

WINDOW_MS = 60_000
_src_bytes = 0   # input bytes of a run (set once the source topic is filled)


# --- streamml ---------------------------------------------------------------------------

def streamml_job(settings: Settings, src: str, n: int, *, stateful: bool, eos: bool) -> Measurement:
    import polars as pl

    from streamml.stream import RunOptions, Worker, count, mean, stream, tumbling

    p = (stream(src).filter(pl.col("amount") > 1.0)
         .with_columns(cents=(pl.col("amount") * 100).round().cast(pl.Int64), big=pl.col("amount") > 100,
                       hour=(pl.col("event_time") // 3_600_000) % 24))
    if stateful:
        p = p.window(key="card_id", size=tumbling(WINDOW_MS), time="event_time").agg(n=count(), avg=mean("amount"))
    p = p.to(f"sml-{uuid.uuid4().hex[:8]}").named(f"bench-{uuid.uuid4().hex[:8]}")
    opts = RunOptions(guarantee="exactly_once" if eos else "at_least_once", max_batch=10_000, idle_wait_s=0.5)
    box: dict[str, Any] = {}

    def run() -> int:
        w = Worker(p, settings.with_(home=Path(tempfile.mkdtemp(prefix="sml-bench-"))), opts)
        box["stats"] = w.run(max_records=n)
        return int(box["stats"]["in"])

    m = measure(f"streamml {'(b) stateful' if stateful else '(a) stateless'} {'EOS' if eos else 'ALOS'}", run)
    m.extra["outputs"] = box["stats"]["out"]
    m.bytes = _src_bytes
    return m


# --- Quix Streams -----------------------------------------------------------------------

def quix_job(settings: Settings, src: str, n: int, *, stateful: bool, eos: bool) -> Measurement:
    import logging

    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Mean

    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    state_dir = tempfile.mkdtemp(prefix="quix-bench-")
    app = Application(broker_address=settings.bootstrap_servers, consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=state_dir, loglevel="WARNING",
                      processing_guarantee="exactly-once" if eos else "at-least-once")
    topic = app.topic(src, value_deserializer="json",
                      timestamp_extractor=lambda value, headers, ts, ttype: value["event_time"])
    out = app.topic(f"quix-out-{uuid.uuid4().hex[:8]}", value_serializer="json")
    seen = {"n": 0}

    def tick(_: Any) -> None:
        seen["n"] += 1
        if seen["n"] >= n:
            app.stop()

    sdf = app.dataframe(topic)
    sdf = sdf.update(tick)
    sdf = sdf.filter(lambda v: v["amount"] > 1.0)
    sdf = sdf.apply(lambda v: {**v, "cents": round(v["amount"] * 100), "big": v["amount"] > 100,
                               "hour": (v["event_time"] // 3_600_000) % 24})
    if stateful:
        sdf = sdf.tumbling_window(WINDOW_MS).agg(n=Count(), avg=Mean("amount")).final()
    sdf.to_topic(out)

    def run() -> int:
        app.run()
        return seen["n"]

    m = measure(f"Quix Streams {'(b) stateful' if stateful else '(a) stateless'} {'EOS' if eos else 'ALOS'}", run)
    m.bytes = _src_bytes
    return m


# --- Faust (faust-streaming), in a child process ----------------------------------------

FAUST_APP = r'''
import json, os, resource, sys, time
import faust

def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

bootstrap, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
stateful, eos, result = sys.argv[4] == "1", sys.argv[5] == "1", sys.argv[6]
app = faust.App(f"faust-{os.getpid()}-{time.time_ns()}", broker=f"kafka://{bootstrap}", value_serializer="raw",
                processing_guarantee="exactly_once" if eos else "at_least_once", store="memory://",
                topic_partitions=1, web_enabled=False, web_port=free_port(), consumer_auto_offset_reset="earliest")
source = app.topic(src, value_type=bytes, value_serializer="raw")
sink = app.topic(sys.argv[7], value_serializer="raw")
table = app.Table("win", default=lambda: [0, 0.0], partitions=1) if stateful else None
state = {"n": 0}

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

@app.agent(source)
async def process(stream):
    async for raw in stream:
        if state["n"] == 0:
            state["t0"], state["c0"] = time.perf_counter(), cpu()
        state["n"] += 1
        v = json.loads(raw)
        if v["amount"] > 1.0:
            v["cents"] = round(v["amount"] * 100); v["big"] = v["amount"] > 100
            v["hour"] = (v["event_time"] // 3_600_000) % 24
            if table is not None:
                key = f'{v["card_id"]}|{v["event_time"] // 60000 * 60000}'
                agg = table[key]
                agg = [agg[0] + 1, agg[1] + v["amount"]]
                table[key] = agg
                out = {"card_id": v["card_id"], "n": agg[0], "avg": agg[1] / agg[0]}
            else:
                out = v
            await sink.send(value=json.dumps(out).encode())
        if state["n"] >= n:
            await app.producer.flush()
            with open(result, "w") as fh:
                json.dump({"count": state["n"], "seconds": time.perf_counter() - state["t0"],
                           "cpu": cpu() - state["c0"]}, fh)
            os._exit(0)

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "error", "--without-web"]
    app.main()
'''


def faust_job(settings: Settings, src: str, n: int, *, stateful: bool, eos: bool,
              timeout: float = 300) -> Measurement | str:
    name = f"Faust {'(b) stateful' if stateful else '(a) stateless'} {'EOS' if eos else 'ALOS'}"
    with tempfile.TemporaryDirectory(prefix="faust-bench-") as tmp:
        app_py, result = Path(tmp) / "faust_bench_app.py", Path(tmp) / "result.json"
        app_py.write_text(FAUST_APP)
        log = Path(tmp) / "faust.log"
        sink = new_topic(settings, "bench.faust-out", 1)
        with log.open("wb") as fh:
            proc = subprocess.Popen([sys.executable, str(app_py), settings.bootstrap_servers or "", src, str(n),
                                     "1" if stateful else "0", "1" if eos else "0", str(result), sink],
                                    cwd=tmp, stdout=fh, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                fh.write(b"\ntimed out after %d s" % int(timeout))
        if not result.exists():
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-3:]
            return f"{name}: did not finish ({' | '.join(tail)[:300]})"
        r = json.loads(result.read_text())
        return Measurement(name, r["count"], r["seconds"], r["cpu"], _src_bytes, extra={"timed": "first event to last"})


# --- the run --------------------------------------------------------------------------

def _median(ms: list[Measurement]) -> Measurement:
    """The median run by events/s (the machine is shared: noise), with every run's rate kept."""
    ordered = sorted(ms, key=lambda m: m.per_s)
    m = ordered[len(ordered) // 2]
    m.extra["runs_per_s"] = [round(r.per_s) for r in ms]
    return m


def run(n: int, size: int, skip_faust: bool, skip_quix: bool, repeat: int = 3, faust_n: int = 20_000) -> None:
    report = Report("bench_stream", f"stream engines on one broker, {n:,} events of {size} B (1 partition)")
    with bench_broker() as s:
        global _src_bytes
        events = make_events(n, size)
        _src_bytes = sum(map(len, events))
        src = new_topic(s, "bench.stream-src", 1)   # a dotted name is used as is
        fill_topic(s, src, events)
        # raw and streamml runs interleave, so that each repetition sees the same load on a shared machine
        runs: dict[tuple[str, bool], list[Measurement]] = {}
        for _ in range(repeat):
            for eos in (False, True):
                runs.setdefault(("raw", eos), []).append(raw_passthrough(s, src, n, eos=eos))
                for stateful in (False, True):
                    runs.setdefault(("a" if not stateful else "b", eos), []).append(
                        streamml_job(s, src, n, stateful=stateful, eos=eos))
        paired: dict[str, float] = {}
        for (job, eos), ms in runs.items():
            if job != "raw":
                ratios = sorted(m.per_s / r.per_s for m, r in zip(ms, runs[("raw", eos)]))
                paired[ms[0].name] = ratios[len(ratios) // 2]
        base = {eos: _median(runs[("raw", eos)]) for eos in (False, True)}
        for eos in (False, True):
            group = "EOS" if eos else "ALOS"
            report.add(base[eos], group=group)
            for stateful in (False, True):
                m = _median(runs[("b" if stateful else "a", eos)])
                m.extra["paired_ratio_to_raw"] = round(paired[m.name], 3)
                report.add(m, base[eos], group=group)
                if not skip_quix:
                    report.add(quix_job(s, src, n, stateful=stateful, eos=eos), base[eos], group=group)
                if not skip_faust:
                    f = faust_job(s, src, min(n, faust_n), stateful=stateful, eos=eos, timeout=180)
                    if isinstance(f, Measurement):
                        report.add(f, base[eos], group=group)
                    else:
                        report.note(f)
        for name, ratio in paired.items():
            report.note(f"{name}: median of per-repetition ratios to the raw run beside it = {ratio:.2f}x")
    report.note(f"raw and streamml rows: median of {repeat} runs (runs_per_s in the JSON); Quix and Faust: one run.")
    report.note("CPU-s/M: CPU seconds of the process running the engine per million input events.")
    report.note("streamml, Quix and raw are timed from start (including group join) to the last input; "
                "Faust from its first event to its last (its start-up is not counted).")
    report.note("Faust processes fewer events (--faust-events): it runs at a few hundred events/s here "
                "(aiokafka, one awaited send per event).")
    report.note("Faust (b) keeps per-card-minute count/sum in a changelogged Table and emits on every update; "
                "streamml and Quix emit each window once when it closes.")
    report.show()
    rows = {m.name: m for _, m, _ in report.rows}
    for eos in ("ALOS", "EOS"):
        for job in ("(a) stateless", "(b) stateful"):
            a, q = rows.get(f"streamml {job} {eos}"), rows.get(f"Quix Streams {job} {eos}")
            if a and q:
                print(f"streamml / Quix {job} {eos}: {a.per_s / q.per_s:.1f}x events/s, "
                      f"{q.cpu_s_per_million / a.cpu_s_per_million:.1f}x less CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--skip-faust", action="store_true")
    ap.add_argument("--skip-quix", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--faust-events", type=int, default=20_000, help="Faust runs at a few hundred events/s")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    run(args.events, args.size, args.skip_faust, args.skip_quix, args.repeat, args.faust_events)


if __name__ == "__main__":
    main()
