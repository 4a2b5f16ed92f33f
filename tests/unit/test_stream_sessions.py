"""Session windows on the TestDriver: Kafka Streams' session semantics, whatever the batches.

A record joins (and merges) the open sessions of its key within the inactivity gap; a session
spans its earliest to its latest event time; it closes once stream time passes
end + gap + grace; a record touching no open session and older than gap + grace behind stream
time is late. EMIT CHANGES ("changes") writes a tombstone for each session a record replaces,
then the new session; EMIT FINAL ("close") writes each session once, when it closes.
"""

from __future__ import annotations

import builtins
import random
import statistics
from typing import Any

import pytest

from streamml.errors import PipelineError
from streamml.stream import TestDriver, count, count_distinct, max, mean, min, session, std, stream, sum
from streamml.stream.engine import state_from_records

AGGS = dict(n=count(), total=sum("v"), avg=mean("v"), lo=min("v"), hi=max("v"), sd=std("v"),
            kinds=count_distinct("kind"))
GAP, GRACE = 100, 50


def pipeline(emit: str, gap: int = GAP, grace: int = GRACE) -> Any:
    return (stream("clicks").window(key="k", size=session(gap, grace=grace), time="ts", emit=emit)  # type: ignore[arg-type]
            .agg(**AGGS).to("sessions"))


Rows = list[dict[str, Any]]


def reference(evs: Rows, gap: int, grace: int) -> tuple[Rows, Rows, int]:
    """Plain Python, record by record: (rows of EMIT CHANGES with tombstones, final rows, late)."""
    sessions: dict[str, list[list[Any]]] = {}   # key -> [start, end, records]
    changes: list[dict[str, Any]] = []
    finals: list[dict[str, Any]] = []
    st, late = -10**18, 0

    def value(k: str, s: list[Any]) -> dict[str, Any]:
        vs = [e["v"] for e in s[2]]
        return {"k": k, "window_start": s[0], "window_end": s[1], "n": len(vs), "total": builtins.sum(vs),
                "avg": builtins.sum(vs) / len(vs), "lo": builtins.min(vs), "hi": builtins.max(vs),
                "sd": statistics.stdev(vs) if len(vs) > 1 else None, "kinds": len({e["kind"] for e in s[2]})}

    for e in evs:
        t, k = e["ts"], e["k"]
        st = builtins.max(st, t)
        for key, ss in sessions.items():  # close what stream time passed
            for s in [s for s in ss if s[1] + gap + grace < st]:
                ss.remove(s)
                finals.append(value(key, s))
        ss = sessions.setdefault(k, [])
        found = sorted((s for s in ss if s[1] >= t - gap and s[0] <= t + gap), key=lambda s: s[0])
        if not found and t + gap + grace < st:
            late += 1
            continue
        if found and not (len(found) == 1 and (found[0][0], found[0][1]) == (t, t)):
            changes += [{"k": k, "window_start": s[0], "window_end": s[1], "dead": True} for s in found]
        new = [builtins.min([t, *(s[0] for s in found)]), builtins.max([t, *(s[1] for s in found)]),
               [r for s in found for r in s[2]] + [e]]
        for s in found:
            ss.remove(s)
        ss.append(new)
        changes.append(value(k, new))
    return changes, finals, late


