"""Formats, signing and integrity checks without a broker."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from streamml.errors import IntegrityError
from streamml.registry import Descriptor, Signer, diff, export_model, restricted_loads, signed_payload
from streamml.registry.formats import load_artifact
from streamml.registry.models import load_model
from streamml.registry.store import check_chunk, chunk_headers, chunk_key, split_chunks
from streamml.train import Autoencoder

FEATS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


def _descriptor(art, name: str = "m") -> Descriptor:
    return Descriptor(name=name, version=1, format=art.format, sha256=art.sha256, size=art.size,
                      input_schema=art.input_schema, output_schema=art.output_schema, task=art.task)


def test_onnx_export_is_byte_identical_for_identical_fits(data) -> None:
    X, y = data
    arts = [export_model(make_pipeline(StandardScaler(), LogisticRegression(random_state=0)).fit(X, y), FEATS)
            for _ in range(2)]
    assert arts[0].data == arts[1].data and arts[0].sha256 == hashlib.sha256(arts[1].data).hexdigest()
    ifs = [export_model(IsolationForest(n_estimators=30, random_state=5).fit(X), FEATS) for _ in range(2)]
    assert ifs[0].data == ifs[1].data
    aes = [export_model(Autoencoder((3,), seed=1, max_iter=40).fit(X), FEATS) for _ in range(2)]
    assert aes[0].data == aes[1].data
    different = export_model(IsolationForest(n_estimators=30, random_state=6).fit(X), FEATS)
    assert different.sha256 != ifs[0].sha256


def test_score_output_matches_the_sklearn_model(data) -> None:
    X, y = data
    clf = make_pipeline(StandardScaler(), LogisticRegression(random_state=0)).fit(X, y)
    art = export_model(clf, FEATS)
    assert art.format == "onnx" and art.task == "classifier"
    lm = load_artifact(_descriptor(art), art.data)
    np.testing.assert_allclose(lm.score(X), clf.predict_proba(X)[:, 1], atol=1e-5)
    iso = IsolationForest(n_estimators=40, random_state=1).fit(X)
    art = export_model(iso, FEATS, task=None)
    assert art.task == "anomaly"
    np.testing.assert_allclose(load_artifact(_descriptor(art), art.data).score(X), -iso.decision_function(X),
                               atol=1e-4)
    ae = Autoencoder((3,), seed=0, max_iter=60).fit(X)
    art = export_model(ae, FEATS)
    sess = ort.InferenceSession(art.data, providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["score", "reconstruction"]
    np.testing.assert_allclose(load_artifact(_descriptor(art), art.data).score(X), ae.score_samples(X), rtol=1e-3,
                               atol=1e-5)


def test_scoring_accepts_frames_and_dicts(data) -> None:
    import polars as pl

    X, y = data
    clf = LogisticRegression().fit(X, y)
    art = export_model(clf, FEATS)
    lm = load_artifact(_descriptor(art), art.data)
    df = pl.DataFrame({f: X[:, i] for i, f in enumerate(FEATS)}).select(list(reversed(FEATS)))
    ref = clf.predict_proba(X)[:, 1]
    np.testing.assert_allclose(lm.score(df), ref, atol=1e-5)
    np.testing.assert_allclose(lm.score(df.to_arrow()), ref, atol=1e-5)
    np.testing.assert_allclose(lm.score(df.to_pandas()), ref, atol=1e-5)
    np.testing.assert_allclose(lm.score(df.head(3).to_dicts()), ref[:3], atol=1e-5)


def test_wrong_hash_or_size_is_refused(data) -> None:
    X, y = data
    art = export_model(LogisticRegression().fit(X, y), FEATS)
    d = _descriptor(art)
    with pytest.raises(IntegrityError, match="SHA-256"):
        load_artifact(d.with_(sha256="0" * 64), art.data)
    with pytest.raises(IntegrityError, match="bytes"):
        load_artifact(d, art.data[:-1])


def test_pickles_need_a_verified_signature_and_allowed_classes() -> None:
    from river import linear_model

    m = linear_model.LogisticRegression()
    m.learn_one({"a": 1.0}, True)
    art = export_model(m, ["a"])
    assert art.format == "pickle"
    d = _descriptor(art)
    with pytest.raises(IntegrityError, match="signature was not verified"):
        load_model(d, art.data)
    lm = load_model(d, art.data, signature_verified=True)
    assert 0.0 <= lm.score([{"a": 1.0}])[0] <= 1.0
    evil = pickle.dumps({"model": __import__("subprocess").Popen})
    with pytest.raises(IntegrityError, match="subprocess.Popen"):
        restricted_loads(evil)


def test_signatures_cover_identity_and_content() -> None:
    s = Signer("0123456789abcdef")
    d = Descriptor(name="m", version=2, format="pickle", sha256="ab" * 32, size=5)
    sig = s.sign(signed_payload(d))
    assert s.verify(signed_payload(d.with_(stage="production", metrics={"x": 1})), sig)
    assert not s.verify(signed_payload(d.with_(sha256="cd" * 32)), sig)
    assert not s.verify(signed_payload(d.with_(version=3)), sig)
    assert not Signer("another-key-0000").verify(signed_payload(d), sig)


def test_chunk_checks() -> None:
    data = bytes(range(256)) * 100
    chunks = split_chunks(data, 1000)
    assert b"".join(chunks) == data and len(chunks) == 26
    h = {k: v.decode() for k, v in chunk_headers(3, 26, chunks[3])}
    assert check_chunk("m@1", 3, 26, chunk_key("m", 1, 3), chunk_key("m", 1, 3), chunks[3], h) == chunks[3]
    bad = bytearray(chunks[3])
    bad[10] ^= 0xFF
    with pytest.raises(IntegrityError, match="chunk 3/26 is corrupted"):
        check_chunk("m@1", 3, 26, chunk_key("m", 1, 3), chunk_key("m", 1, 3), bytes(bad), h)
    with pytest.raises(IntegrityError, match="has key"):
        check_chunk("m@1", 3, 26, chunk_key("m", 1, 4), chunk_key("m", 1, 3), chunks[3], h)


def test_diff_lists_changed_fields() -> None:
    a = Descriptor(name="m", version=1, format="onnx", sha256="a" * 64, size=1, metrics={"auc": 0.8})
    b = a.with_(version=2, sha256="b" * 64, metrics={"auc": 0.9})
    assert diff(a, b) == {"metrics.auc": (0.8, 0.9), "sha256": ("a" * 64, "b" * 64), "version": (1, 2)}


def test_isolation_forest_export_with_feature_subsets_matches_sklearn(data) -> None:
    X, _ = data
    X = np.vstack([X, np.random.default_rng(1).normal(4, 1, size=(20, 4)).astype(np.float32)])
    iso = IsolationForest(n_estimators=60, max_features=0.5, bootstrap=True, contamination=0.05,
                          random_state=2).fit(X)
    art = export_model(iso, FEATS)
    sess = ort.InferenceSession(art.data, providers=["CPUExecutionProvider"])
    score, label = sess.run(["score", "label"], {"input": X})
    np.testing.assert_allclose(score, -iso.decision_function(X), atol=1e-5)
    assert (label == iso.predict(X)).mean() > 0.99
