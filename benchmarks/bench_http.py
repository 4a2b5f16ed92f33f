"""HTTP ingest of single-event requests against the HTTP stack's own ceiling, in one run.

Three figures, measured on the same broker in the same run:

- ``raw produce``: plain confluent-kafka producing the same events (the usual raw baseline),
  and the same client in a closed loop of ``concurrency`` single records in flight (what
  Kafka alone allows a closed loop of that many clients);
- ``bare endpoint``: FastAPI + uvicorn with the ingest server's settings, an endpoint that
  reads the body, parses the JSON and answers 200 with a body of the ingest answer's shape,
  no Kafka at all (``benchmarks/http_bare.py``): the ceiling of the HTTP stack;
- ``streamml ingest http``: the real endpoint (its own process), each request one JSON
  event, answered after Kafka acknowledged it.

Each server is loaded by a closed-loop keep-alive HTTP/1.1 generator
(``benchmarks/http_load.py``) at each concurrency (64 and 16 by default): latency is from
sending a request to the last byte of its answer. The generator is a minimal client (far
cheaper per request than httpx), and its CPU seconds are reported, so one can check that it
is not the bottleneck. ``ratio`` = ingest requests/s ÷ bare requests/s at the same concurrency.

The systems take turns in short rounds (``--rounds``, 10 of ``--requests`` 2,000 by default),
so that on a shared machine each sees the same spread of noise; the table pools the rounds
(requests/s = all requests / all seconds, percentiles over every request), the notes and the
JSON file give every round.

Run: ``python -m benchmarks.bench_http [--requests N] [--concurrency 64 16] [--procs P] [--rounds R]
[--before-src DIR]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

import streamml
from benchmarks.common import Measurement, Report, bench_broker, make_events, raw_produce
from benchmarks.http_load import LoadResult, run_load
from streamml.config import Settings
from streamml.kafka.admin import ensure_topic

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(streamml.__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process on a free port, ready once ``/healthz`` answers 200."""

    def __init__(self, args: list[str], settings: Settings, src: Path = SRC) -> None:
        self.port = _free_port()
        env = {**os.environ, "STREAMML_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
               "STREAMML_NAMESPACE": settings.namespace, "STREAMML_HOME": str(settings.home),
               "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
        cmd = [sys.executable, *args, *(["--port"] if args[1] == "streamml" else []), str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"server {' '.join(args)} did not become ready")
            time.sleep(0.2)

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(server: Server, path: str, bodies: list[bytes], concurrency: int, procs: int, name: str) -> Measurement:
    run_load(server.port, path, bodies[: max(200, len(bodies) // 10)], concurrency, procs)  # warm-up
    c0 = server.cpu_s()
    res: LoadResult = run_load(server.port, path, bodies, concurrency, procs)
    server_cpu = server.cpu_s() - c0
    if res.ok != len(bodies):
        raise RuntimeError(f"{name}: {res.ok} of {len(bodies)} requests answered 200: {res.statuses}")
    return Measurement(name, res.ok, res.seconds, server_cpu, sum(map(len, bodies)), {
        "concurrency": concurrency, "p50_ms": res.pct_ms(0.5), "p99_ms": res.pct_ms(0.99),
        "max_ms": res.pct_ms(1.0), "server_cpu_ms_per_request": round(server_cpu / res.requests * 1000, 3),
        "client_cpu_s": round(res.client_cpu_s, 2), "load_procs": procs, "_latencies": res.latencies})


def _pooled(runs: list[Measurement]) -> Measurement:
    """All rounds of one system as one measurement: requests and seconds summed, latency
    percentiles over every request; each round's figures go into the extras."""
    lat = sorted(x for r in runs for x in r.extra.pop("_latencies"))
    first = runs[0]
    m = Measurement(first.name, sum(r.count for r in runs), sum(r.seconds for r in runs),
                    sum(r.cpu_seconds for r in runs), sum(r.bytes for r in runs), {
                        "concurrency": first.extra["concurrency"], "rounds": len(runs),
                        "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "max_ms": _pct(lat, 1.0),
                        "server_cpu_ms_per_request": round(sum(r.cpu_seconds for r in runs) / len(lat) * 1000, 3),
                        "client_cpu_s": round(sum(r.extra["client_cpu_s"] for r in runs), 2),
                        "load_procs": first.extra["load_procs"],
                        "rounds_per_s": [round(r.per_s) for r in runs],
                        "rounds_p99_ms": [r.extra["p99_ms"] for r in runs],
                        "rounds_ratio": [r.extra["ratio_to_bare"] for r in runs]})
    return m


def _pct(lat: list[float], q: float) -> float:
    return round(lat[min(len(lat) - 1, int(len(lat) * q))] * 1000, 2)


def raw_closed_loop(settings: Settings, topic: str, events: list[bytes], concurrency: int) -> Measurement:
    """Kafka alone, as the endpoint drives it: ``concurrency`` single records in flight, each
    acknowledgement sending the next (a producer like the endpoint's: ``linger.ms`` 1)."""
    from streamml.kafka import clients

    p = clients.producer(settings, linger_ms=1)
    p.produce(topic, b"warm-up")
    p.flush(30)
    latencies: list[float] = []
    todo = list(reversed(events))

    def send() -> None:
        t0 = time.perf_counter()

        def done(err: object, msg: object) -> None:
            latencies.append(time.perf_counter() - t0)
            if todo:
                send()

        p.produce(topic, todo.pop(), on_delivery=done)

    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(min(concurrency, len(todo))):
        send()
    while len(latencies) < len(events):
        p.poll(0.05)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    lat = sorted(latencies)
    return Measurement(f"raw produce, closed loop, {concurrency} in flight", len(lat), secs, cpu,
                       sum(map(len, events)), {"concurrency": concurrency, "p50_ms": _pct(lat, 0.5),
                                               "p99_ms": _pct(lat, 0.99)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per system, concurrency and round")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 16])
    ap.add_argument("--procs", type=int, default=1, help="load-generator processes")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds, pooled in the table")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--before-src", type=Path, default=None,
                    help="also run `streamml ingest http` from this source tree (e.g. the previous commit's src/)")
    args = ap.parse_args()
    events = make_events(max(args.requests, 200_000), args.size)
    report = Report("bench_http", f"HTTP ingest, one {args.size} B JSON event per request, vs the bare HTTP stack")
    with bench_broker() as settings:
        topic = f"raw-produce-{time.time_ns() % 10**8}"
        ensure_topic(settings, topic, 3)
        base = raw_produce(settings, events, topic)
        report.add(base, group="raw")
        for conc in args.concurrency:
            loop_m = raw_closed_loop(settings, topic, events[:20_000], conc)
            report.add(loop_m, group="raw")
            report.note(f"{loop_m.name}: {loop_m.per_s:,.0f} records/s, p50 {loop_m.extra['p50_ms']} ms, "
                        f"p99 {loop_m.extra['p99_ms']} ms (Kafka alone: what bounds the endpoint from below)")
        bodies = events[: args.requests]
        path = "/v1/streams/httpone/events"
        cmd = ["-m", "streamml", "ingest", "http", "--no-auth"]
        specs = [("bare endpoint (no Kafka)", ["-m", "benchmarks.http_bare"], SRC),
                 ("streamml ingest http", cmd, SRC)]
        if args.before_src:
            specs.append(("streamml ingest http (before)", cmd, args.before_src.resolve()))
        servers: list[tuple[str, Server]] = []
        try:
            for name, argv, src in specs:
                servers.append((name, Server(argv, settings, src)))
            for _, srv in servers[1:]:
                httpx.post(f"http://127.0.0.1:{srv.port}{path}", content=events[0], timeout=30)  # creates topics
            runs: dict[tuple[int, str], list[Measurement]] = {}
            for _ in range(args.rounds):  # rounds interleave the systems, so each sees the same noise
                for conc in args.concurrency:
                    bare_m: Measurement | None = None
                    for name, srv in servers:
                        m = load(srv, path, bodies, conc, args.procs, f"{name}, {conc} concurrent")
                        if bare_m is None:
                            bare_m = m
                        m.extra["ratio_to_bare"] = round(m.per_s / bare_m.per_s, 3)
                        runs.setdefault((conc, name), []).append(m)
            for conc in args.concurrency:
                b: Measurement | None = None
                for name, _ in servers:
                    m = _pooled(runs[(conc, name)])
                    report.add(m, b, group=f"c={conc}")
                    note = ""
                    if b is None:
                        b = m
                    else:
                        m.extra["ratio_to_bare"] = round(m.per_s / b.per_s, 3)
                        note = f", {m.extra['ratio_to_bare']:.2f}x bare"
                    report.note(f"{m.name}: {m.per_s:,.0f} req/s{note}, p50 {m.extra['p50_ms']} ms, "
                                f"p99 {m.extra['p99_ms']} ms, server {m.extra['server_cpu_ms_per_request']} "
                                f"CPU-ms/request, load generator {m.extra['client_cpu_s']} CPU-s; rounds: "
                                f"req/s {m.extra['rounds_per_s']}, p99 {m.extra['rounds_p99_ms']}, "
                                f"x bare {m.extra['rounds_ratio']}")
        finally:
            for _, srv in servers:
                srv.stop()
    report.note("count = requests answered 200 (one event each); CPU-s/M column = the server process's CPU; "
                "raw produce row: events/s of plain confluent-kafka (idempotent, acks=all, lz4).")
    report.note(f"broker, servers and load generator share this machine: {os.cpu_count()} cores, "
                f"load average at the end {os.getloadavg()[0]:.1f}")
    report.show()


if __name__ == "__main__":
    main()