def events(n: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    t, out = 0, []
    for _ in range(n):
        t += rnd.choice([10, 30, 60, 90, 120, 250])
        ts = t - rnd.choice([0, 0, 0, 40, 90, 160, 260])  # out of order, some beyond gap + grace
        out.append({"k": rnd.choice("ab"), "ts": ts, "v": rnd.randint(-5, 50), "kind": rnd.choice("xyz")})
    return out


def run(emit: str, evs: list[dict[str, Any]], sizes: list[int]) -> TestDriver:
    d = TestDriver(pipeline(emit))
    i = 0
    for size in sizes:
        if i < len(evs):
            d.send(*evs[i:i + size])
            i += size
    if i < len(evs):
        d.send(*evs[i:])
    return d


def changes_rows(d: TestDriver) -> list[dict[str, Any]]:
    out = []
    for res in d.results:
        rows = res.frame.to_dicts() if res.frame is not None and res.frame.height else []
        for row, val in zip(rows, res.values):
            if val is None:
                out.append({"k": row["k"], "window_start": row["window_start"], "window_end": row["window_end"],
                            "dead": True})
            else:
                out.append(row)
    return out


def same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w.get("sd") is not None:
            assert g["sd"] == pytest.approx(w["sd"], rel=1e-9) and g["avg"] == pytest.approx(w["avg"], rel=1e-9)
            g, w = {**g, "sd": 0, "avg": 0}, {**w, "sd": 0, "avg": 0}
        assert g == w


def send(d: TestDriver, *recs: tuple[str, int, int]) -> list[dict[str, Any]]:
    return d.send(*[{"k": k, "ts": t, "v": v, "kind": "x"} for k, t, v in recs])


def test_a_record_within_the_gap_extends_its_session() -> None:
    d = TestDriver(pipeline("changes"))
    assert [(r["window_start"], r["window_end"], r["n"]) for r in send(d, ("a", 1000, 1))] == [(1000, 1000, 1)]
    rows = send(d, ("a", 1100, 2))                    # exactly the gap later: same session
    assert [(r["window_start"], r["window_end"], r["n"], r["total"]) for r in rows] == \
        [(1000, 1000, None, None), (1000, 1100, 2, 3)]
    assert d.results[-1].values[0] is None           # the old session's key is deleted first
    rows = send(d, ("a", 1201, 4))                    # 101 ms after its end: a new session
    assert [(r["window_start"], r["window_end"], r["n"]) for r in rows] == [(1201, 1201, 1)]


def test_a_bridging_record_merges_two_sessions_with_tombstones() -> None:
    d = TestDriver(pipeline("changes"))
    send(d, ("a", 1000, 1), ("a", 1050, 2), ("a", 1200, 4))   # two sessions: [1000, 1050] and [1200, 1200]
    rows = send(d, ("a", 1120, 8))                             # within the gap of both
    assert [(r["window_start"], r["window_end"], r["n"], r["total"]) for r in rows] == \
        [(1000, 1050, None, None), (1200, 1200, None, None), (1000, 1200, 4, 15)]
    assert [v is None for v in d.results[-1].values] == [True, True, False]
    assert d.state is not None and d.state.select("__ws", "__we", "n").rows() == [(1000, 1200, 4)]


def test_out_of_order_within_grace_counts_and_late_beyond_grace_is_dropped() -> None:
    d = TestDriver(pipeline("close"))
    send(d, ("a", 1000, 1), ("b", 1100, 1))   # a's session [1000, 1000] is open until stream time 1150
    assert send(d, ("a", 900, 2)) == []         # before its start, within the gap: extends it backwards
    assert d.late == 0 and d.state is not None
    assert sorted(d.state.select("__key", "__ws", "__we").rows()) == [("a", 900, 1000), ("b", 1100, 1100)]
    rows = send(d, ("b", 1400, 1))              # stream time 1400 closes both sessions
    assert [(r["k"], r["window_start"], r["window_end"], r["n"]) for r in rows] == \
        [("a", 900, 1000, 2), ("b", 1100, 1100, 1)]
    assert send(d, ("a", 1240, 5)) == []        # 1240 + gap + grace < 1400: late, opens nothing
    assert d.late == 1
    rows = send(d, ("b", 2000, 1))
    assert [(r["k"], r["window_start"], r["window_end"], r["n"]) for r in rows] == [("b", 1400, 1400, 1)]


def test_emit_final_writes_each_session_once_when_it_closes() -> None:
    d = TestDriver(pipeline("close"))
    assert send(d, ("a", 1000, 1), ("a", 1080, 2), ("a", 1160, 3)) == []
    assert send(d, ("b", 1310, 1)) == []        # a's end + gap + grace = 1310: still open
    rows = send(d, ("b", 1311, 1))              # stream time passed it: a's session closes
    assert [(r["k"], r["window_start"], r["window_end"], r["n"], r["total"]) for r in rows] == \
        [("a", 1000, 1160, 3, 6)]
    assert send(d, ("b", 1400, 1)) == []        # b's session [1310, 1400] stays open
    rows = send(d, ("c", 1551, 1))
    assert [(r["k"], r["window_start"], r["window_end"], r["n"]) for r in rows] == [("b", 1310, 1400, 3)]
    assert len(d.outputs) == 2 and d.late == 0


@pytest.mark.parametrize("seed", range(4))
def test_changes_and_final_match_the_record_at_a_time_reference(seed: int) -> None:
    evs = events(120, seed)
    want_changes, want_finals, want_late = reference(evs, GAP, GRACE)
    rnd = random.Random(seed)
    sizes = [rnd.choice([1, 2, 3, 7, 20]) for _ in range(200)]
    for batching in ([1] * 200, sizes, [len(evs)]):
        d = run("changes", evs, batching)
        same(changes_rows(d), want_changes)
        assert d.late == want_late
        d = run("close", evs, batching)
        same(sorted(d.outputs, key=lambda r: (r["window_end"], r["k"])),
             sorted(want_finals, key=lambda r: (r["window_end"], r["k"])))
        assert d.late == want_late


def test_a_restart_restores_open_sessions_from_the_changelog() -> None:
    evs = events(120, 42)
    whole = run("changes", evs, [5] * 40)
    first = run("changes", evs[:60], [5] * 12)
    store: dict[bytes, bytes] = {}
    for res in first.results:                    # the changelog, compacted as the broker would
        for _p, k, v in res.changelog:
            if v is None:
                store.pop(k, None)
            else:
                store[k] = v
    rows, stream_time = state_from_records(store.items(), 0)
    second = TestDriver(pipeline("changes"))
    second.engine.assign(rows, stream_time)
    for i in range(60, 120, 5):
        second.send(*evs[i:i + 5])
    same(changes_rows(first) + changes_rows(second), changes_rows(whole))
    assert first.late + second.late == whole.late


def test_session_needs_a_positive_gap() -> None:
    with pytest.raises(PipelineError, match="gap must be positive") as info:
        session(0)
    assert info.value.hint
    assert "session(gap=300000ms, grace=0ms)" in stream("x").window(key="k", size=session("5m")) \
        .agg(n=count()).to("y").describe()
