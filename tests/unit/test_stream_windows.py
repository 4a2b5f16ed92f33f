"""Windowed aggregation equals a batch recomputation, whatever the batch boundaries."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from typing import Any

import polars as pl
import pytest

from streamml.errors import PipelineError
from streamml.stream import (
    TestDriver,
    count,
    count_distinct,
    hopping,
    last,
    max,
    mean,
    min,
    std,
    stream,
    sum,
    tumbling,
)
from streamml.stream.windows import parse_duration

AGGS = dict(n=count(), total=sum("v"), avg=mean("v"), lo=min("v"), hi=max("v"), sd=std("v"),
            kinds=count_distinct("kind"), last_v=last("v"))


def events(n: int, seed: int, disorder: int = 2600) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ts = i * 37 + rnd.randint(-disorder, 0)   # out of order by up to `disorder` ms
        out.append({"k": f"k{rnd.randint(0, 4)}", "ts": ts, "v": rnd.randint(-50, 500),
                    "kind": rnd.choice("abcdef"), "i": i})
    return out


def recompute(evs: list[dict[str, Any]], size: int, advance: int, grace: int) -> tuple[dict, int]:
    """Plain-Python reference: stream time as running max, drop records whose window closed."""
    windows: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    st = -math.inf
    late = 0
    for e in evs:
        st = e["ts"] if e["ts"] > st else st
        latest = (e["ts"] // advance) * advance
        if latest + size + grace <= st:
            late += 1
            continue
        start = latest
        while start > e["ts"] - size:
            if start + size + grace > st:
                windows[(e["k"], start)].append(e)
            start -= advance
    out = {}
    for (k, start), rows in windows.items():
        vs = [r["v"] for r in rows]
        lastrow = max_by(rows)
        out[(k, start)] = dict(n=len(rows), total=builtin_sum(vs), avg=builtin_sum(vs) / len(vs),
                               lo=builtin_min(vs), hi=builtin_max(vs),
                               sd=statistics.stdev(vs) if len(vs) > 1 else None,
                               kinds=len({r["kind"] for r in rows}), last_v=lastrow["v"])
    return out, late


import builtins  # noqa: E402

builtin_sum, builtin_min, builtin_max = builtins.sum, builtins.min, builtins.max


def max_by(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = rows[0]
    for r in rows[1:]:
        if r["ts"] >= best["ts"]:
            best = r
    return best


def check(outputs: list[dict[str, Any]], expected: dict, size: int, closed_before: int) -> None:
    got = {(o["k"], o["window_start"]): o for o in outputs}
    assert len(got) == len(outputs), "a window was emitted twice"
    exp = {k: v for k, v in expected.items() if k[1] + size <= closed_before}
    assert set(got) == set(exp)
    for key, e in exp.items():
        o = got[key]
        assert o["window_end"] == key[1] + size
        for name in ("n", "total", "lo", "hi", "kinds", "last_v"):
            assert o[name] == e[name], (key, name)
        assert o["avg"] == pytest.approx(e["avg"], rel=1e-12)
        assert (o["sd"] is None) == (e["sd"] is None)
        if e["sd"] is not None:
            assert o["sd"] == pytest.approx(e["sd"], rel=1e-9)


@pytest.mark.parametrize("spec", [tumbling(1000, grace=800), hopping(2000, 500, grace=300), tumbling(700)])
@pytest.mark.parametrize("seed", [1, 2])
def test_close_emission_equals_recomputation(spec: Any, seed: int) -> None:
    evs = events(3000, seed)
    p = stream("t").window(key="k", size=spec, time="ts").agg(**AGGS).to("out")
    d = TestDriver(p)
    rnd = random.Random(seed)
    i = 0
    while i < len(evs):                      # random batch boundaries
        n = rnd.randint(1, 400)
        d.send(*evs[i:i + n])
        i += n
    expected, late = recompute(evs, spec.size, spec.advance, spec.grace)
    assert d.late == late and late > 0        # the data has late records and within-grace ones
    st = builtin_max(e["ts"] for e in evs)
    check(d.outputs, expected, spec.size, st - spec.grace)


def test_update_emission_last_value_equals_recomputation() -> None:
    evs = events(2000, 7)
    spec = tumbling(1000, grace=1000)
    p = stream("t").window(key="k", size=spec, time="ts", emit="update").agg(**AGGS).to("out")
    d = TestDriver(p)
    d.send_many(evs, batch_size=97)
    final: dict[tuple[str, int], dict[str, Any]] = {}
    for o in d.outputs:
        final[(o["k"], o["window_start"])] = o
    expected, _ = recompute(evs, spec.size, spec.advance, spec.grace)
    assert len(d.outputs) > len(final)       # windows were updated more than once
    check(list(final.values()), expected, spec.size, 10**12)


def test_batch_boundaries_do_not_change_results() -> None:
    evs = events(600, 3)
    p = stream("t").window(key="k", size=tumbling(500, grace=400), time="ts").agg(**AGGS).to("out")
    one, many = TestDriver(p), TestDriver(p)
    one.send(*evs)
    many.send_many(evs, batch_size=1)

    def canon(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = [{**r, "sd": None if r["sd"] is None else round(r["sd"], 9)} for r in rows]
        return sorted(out, key=lambda r: (r["window_start"], r["k"]))

    assert len(one.outputs) > 10 and canon(one.outputs) == canon(many.outputs)
    assert one.late == many.late


def test_partitions_have_their_own_stream_time() -> None:
    p = stream("t").window(key="k", size=tumbling(100), time="ts").agg(n=count()).to("out")
    d = TestDriver(p)
    d.send({"k": "a", "ts": 5000}, partition=0)
    assert d.send({"k": "b", "ts": 10}, partition=1) == []   # not late: partition 1's time is 10
    out = d.send({"k": "b", "ts": 500}, partition=1)
    assert out == [{"k": "b", "window_start": 0, "window_end": 100, "n": 1}]
    assert d.late == 0


def test_late_records_go_to_dead_letters_when_asked() -> None:
    p = stream("t").window(key="k", size=tumbling(100), time="ts", late="dlq").agg(n=count()).to("out")
    d = TestDriver(p)
    d.send({"k": "a", "ts": 1000}, {"k": "a", "ts": 5})
    assert d.late == 1 and len(d.dead_letters) == 1
    key, value, headers = d.dead_letters[0]
    assert b'"ts":5' in value and dict(headers)["sm.reason"].startswith(b"late")


def test_invalid_json_is_dead_lettered_and_the_rest_processed() -> None:
    p = stream("t").filter(pl.col("a") > 1).to("out")
    d = TestDriver(p)
    out = d.send({"a": 1}, b"{not json", {"a": 2}, b"[1]")
    assert out == [{"a": 2}] and d.invalid == 2 and len(d.dead_letters) == 2


def test_durations_and_specs() -> None:
    assert parse_duration("1m") == 60_000 and parse_duration("250ms") == 250
    with pytest.raises(PipelineError):
        parse_duration("1 fortnight")
    with pytest.raises(PipelineError):
        hopping(1000, 300)
    with pytest.raises(PipelineError):
        stream("t").window(key="k", size=tumbling(10)).agg()


def recompute_sliding(evs: list[dict[str, Any]], size: int, grace: int) -> tuple[dict[int, dict], int]:
    st, late, seen, out = -math.inf, 0, [], {}
    for e in evs:
        st = e["ts"] if e["ts"] > st else st
        if e["ts"] + grace < st:
            late += 1
            continue
        seen.append(e)
        rows = [s for s in seen if s["k"] == e["k"] and e["ts"] - size < s["ts"] <= e["ts"]]
        vs = [r["v"] for r in rows]
        out[e["i"]] = dict(n=len(rows), total=builtin_sum(vs), hi=builtin_max(vs),
                           kinds=len({r["kind"] for r in rows}), last_v=max_by(rows)["v"],
                           sd=statistics.stdev(vs) if len(vs) > 1 else None)
    return out, late


@pytest.mark.parametrize("batch", [7, 5000])
def test_sliding_window_per_record_equals_recomputation(batch: int) -> None:
    from streamml.stream import sliding

    evs = events(600, 4, disorder=900)
    spec = sliding(800, grace=500)
    p = (stream("t").window(key="k", size=spec, time="ts")
         .agg(n=count(), total=sum("v"), hi=max("v"), kinds=count_distinct("kind"), last_v=last("v"), sd=std("v"))
         .to("out"))
    d = TestDriver(p)
    d.send_many(evs, batch_size=batch)
    expected, late = recompute_sliding(evs, spec.size, spec.grace)
    assert d.late == late and late > 0
    assert [o["i"] for o in d.outputs] == list(expected)          # one row per on-time record, in order
    for o in d.outputs:
        e = expected[o["i"]]
        assert {k: o[k] for k in ("n", "total", "hi", "kinds", "last_v")} == {
            k: e[k] for k in ("n", "total", "hi", "kinds", "last_v")}, o
        assert (o["sd"] is None and e["sd"] is None) or o["sd"] == pytest.approx(e["sd"], rel=1e-9)
    state = d.state
    assert state is not None and state.height < 200                # the buffer is pruned
