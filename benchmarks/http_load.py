"""A light HTTP/1.1 load generator: keep-alive connections, closed loop, in one or more processes.

Each connection posts one body, waits for the whole answer, and posts the next (a closed
loop: ``concurrency`` requests in flight). It speaks just enough HTTP/1.1 (``Content-Length``
bodies, keep-alive) to cost far less CPU per request than a general client such as httpx,
so that on a small machine the server, not the generator, is what is measured. The
connections are spread over ``procs`` processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    requests: int
    ok: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    client_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct_ms(self, q: float) -> float:
        lat = sorted(self.latencies)
        return round(lat[min(len(lat) - 1, int(len(lat) * q))] * 1000, 2) if lat else 0.0


async def _connection(host: str, port: int, path: str, bodies: list[bytes], out: list[tuple[float, int]]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: ").encode()
    try:
        for body in bodies:
            t0 = time.perf_counter()
            writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status_line = await reader.readline()
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out.append((time.perf_counter() - t0, status))
    finally:
        writer.close()


_Job = tuple[str, int, str, list[list[bytes]], float]


def _worker(args: _Job) -> tuple[float, float, list[tuple[float, int]], float]:
    import resource

    host, port, path, per_conn, start_at = args
    out: list[tuple[float, int]] = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)

    async def main() -> tuple[float, float]:
        while time.time() < start_at:  # every process starts at the same moment
            await asyncio.sleep(min(0.01, max(0.0, start_at - time.time())))
        t0 = time.time()
        await asyncio.gather(*(_connection(host, port, path, b, out) for b in per_conn))
        return t0, time.time()

    t0, t1 = asyncio.run(main())
    r = resource.getrusage(resource.RUSAGE_SELF)
    return t0, t1, out, r.ru_utime + r.ru_stime - r0.ru_utime - r0.ru_stime


def run_load(port: int, path: str, bodies: list[bytes], concurrency: int, procs: int = 1,
             host: str = "127.0.0.1") -> LoadResult:
    """Post every body once, ``concurrency`` at a time over ``procs`` processes."""
    conns: list[list[bytes]] = [bodies[i::concurrency] for i in range(concurrency)]
    groups = [conns[i::procs] for i in range(procs)]
    start_at = time.time() + 1.0
    if procs == 1:
        results = [_worker((host, port, path, groups[0], time.time()))]
    else:
        start_at = time.time() + 3.0  # spawned interpreters need a moment to start
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            results = pool.map(_worker, [(host, port, path, g, start_at) for g in groups])
    t0 = min(r[0] for r in results)
    t1 = max(r[1] for r in results)
    samples = [s for r in results for s in r[2]]
    statuses: dict[int, int] = {}
    for _, st in samples:
        statuses[st] = statuses.get(st, 0) + 1
    return LoadResult(len(samples), statuses.get(200, 0), t1 - t0, [s[0] for s in samples], statuses,
                      sum(r[3] for r in results))
