"""Ingest throughput: file ingest and the HTTP endpoint, as ratios to the raw producer.

File ingest reads one JSONL file of small JSON events (the raw baseline's own events, keyed
by card id) and writes them exactly once (one transaction per chunk with its checkpoint):

- ``lineage headers``: the default, every record carries event id, component and version headers;
- ``no headers``: ``--no-headers``, no per-record headers (the key column stays the key);
- ``schema + headers``: every record also validated against a 5-field schema.

The HTTP endpoint runs as its own process (``streamml ingest http``) on 127.0.0.1; a bounded
asyncio load generator (httpx) posts JSON arrays and measures the latency of each request
from send to the 2xx that follows the broker's acknowledgement.

Run: ``python -m benchmarks.bench_ingest [--rows N] [--size B] [--http-requests N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import streamml
from benchmarks.common import Measurement, Report, bench_broker, make_events, measure, raw_produce
from streamml.config import Settings
from streamml.ingest import ingest_files
from streamml.schema import Field, Schema

SCHEMA = Schema("bench", [Field("event_id", str), Field("event_time", int), Field("card_id", str),
                          Field("amount", float, min=0), Field("merchant", str)])


def file_ingest(settings: Settings, path: Path, n: int, name: str, **kw: object) -> Measurement:
    stream = f"file{time.time_ns() % 10**8}"
    box: dict[str, int] = {}

    def run() -> int:
        report = ingest_files(settings, path, stream, key="card_id", **kw)  # type: ignore[arg-type]
        assert report.counts.balanced and report.counts.accepted == n, report.counts
        return report.counts.accepted

    m = measure(name, run, path.stat().st_size)
    m.extra.update(box)
    return m


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(url: str, bodies: list[bytes], concurrency: int) -> tuple[int, list[float], float]:
    import httpx

    latencies: list[float] = []
    accepted = 0
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def worker() -> None:
            nonlocal accepted
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post(url, content=body, headers={"Content-Type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code == 200:
                    accepted += r.json()["accepted"]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return accepted, latencies, time.perf_counter() - t0


def http_ingest(settings: Settings, events: list[bytes], batch: int, requests: int,
                concurrency: int) -> Measurement:
    import httpx

    port = _free_port()
    env = {**os.environ, "STREAMML_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
           "STREAMML_NAMESPACE": settings.namespace, "STREAMML_HOME": str(settings.home),
           "PYTHONPATH": str(Path(streamml.__file__).resolve().parent.parent)}  # this tree's source
    server = subprocess.Popen([sys.executable, "-m", "streamml", "ingest", "http", "--no-auth",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        url = f"{base}/v1/streams/http{batch}/events"
        httpx.post(url, content=b"[" + events[0] + b"]", timeout=30)          # creates the topics
        bodies = [b"[" + b",".join(events[(i * batch) % len(events):(i * batch) % len(events) + batch]) + b"]"
                  for i in range(requests)]
        box: dict[str, object] = {}

        def run() -> int:
            accepted, lat, secs = asyncio.run(_load(url, bodies, concurrency))
            lat.sort()
            box.update(p50_ms=round(lat[len(lat) // 2] * 1000, 2), p99_ms=round(lat[int(len(lat) * 0.99)] * 1000, 2),
                       requests=len(lat), batch=batch, concurrency=concurrency)
            return accepted

        m = measure(f"HTTP POST, {batch} event(s)/request, {concurrency} concurrent", run, sum(map(len, bodies)))
        m.extra.update(box)
        return m
    finally:
        server.terminate()
        server.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--http-requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    n = args.rows
    events = make_events(n, args.size)
    report = Report("bench_ingest",
                    f"ingest, {n:,} JSON events of {args.size} B (3 partitions, exactly-once file ingest)")
    with bench_broker() as settings, tempfile.TemporaryDirectory(prefix="streamml-bench-ingest-") as tmp:
        settings = settings.with_(home=Path(tmp) / "home")
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"\n".join(events) + b"\n")
        from streamml.kafka.admin import ensure_topic

        topic = f"raw-produce-{time.time_ns() % 10**8}"
        ensure_topic(settings, topic, 3)
        base = raw_produce(settings, events, topic)
        report.add(base, group="file")
        report.add(file_ingest(settings, path, n, "file JSONL, lineage headers"), base, group="file")
        report.add(file_ingest(settings, path, n, "file JSONL, no headers", lineage_headers=False), base,
                   group="file")
        report.add(file_ingest(settings, path, n, "file JSONL, schema + headers", schema=SCHEMA), base,
                   group="file")
        again = raw_produce(settings, events)
        again.name = "raw produce (again)"
        report.add(again, base, group="file")
        http_events = events[: min(n, 100_000)]
        for batch, requests in ((100, args.http_requests), (1, args.http_requests)):
            m = http_ingest(settings, http_events, batch, requests, args.concurrency)
            report.add(m, base, group="http")
            report.note(f"{m.name}: p50 {m.extra['p50_ms']} ms, p99 {m.extra['p99_ms']} ms per request "
                        f"({m.extra['requests']:,} requests, latency = until the 2xx after Kafka's ack)")
    report.note("raw produce: plain confluent-kafka, keyed, idempotent, acks=all, lz4, same settings as streamml.")
    report.note("file ingest: read + validate + produce in one transaction per 4 MiB chunk with its checkpoint; "
                "the HTTP server and the load generator share this machine's cores.")
    report.note("HTTP rows: the load generator is httpx in this process (its CPU is the CPU-s/M column, ~1.8 ms "
                "per request), which bounds single-event requests; benchmarks/bench_http.py measures the "
                "endpoint with a light generator against the bare HTTP stack.")
    report.note(f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    report.show()


if __name__ == "__main__":
    main()
