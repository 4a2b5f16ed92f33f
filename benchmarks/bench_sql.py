"""A windowed aggregation written three ways, as ratios to raw pass-through: ksqlDB SQL vs the Python DSL vs Quix.

One job over one topic of JSON card events (keyed by card, one partition, event time 10 ms
apart): per card, 1-minute windows hopping by 10 seconds (event time, no grace), count, sum and
max of ``amount``, one row per window when it closes. Written as

- the streamml Python DSL: ``stream(src).window(key="card_id", size=hopping(...)).agg(...)``;
- a ksqlDB statement (``CREATE TABLE ... AS SELECT ... WINDOW HOPPING ... EMIT FINAL``) deployed
  through streamml (``streamml.query.deploy``: the compiled pipeline on the same runtime);
- Quix Streams (``hopping_window(...).agg(Count, Sum, Max).final()``).

Every figure is divided by the raw confluent-kafka consume→produce pass-through of the same
guarantee measured in the same run. raw, DSL and SQL runs interleave (``--repeat`` times; the
median is reported) so that each sees the same load on a shared machine; Quix runs once.

Run: ``python -m benchmarks.bench_sql [--events N] [--size B] [--repeat R] [--skip-quix]``
"""

from __future__ import annotations

import argparse
import os
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

SIZE_MS, ADVANCE_MS = 60_000, 10_000
_src_bytes = 0


def _opts(eos: bool) -> dict[str, Any]:
    return {"guarantee": "exactly_once" if eos else "at_least_once", "max_batch": 10_000, "idle_wait_s": 0.5}


def _home(settings: Settings) -> Settings:
    return settings.with_(home=Path(tempfile.mkdtemp(prefix="sml-bench-sql-")))


def dsl_job(settings: Settings, src: str, n: int, *, eos: bool) -> Measurement:
    from streamml.stream import RunOptions, Worker, count, hopping, stream
    from streamml.stream import max as max_
    from streamml.stream import sum as sum_

    p = (stream(src).window(key="card_id", size=hopping(SIZE_MS, ADVANCE_MS), time="event_time")
         .agg(n=count(), total=sum_("amount"), hi=max_("amount"))
         .to(f"dsl-{uuid.uuid4().hex[:8]}").named(f"bench-dsl-{uuid.uuid4().hex[:8]}"))
    box: dict[str, Any] = {}

    def run() -> int:
        w = Worker(p, _home(settings), RunOptions().with_(**_opts(eos)))
        box["stats"] = w.run(max_records=n)
        return int(box["stats"]["in"])

    m = measure(f"Python DSL {'EOS' if eos else 'ALOS'}", run)
    m.extra["outputs"] = box["stats"]["out"]
    m.bytes = _src_bytes
    return m


def sql_job(settings: Settings, src: str, n: int, *, eos: bool) -> Measurement:
    import streamml.query as q
    from streamml.query.deploy import Deployment

    s = _home(settings)
    tag = uuid.uuid4().hex[:8].upper()
    q.sql(f"CREATE STREAM PAY_{tag} (card_id VARCHAR KEY, amount DOUBLE, event_time BIGINT) "
          f"WITH (kafka_topic='{src}', value_format='JSON', timestamp='event_time');", settings=s)
    stmt = (f"CREATE TABLE PER_CARD_{tag} WITH (kafka_topic='sql-{tag.lower()}') AS "
            f"SELECT card_id, COUNT(*) AS n, SUM(amount) AS total, MAX(amount) AS hi FROM PAY_{tag} "
            f"WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 10 SECONDS, GRACE PERIOD 0 SECONDS) "
            f"GROUP BY card_id EMIT FINAL;")
    box: dict[str, Any] = {}

    def run() -> int:
        d = Deployment(stmt, settings=s, **_opts(eos))   # what streamml.deploy(stmt) runs, in this thread
        box["stats"] = d.worker.run(max_records=n)
        return int(box["stats"]["in"])

    m = measure(f"ksqlDB SQL {'EOS' if eos else 'ALOS'}", run)
    m.extra["outputs"] = box["stats"]["out"]
    m.bytes = _src_bytes
    return m


