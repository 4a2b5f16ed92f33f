"""Serving strategies on in-memory batches, checked against direct model calls."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from streamml.errors import ConfigError, IntegrityError, ModelError, ServingError
from streamml.serve import (
    Batch,
    Canary,
    Consensus,
    Constant,
    LiveQuality,
    MemorySource,
    ModelHost,
    QualityBased,
    Role,
    Scores,
    Shadow,
    Single,
    Slow,
    Speculative,
    to_matrix,
    verify,
)
from streamml.serve.strategies import bucket
from streamml.serve.testing import FRAUD_FEATURES, fraud_frame, onnx_candidate, onnx_model, train_fraud_onnx

A, B, C = Role("a"), Role("b"), Role("c")


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return fraud_frame(2000, seed=11)


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    return {"a": onnx_model("a", 1, train_fraud_onnx(seed=1)),
            "b": onnx_model("b", 7, train_fraud_onnx(seed=2, kind="forest")),
            "bad": onnx_model("bad", 1, train_fraud_onnx(seed=3, flip=True))}


def _batch(df: pl.DataFrame) -> Batch:
    return Batch(df, [k.encode() for k in df["card_id"].to_list()])


def _x(df: pl.DataFrame) -> np.ndarray:
    return df.select(FRAUD_FEATURES).to_numpy().astype(np.float32)


def test_single_and_shadow(frame, models) -> None:  # type: ignore[no-untyped-def]
    b = _batch(frame)
    d = Single([A]).decide({A: models["a"]}, b)
    assert np.allclose(d.scores.score, models["a"].predict(_x(frame)).score)
    with pytest.raises(ServingError):
        Single([A]).decide({A: None}, b)
    s = Shadow(A, Role("b", "shadow"))
    d = s.decide({A: models["a"], Role("b", "shadow"): models["b"]}, b)
    assert np.allclose(d.scores.score, models["a"].predict(_x(frame)).score) and d.by[0].name == "a"
    assert d.shadow is not None and d.shadow.height == 2000
    assert np.allclose(d.shadow["candidate_score"].to_numpy(), models["b"].predict(_x(frame)).score)
    assert d.shadow["event_id"].to_list() == frame["event_id"].to_list()
    assert s.decide({A: models["a"], Role("b", "shadow"): None}, b).shadow is None


def test_canary_share_is_by_stable_key_hash(frame, models) -> None:  # type: ignore[no-untyped-def]
    b = _batch(frame)
    can = Canary(A, Role("b", "canary"), share=0.25)
    d = can.decide({A: models["a"], Role("b", "canary"): models["b"]}, b)
    mask = d.which.astype(bool)
    keys = frame["card_id"].to_list()
    assert mask.tolist() == [bucket(k.encode()) < 2500 for k in keys]
    per_key = {}
    for k, m in zip(keys, mask):
        assert per_key.setdefault(k, m) == m  # a key always goes the same way
    share = sum(per_key.values()) / len(per_key)
    assert 0.18 < share < 0.32
    x = _x(frame)
    assert np.allclose(d.scores.score[mask], models["b"].predict(x[mask]).score)
    assert np.allclose(d.scores.score[~mask], models["a"].predict(x[~mask]).score)
    with pytest.raises(ConfigError):
        Canary(A, B, share=1.5)


def test_speculative_meets_its_deadline_with_the_fallback(frame, models) -> None:  # type: ignore[no-untyped-def]
    b = _batch(frame[:200])
    rule = Constant("rule", score=0.5, label=0)
    # the preferred model is slow: the second one answers by the deadline
    spec = Speculative([A, B], deadline_s=0.5, fallback=rule, grace_s=0.25)
    d = spec.decide({A: Slow(models["a"], 3.0), B: models["b"]}, b)
    assert d.by[0].name == "b" and bool(d.extra["deadline_met"][0]) and not bool(d.extra["fallback"][0])
    assert np.allclose(d.scores.score, models["b"].predict(_x(frame[:200])).score)
    # both slow: the fallback answers at the deadline, without waiting for them
    spec2 = Speculative([A, B], deadline_s=0.3, fallback=rule, grace_s=0.25)
    d = spec2.decide({A: Slow(models["a"], 3.0), B: Slow(models["b"], 2.0)}, b)
    assert d.by[0].name == "rule" and bool(d.extra["fallback"][0]) and spec2.missed == 1
    assert bool(d.extra["deadline_met"][0]) and d.extra["answer_ms"][0] < 2000
    assert d.scores.score.tolist() == [0.5] * 200
    # models still busy with the last batch are skipped: the next answer is not held up either
    d = spec2.decide({A: Slow(models["a"], 3.0), B: models["b"]}, b)
    assert d.by[0].name == "rule" and d.extra["answer_ms"][0] < 2000
    deadline = time.monotonic() + 10
    while not spec2._busy[B].done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spec2.decide({A: Slow(models["a"], 3.0), B: models["b"]}, b).by[0].name == "b"  # b is free again
    spec.close(), spec2.close()
    # when the preferred answers in time it wins over a faster second choice
    spec3 = Speculative([A, B], deadline_s=5.0)
    assert spec3.decide({A: Slow(models["a"], 0.05), B: models["b"]}, b).by[0].name == "a"
    spec3.close()


def test_consensus_average_and_vote(frame, models) -> None:  # type: ignore[no-untyped-def]
    b = _batch(frame)
    d = Consensus([A, B, C], weights=[1, 1, 2]).decide(
        {A: models["a"], B: models["b"], C: Constant("c", score=0.0, label=0, version=3)}, b)
    x = _x(frame)
    sa, sb = models["a"].predict(x), models["b"].predict(x)
    assert np.allclose(d.scores.score, (sa.score + sb.score) / 4)
    assert d.scores.label.tolist() == ((sa.label + sb.label) * 1 >= 2).astype(int).tolist()
    assert d.extra["members"][0] == "a:1,b:7,c:3"


def test_quality_based_picks_the_model_labels_prefer(frame, models) -> None:  # type: ignore[no-untyped-def]
    q = LiveQuality(window=500)
    strat = QualityBased([Role("bad"), A], q, min_labels=50)
    first, second = frame[:1000], frame[1000:]
    d = strat.decide({Role("bad"): models["bad"], A: models["a"]}, _batch(first))
    assert d.by[0].name == "bad"  # nothing measured yet: the first model answers
    assert q.observe(first["event_id"].to_list(), first["is_fraud"].to_list()) == 1000
    qa, qbad = q.quality("a"), q.quality("bad")
    assert qa[1] == qbad[1] == 500 and qa[0] > 0.9 > 0.2 > qbad[0]
    d = strat.decide({Role("bad"): models["bad"], A: models["a"]}, _batch(second))
    assert d.by[0].name == "a" and np.allclose(d.scores.score, models["a"].predict(_x(second)).score)


def test_to_matrix_and_verify(frame, models) -> None:  # type: ignore[no-untyped-def]
    fm = to_matrix(frame, FRAUD_FEATURES)
    assert fm.all_valid and fm.x.shape == (2000, 6) and fm.x.dtype == np.float32
    data = train_fraud_onnx(seed=1)
    m = verify(onnx_candidate("a", 1, data), feature_columns=frame.columns, sample=fm.x[:5])
    assert m.version == 1
    with pytest.raises(IntegrityError):
        verify(onnx_candidate("a", 2, data, sha="f" * 64))
    with pytest.raises(ModelError, match="ip_risk"):
        verify(onnx_candidate("a", 2, data, columns=FRAUD_FEATURES[:5] + ("ip_risk",)), feature_columns=frame.columns)
    with pytest.raises(ModelError, match="cannot load"):
        verify(onnx_candidate("a", 2, data[:100]))
    with pytest.raises(ModelError, match="takes 6 features"):
        verify(onnx_candidate("a", 2, data, columns=FRAUD_FEATURES[:4]))


def test_host_swaps_only_forward_and_reports_refusals() -> None:
    src = MemorySource()
    data = train_fraud_onnx(seed=1)
    src.publish(onnx_candidate("m", 2, data))
    host = ModelHost(src, [Role("m")]).start(wait_for=Role("m"), timeout=5)
    assert host.get("m").version == 2
    src.publish(onnx_candidate("m", 1, data))            # older: ignored
    src.publish(onnx_candidate("m", 3, data, sha="0" * 64))  # bad hash: refused
    src.publish(onnx_candidate("m", 4, data, stage="canary"))  # other stage: not ours
    src.publish(onnx_candidate("m", 5, data))
    deadline = time.monotonic() + 10
    while host.slots[Role("m")].newest < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert host.get("m").version == 2  # nothing changes until the swap point
    assert host.swap() == [(Role("m"), 2, 5)] and host.get("m").version == 5
    kinds = [(e.kind, e.version) for e in host.watcher.events]
    assert ("refused", 3) in kinds and ("swapped", 5) in kinds and ("loaded", 1) not in kinds
    host.stop()
    empty = ModelHost(MemorySource(), [Role("x")])
    with pytest.raises(ModelError, match="no servable version"):
        empty.start(wait_for=Role("x"), timeout=0.2)
    empty.stop()


def test_scores_take() -> None:
    s = Scores(np.array([0.1, 0.9, 0.5]), np.array([0, 1, 1]))
    assert s.take(np.array([2, 0])).score.tolist() == [0.5, 0.1]
