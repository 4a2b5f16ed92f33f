"""The registry on a real broker: versions, stages, rollback, integrity, trust, 50 MB, watching."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import orjson
import pytest
from onnx import numpy_helper
from sklearn.linear_model import LogisticRegression

from streamml.config import Settings
from streamml.errors import IntegrityError, ModelError
from streamml.kafka import clients
from streamml.registry import Artifact, Registry, export_model
from streamml.registry.store import chunk_headers, chunk_key
from streamml.train.reader import resolve_ranges

FEATS = ["a", "b", "c"]


def _fit(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    return LogisticRegression().fit(X, (X[:, 0] + rng.normal(0, 0.5, 300) > 0).astype(int))


def _raw_put(settings: Settings, topic: str, key: bytes, value: bytes, partition: int,
             headers: list | None = None) -> None:
    p = clients.producer(settings)
    p.produce(topic, value, key, partition=partition, headers=headers)
    assert p.flush(10) == 0


def test_versions_stages_promote_rollback_diff(settings: Settings) -> None:
    reg = Registry(settings)
    v1 = reg.publish(_fit(1), name="fraud", features=FEATS, metrics={"auc": 0.81})
    v2 = reg.publish(_fit(2), name="fraud", features=FEATS, metrics={"auc": 0.84}, stage="production")
    v3 = reg.publish(_fit(3), name="fraud", features=FEATS, metrics={"auc": 0.86})
    reg.publish(_fit(4), name="other", features=FEATS)
    assert [d.version for d in reg.list("fraud")] == [1, 2, 3] and reg.names() == ["fraud", "other"]
    assert reg.latest("fraud").version == 2 and reg.latest("fraud", stage=None).version == 3
    assert reg.latest("other") is None
    reg.promote("fraud", 3, "canary")
    assert reg.latest("fraud", "canary").version == 3
    reg.promote("fraud", 3, "production")
    stages = {d.version: d.stage for d in reg.list("fraud")}
    assert stages == {1: "candidate", 2: "archived", 3: "production"}
    assert reg.stages("fraud")["stages"] == {"production": 3, "canary": None, "shadow": None}
    back = reg.rollback("fraud")
    assert back.version == 2 and reg.latest("fraud").version == 2
    assert {d.version: d.stage for d in reg.list("fraud")}[3] == "archived"
    with pytest.raises(ModelError, match="no earlier production version"):
        reg.rollback("fraud")
    d = reg.diff("fraud@1", "fraud@3")
    assert d["metrics.auc"] == (0.81, 0.86) and d["version"] == (1, 3) and "sha256" in d
    # every old version still loads (rollback needs the bytes) and scores like its model
    X = np.random.default_rng(9).normal(size=(20, 3)).astype(np.float32)
    for ver, seed in ((1, 1), (3, 3)):
        np.testing.assert_allclose(reg.load(f"fraud@{ver}").score(X), _fit(seed).predict_proba(X)[:, 1], atol=1e-5)
    assert v1.sha256 != v2.sha256 != v3.sha256
    # deleting: not a version in use; an unused one disappears (tombstones) and no longer rolls back
    with pytest.raises(ModelError, match="in use"):
        reg.delete("fraud", 2)
    reg.delete("fraud", 3)
    assert [d.version for d in reg.list("fraud")] == [1, 2] and 3 not in reg.stages("fraud")["production_history"]
    with pytest.raises(ModelError, match="not in"):
        reg.load("fraud@3")
    assert reg.publish(_fit(5), name="fraud", features=FEATS).version == 4  # version numbers are never reused


def test_fifty_megabyte_artifact_round_trips(settings: Settings) -> None:
    onx = onnx.load_from_string(export_model(_fit(1), FEATS).data)
    ballast = np.random.default_rng(0).standard_normal(50 * 1024 * 1024 // 4).astype(np.float32)
    onx.graph.initializer.append(numpy_helper.from_array(ballast, "ballast"))
    data = onx.SerializeToString()
    assert len(data) > 50 * 1024 * 1024
    base = export_model(_fit(1), FEATS)
    art = Artifact(data, "onnx", "classifier", base.input_schema, base.output_schema)
    reg = Registry(settings)
    d = reg.publish(name="big", artifact=art)
    assert d.artifact["chunks"] == -(-len(data) // 900_000) and d.size == len(data)
    got = Registry(settings).fetch(reg.latest("big", stage=None))
    assert got == data
    X = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_allclose(reg.load(d).score(X), _fit(1).predict_proba(X)[:, 1], atol=1e-5)


def test_corrupted_chunk_and_wrong_hash_are_refused(settings: Settings) -> None:
    reg = Registry(settings, chunk_bytes=100)
    d = reg.publish(_fit(1), name="m", features=FEATS)
    n = d.artifact["chunks"]
    assert n >= 2
    # a chunk rewritten with flipped bytes (keeping its key and headers), and a descriptor pointing at it
    good = reg.fetch(d)
    chunk1 = bytearray(good[100:200])
    chunk1[5] ^= 0x01
    _raw_put(settings, reg.topic, chunk_key("m", 1, 1), bytes(chunk1), 1,
             chunk_headers(1, n, good[100:200]))
    (chunks_range,) = resolve_ranges(settings, [reg.topic], partitions=[1])
    offsets = list(d.artifact["offsets"])
    offsets[1] = chunks_range.end - 1
    tampered = d.with_(artifact={**d.artifact, "offsets": offsets})
    with pytest.raises(IntegrityError, match=r"chunk 1/\d+ is corrupted"):
        reg.load(tampered)
    # chunks swapped: wrong key at an offset
    swapped = list(d.artifact["offsets"])
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(IntegrityError, match="has key"):
        reg.fetch(d.with_(artifact={**d.artifact, "offsets": swapped}))
    # a descriptor on the topic with the wrong hash
    _raw_put(settings, reg.topic, b"m:1", d.with_(sha256="f" * 64).to_json(), 0)
    with pytest.raises(IntegrityError, match="does not match the descriptor"):
        reg.load("m@1")
    # signed registry: the tampered descriptor fails its signature before any bytes are read
    sreg = Registry(settings, signing_key="registry-key-0001")
    s = sreg.publish(_fit(2), name="s", features=FEATS)
    _raw_put(settings, sreg.topic, b"s:1", s.with_(sha256="f" * 64).to_json(), 0)
    with pytest.raises(IntegrityError, match="signature does not verify"):
        sreg.load("s@1")


def test_uri_store_and_its_integrity(settings: Settings, tmp_path: Path) -> None:
    reg = Registry(settings, artifact_store=str(tmp_path / "store"))
    d = reg.publish(_fit(1), name="u", features=FEATS, store="uri")
    assert d.artifact["kind"] == "uri" and d.artifact["uri"].startswith("file://")
    X = np.zeros((1, 3), dtype=np.float32)
    assert reg.load("u@1").score(X).shape == (1,)
    path = Path(d.artifact["uri"][len("file://"):])
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="SHA-256"):
        reg.load("u@1")
    mem = Registry(settings, artifact_store="memory://streamml-test")
    dm = mem.publish(_fit(2), name="u2", features=FEATS, store="uri")
    assert dm.artifact["uri"].startswith("memory://") and mem.load(dm).score(X).shape == (1,)


def test_pickles_load_only_when_signed_by_a_trusted_key(settings: Settings) -> None:
    from river import linear_model

    m = linear_model.LogisticRegression()
    for i in range(20):
        m.learn_one({"a": float(i), "b": 1.0, "c": 0.0}, i % 2 == 0)
    with pytest.raises(IntegrityError, match="needs a signing key"):
        Registry(settings).publish(m, name="river", features=FEATS)
    signed = Registry(settings, signing_key="trusted-key-0001")
    d = signed.publish(m, name="river", features=FEATS, stage="production")
    assert d.format == "pickle" and d.signer == signed.signer.key_id and d.signature
    lm = signed.load("river")
    assert lm.score([{"a": 3.0, "b": 1.0, "c": 0.0}])[0] == pytest.approx(m.predict_proba_one(
        {"a": 3.0, "b": 1.0, "c": 0.0})[True])
    # another key: unknown signer; no key at all: unknown signer too
    with pytest.raises(IntegrityError, match="unknown key"):
        Registry(settings, signing_key="someone-else-0001").load("river")
    with pytest.raises(IntegrityError, match="unknown key"):
        Registry(settings).load("river")
    assert Registry(settings, trusted_keys=["trusted-key-0001"]).load("river").score(
        [{"a": 3.0, "b": 1.0, "c": 0.0}]).shape == (1,)
    # a forged, unsigned pickle descriptor written straight to the topic is never unpickled
    marker = Path(settings.home) / "pwned"
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    _raw_put(settings, signed.topic, chunk_key("river", 9, 0), evil, 1, chunk_headers(0, 1, evil))
    (rng,) = resolve_ranges(settings, [signed.topic], partitions=[1])
    forged = d.with_(version=9, sha256=hashlib.sha256(evil).hexdigest(), size=len(evil), signature=None,
                     signer=None, artifact={**d.artifact, "offsets": [rng.end - 1], "chunks": 1})
    _raw_put(settings, signed.topic, b"river:9", forged.to_json(), 0)
    with pytest.raises(IntegrityError, match="not signed"):
        signed.load("river@9")
    assert not marker.exists()


def test_watch_stage_and_follow_see_promotions(settings: Settings) -> None:
    reg = Registry(settings)
    reg.publish(_fit(1), name="w", features=FEATS, stage="production")
    seen: list[int] = []
    got_two = threading.Event()

    def on_change(d) -> None:  # type: ignore[no-untyped-def]
        seen.append(d.version)
        if d.version == 3:
            got_two.set()

    with reg.follow("w", on_change):
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:  # the follower has read the current version
            time.sleep(0.05)
        reg.publish(_fit(2), name="w", features=FEATS)
        reg.publish(_fit(3), name="w", features=FEATS, stage="production")
        assert got_two.wait(20)
    assert seen == [1, 3]
    events = list(reg.watch("w", from_beginning=True, timeout=2.0))
    kinds = [(e.kind, e.version) for e in events]
    assert ("descriptor", 2) in kinds and kinds.count(("stages", 3)) == 1
    assert all(orjson.loads(e.descriptor.to_json())["name"] == "w" for e in events if e.descriptor)


def test_every_write_is_readable_when_it_returns(settings: Settings) -> None:
    """A commit returns before the broker writes the markers that make a transaction readable;
    publish and promote return only once the catalog's last stable offset has passed their
    records, so any reader (another Registry, another process) sees them at once."""
    from confluent_kafka import TopicPartition

    from streamml.kafka.read import watermarks
    from streamml.registry.registry import CATALOG

    reg = Registry(settings)
    tp = TopicPartition(reg.topic, CATALOG)
    model = _fit(1)
    for i in range(10):
        d = reg.publish(model, name="ryw", features=FEATS, stage="production" if i % 2 else "candidate")
        stable = watermarks(settings, [tp], committed=True)[(reg.topic, CATALOG)][1]
        end = watermarks(settings, [tp], committed=False)[(reg.topic, CATALOG)][1]
        assert stable == end, (i, stable, end)  # the markers are written: nothing of ours is pending
        assert Registry(settings).latest("ryw", stage=None).version == d.version == i + 1
        if i % 2 == 0:
            reg.promote("ryw", d.version, "production")
            assert Registry(settings).latest("ryw").version == d.version