def quix_job(settings: Settings, src: str, n: int, *, eos: bool) -> Measurement:
    import logging

    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Max, Sum

    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app = Application(broker_address=settings.bootstrap_servers, consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="quix-bench-sql-"),
                      loglevel="WARNING", processing_guarantee="exactly-once" if eos else "at-least-once")
    topic = app.topic(src, value_deserializer="json",
                      timestamp_extractor=lambda value, headers, ts, ttype: value["event_time"])
    out = app.topic(f"quix-out-{uuid.uuid4().hex[:8]}", value_serializer="json")
    seen = {"n": 0, "out": 0}

    def tick(_: Any) -> None:
        seen["n"] += 1
        if seen["n"] >= n:
            app.stop()

    def emitted(_: Any) -> None:
        seen["out"] += 1

    sdf = app.dataframe(topic).update(tick)
    sdf = sdf.hopping_window(SIZE_MS, ADVANCE_MS, grace_ms=0).agg(
        n=Count(), total=Sum("amount"), hi=Max("amount")).final()
    sdf.update(emitted).to_topic(out)

    def run() -> int:
        app.run()
        return seen["n"]

    m = measure(f"Quix Streams {'EOS' if eos else 'ALOS'}", run)
    m.extra["outputs"] = seen["out"]
    m.bytes = _src_bytes
    return m


def _median(ms: list[Measurement]) -> Measurement:
    ordered = sorted(ms, key=lambda m: m.per_s)
    m = ordered[len(ordered) // 2]
    m.extra["runs_per_s"] = [round(r.per_s) for r in ms]
    return m


def _paired(ms: list[Measurement], base: list[Measurement]) -> float:
    ratios = sorted(a.per_s / b.per_s for a, b in zip(ms, base))
    return ratios[len(ratios) // 2]


def run(n: int, size: int, repeat: int, skip_quix: bool, guarantees: tuple[bool, ...]) -> Report:
    global _src_bytes
    report = Report("bench_sql", f"windowed aggregation: SQL vs Python DSL vs Quix, {n:,} events of {size} B "
                                 "(1 partition; per card, 1 min hopping by 10 s, count/sum/max, final)")
    with bench_broker() as s:
        events = make_events(n, size)
        _src_bytes = sum(map(len, events))
        src = new_topic(s, "bench.sql-src", 1)
        fill_topic(s, src, events)
        for eos in guarantees:
            group = "EOS" if eos else "ALOS"
            runs: dict[str, list[Measurement]] = {"raw": [], "dsl": [], "sql": []}
            for i in range(repeat):
                runs["raw"].append(raw_passthrough(s, src, n, eos=eos))
                order = ("dsl", "sql") if i % 2 == 0 else ("sql", "dsl")   # neither always goes first
                for job in order:
                    runs[job].append((dsl_job if job == "dsl" else sql_job)(s, src, n, eos=eos))
            base = _median(runs["raw"])
            report.add(base, group=group)
            dsl, sql = _median(runs["dsl"]), _median(runs["sql"])
            dsl.extra["paired_ratio_to_raw"] = round(_paired(runs["dsl"], runs["raw"]), 3)
            sql.extra["paired_ratio_to_raw"] = round(_paired(runs["sql"], runs["raw"]), 3)
            sql.extra["paired_ratio_to_dsl"] = round(_paired(runs["sql"], runs["dsl"]), 3)
            report.add(dsl, base, group=group)
            report.add(sql, base, group=group)
            quix = None if skip_quix else quix_job(s, src, n, eos=eos)
            if quix is not None:
                report.add(quix, base, group=group)
            report.note(f"{group}: SQL / DSL = {sql.per_s / dsl.per_s:.2f}x (medians), "
                        f"{sql.extra['paired_ratio_to_dsl']:.2f}x (median of per-repetition ratios); "
                        f"window rows written: DSL {dsl.extra['outputs']:,}, SQL {sql.extra['outputs']:,}"
                        + (f", Quix {quix.extra['outputs']:,}" if quix is not None else ""))
    report.note(f"raw, DSL and SQL: median of {repeat} interleaved runs (runs_per_s in the JSON); Quix: one run.")
    report.note("Each run is timed from start (including group join) to the last input; CPU-s/M is this "
                "process's CPU seconds per million input events.")
    report.show()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-quix", action="store_true")
    ap.add_argument("--guarantee", choices=("alos", "eos", "both"), default="both")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    g = {"alos": (False,), "eos": (True,), "both": (False, True)}[args.guarantee]
    run(args.events, args.size, args.repeat, args.skip_quix, g)


if __name__ == "__main__":
    main()
