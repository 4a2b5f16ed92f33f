"""Lineage across stages: features carry the fingerprint of the pipeline that computed them,
and a dataset built from those features records it in its manifest."""

from __future__ import annotations

import orjson
import polars as pl

from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.stream import run, stream
from streamml.train import Dataset
from streamml.verify import read_topic


def test_pipeline_hash_flows_from_features_into_the_training_manifest(settings: Settings) -> None:
    ensure_topic(settings, settings.topic("raw", "lin"), 1)
    p = clients.producer(settings)
    for i in range(50):
        p.produce(settings.topic("raw", "lin"), orjson.dumps({"event_id": f"e{i}", "amount": i}), b"k")
    p.flush(10)
    pipeline = stream("lin").with_columns(double=pl.col("amount") * 2).to("lin")
    run(pipeline, settings, handle_signals=False, idle_exit=3.0, max_records=50)
    out = read_topic(settings, settings.topic("features", "lin"))
    assert len(out) == 50
    assert {r.header("sm.pipeline_hash") for r in out} == {pipeline.fingerprint()}
    manifest = Dataset.from_topics(settings, settings.topic("features", "lin")).manifest()
    assert manifest["pipeline_hash"] == pipeline.fingerprint()
