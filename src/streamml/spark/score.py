"""Structured Streaming scoring with the production model, followed on the models topic inside the executors.

:func:`score_stream` reads a features topic with Spark's Kafka source (read committed), scores
each Arrow batch in the executors' Python workers with ``mapInArrow``, and writes the
predictions through Spark's Kafka sink. What runs where:

* **driver** — plans the query, tracks offsets in the checkpoint folder; loads no model;
* **executor Python workers** — each keeps one :class:`~streamml.serve.swap.ModelHost` per
  ``(cluster, namespace, model, stage)`` for the life of the worker: a
  :class:`~streamml.serve.registry_source.RegistrySource` followed by a background thread, every
  version verified (hash against the descriptor, input schema, a test inference) by streamml's
  serving code before it is offered. At the start of each task the host catches up with the
  registry (so a partition that moves to another worker never meets an older version than the
  one before it) and between Arrow batches the verified successor is swapped in. A promotion
  therefore swaps the model **without restarting the query**.

A prediction record has the scorer's shape (``event_id, model, model_version, score, label?,
latency_ms, event_time``), the input record's key, and the lineage headers (``sm.event_id``,
``sm.event_time``, ``sm.model``, ``sm.model_version``, ``sm.component``, ``sm.version``). It goes
to the input record's partition number of the predictions topic (created with as many partitions),
so versions never go backwards per partition. Rows that cannot be scored go to ``<ns>.dlq`` with
``sm.reason``.

**Delivery is at least once.** Spark's Kafka sink is not transactional: a task or micro-batch
that is retried writes its predictions again. Keys and ``event_id`` make duplicates detectable;
readers that need each event once deduplicate by ``event_id`` (the newest ``model_version`` wins).
For exactly-once scoring run ``streamml serve``.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import orjson
import pyarrow as pa

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import ConfigError, ModelError
from streamml.spark.session import kafka_options, require_pyspark

__all__ = ["score_stream", "OUTPUT_SCHEMA"]

#: What the scoring function returns per row: the Kafka sink's columns.
OUTPUT_SCHEMA = pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("key", pa.binary()),
                          ("value", pa.binary()),
                          ("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))])

def _host(settings: Settings, model: str, stage: str, wait_s: float) -> Any:
    """This worker's model host for ``model@stage`` (:func:`streamml.serve.hosts.shared_host`)."""
    from streamml.serve.hosts import shared_host

    return shared_host(settings, model, stage, wait_s)


def _score(rb: pa.RecordBatch, current: Any, out_topic: str, dlq: str, component: str, id_col: str,
           time_col: str) -> pa.RecordBatch:
    from streamml.schema.batch import decode_json
    from streamml.serve.features import to_matrix

    t0 = time.perf_counter()
    values = [v or b"" for v in rb.column("value").to_pylist()]
    keys = rb.column("key").to_pylist()
    parts = rb.column("partition").to_pylist()
    n = len(values)
    topics, outs = [dlq] * n, list(values)
    hdrs: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    try:
        df = decode_json(values)
        fm = to_matrix(df, tuple(current.input_columns))
        rejected = fm.rejected
    except Exception as exc:  # a batch no schema fits: every row is a dead letter with the reason
        df, fm, rejected = None, None, {i: f"value could not be decoded: {exc}" for i in range(n)}
    src = [f"{rb.column('topic')[i].as_py()}/{parts[i]}@{rb.column('offset')[i].as_py()}" for i in range(n)]
    for i, reason in rejected.items():
        hdrs[i] = [{"key": H.SOURCE, "value": src[i].encode()}, {"key": H.REASON, "value": reason[:500].encode()},
                   {"key": H.COMPONENT, "value": component.encode()}]
    if df is not None and fm is not None and fm.rows.size:
        scores = current.predict(fm.x)
        latency = round((time.perf_counter() - t0) * 1000, 3)
        ids = df[id_col].cast(str).to_list() if id_col in df.columns else [None] * n
        times = df[time_col].to_list() if time_col in df.columns else [None] * n
        labels = scores.label.tolist() if scores.label is not None else None
        for j, i in enumerate(fm.rows.tolist()):
            rec: dict[str, Any] = {"event_id": ids[i], "model": current.name, "model_version": current.version,
                                   "score": float(scores.score[j])}
            if labels is not None:
                rec["label"] = int(labels[j])
            rec["latency_ms"] = latency
            if times[i] is not None:
                rec["event_time"] = times[i]
            topics[i], outs[i] = out_topic, orjson.dumps(rec)
            et = None if times[i] is None else int(times[i])
            hdrs[i] = [{"key": k, "value": v} for k, v in H.lineage(
                event_id=ids[i], event_time_ms=et, component=component, model=current.name,
                model_version=current.version)]
    return pa.RecordBatch.from_arrays(
        [pa.array(topics, pa.string()), pa.array(parts, pa.int32()), pa.array(keys, pa.binary()),
         pa.array(outs, pa.binary()), pa.array(hdrs, OUTPUT_SCHEMA.field("headers").type)], schema=OUTPUT_SCHEMA)


def score_stream(spark: Any, settings: Settings, model: str, input_topic: str, *, checkpoint: str,
                 output_topic: str | None = None, stage: str = "production", trigger_s: float = 1.0,
                 starting_offsets: str = "earliest", max_offsets_per_trigger: int | None = None,
                 wait_for_model_s: float = 60.0, id_column: str = "event_id", time_column: str = "event_time",
                 extra_options: dict[str, str] | None = None, query_name: str | None = None) -> Any:
    """Start the scoring query (see the module docstring); returns the ``StreamingQuery``.

    ``checkpoint`` is the query's checkpoint folder (offsets; a restarted query resumes there).
    ``output_topic`` defaults to ``<ns>.predictions.<model>``; it and ``<ns>.dlq`` are created.
    """
    require_pyspark()
    from pyspark.sql.pandas.types import from_arrow_schema

    from streamml.kafka.admin import ensure_topic, list_topics
    from streamml.registry.descriptor import check_stage

    check_stage(stage)
    topics = list_topics(settings)
    if input_topic not in topics:
        raise ConfigError(f"input topic {input_topic} does not exist", hint="run the feature pipeline first")
    out = output_topic or settings.topic("predictions", model)
    dlq = settings.topic("dlq")
    ensure_topic(settings, out, max(1, int(topics[input_topic])))
    ensure_topic(settings, dlq, 1)
    component = f"spark.serve.{model}"
    opts = kafka_options(settings, extra_options)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        host = _host(settings, model, stage, wait_for_model_s)
        host.catch_up()  # this partition may come from another worker: serve at least what it served
        for rb in batches:
            host.swap()  # between batches: one batch, one version
            current = host.get(model, stage)
            if current is None:  # never drop a batch unscored: fail the task (Spark retries it)
                raise ModelError(f"no servable version of {model}@{stage} in this worker")
            if rb.num_rows:
                yield _score(rb, current, out, dlq, component, id_column, time_column)

    reader = spark.readStream.format("kafka").options(**opts).option("subscribe", input_topic) \
        .option("startingOffsets", starting_offsets).option("kafka.isolation.level", "read_committed")
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(int(max_offsets_per_trigger)))
    scored = reader.load().select("topic", "partition", "offset", "key", "value") \
        .mapInArrow(run, from_arrow_schema(OUTPUT_SCHEMA))
    writer = scored.writeStream.format("kafka").options(**opts).option("checkpointLocation", checkpoint) \
        .trigger(processingTime=f"{trigger_s:g} seconds")
    if query_name:
        writer = writer.queryName(query_name)
    return writer.start()
