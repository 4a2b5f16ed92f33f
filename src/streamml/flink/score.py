"""A Flink job scoring a features topic with the production model, exactly once into the predictions topic.

:func:`score_stream` declares three things in a streaming ``TableEnvironment`` and submits one
``INSERT``:

* a source table over the features topic (Flink's Kafka source, ``isolation.level =
  read_committed``, JSON values, the record key kept as raw bytes);
* the function ``streamml_score`` (:mod:`streamml.flink.udf`): each Python UDF worker follows the
  models topic and swaps a promoted version in between Arrow batches, **without restarting the job**;
* a sink table over ``<ns>.predictions.<model>`` (Flink's Kafka sink with
  ``sink.delivery-guarantee = exactly-once``: a Kafka transaction per checkpoint, committed when
  the checkpoint completes, transactional ids prefixed per job), so read_committed readers see
  **each event scored exactly once**, at the latency of the checkpoint interval.

A prediction's value has the scorer's shape (``event_id, model, model_version, score,
event_time``), its key is the input record's key, and the lineage goes in the **headers**
(``sm.event_id``, ``sm.event_time``, ``sm.model``, ``sm.model_version``, ``sm.component``,
``sm.version``) through the connector's writable ``headers`` metadata column. A row whose
features cannot be scored is written with a NULL score (Flink SQL has no dead-letter output
from a UDF; filter on ``score IS NULL`` downstream).

Versions never go backwards per partition: Flink assigns each Kafka partition to one source
subtask, the UDF runs chained in that subtask's Python worker and swaps only forward, and the
sink's ``fixed`` partitioner writes each subtask to one predictions partition (the predictions
topic gets as many partitions as the job's parallelism, at least those of the features topic).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Sequence

from streamml._version import __version__
from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.flink.env import kafka_properties, require_pyflink, table_env

__all__ = ["score_stream", "ScoringJob", "register"]


def register(tenv: Any, settings: Settings, *, name: str = "streamml_score", **kw: Any) -> None:
    """Register ``streamml_score(model_name, *features)`` in ``tenv`` for the Table API and Flink SQL.

    ``kw`` goes to :class:`~streamml.flink.udf.ScoreFunction` (``models``, ``stage``, ``features``,
    ``wait_for_model_s``).
    """
    require_pyflink()
    from streamml.flink.udf import make_udf

    tenv.create_temporary_function(name, make_udf(settings, **kw))


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _with(opts: dict[str, str]) -> str:
    return ",\n  ".join(f"{_lit(k)} = {_lit(v)}" for k, v in opts.items())


class ScoringJob:
    """A submitted scoring job: its ``TableResult``, job id, topics and the table environment."""

    def __init__(self, result: Any, tenv: Any, input_topic: str, output_topic: str, prefix: str) -> None:
        self.result, self.tenv = result, tenv
        self.input_topic, self.output_topic, self.transactional_id_prefix = input_topic, output_topic, prefix
        client = result.get_job_client()
        self.client = client
        self.job_id = str(client.get_job_id()) if client is not None else None

    def status(self) -> str:
        """``RUNNING``, ``FAILED``, ``CANCELED``... (Flink's JobStatus name)."""
        return str(self.client.get_job_status().result()).rsplit(".", 1)[-1] if self.client else "UNKNOWN"

    def wait(self, timeout_ms: int | None = None) -> None:
        """Block until the job ends (a script run by ``flink run`` without ``-d`` waits here)."""
        if timeout_ms is None:
            self.result.wait()
        else:
            self.result.wait(timeout_ms)

    def cancel(self) -> None:
        if self.client is not None:
            self.client.cancel().result()


def score_stream(settings: Settings, model: str, input_topic: str, *, features: Sequence[str] | None = None,
                 output_topic: str | None = None, stage: str = "production", tenv: Any = None,
                 parallelism: int = 2, checkpoint_ms: int = 5000, starting_offsets: str = "earliest-offset",
                 wait_for_model_s: float = 60.0, id_column: str = "event_id", time_column: str = "event_time",
                 job_name: str | None = None, extra_properties: dict[str, str] | None = None) -> ScoringJob:
    """Submit the scoring job (see the module docstring); returns a :class:`ScoringJob`.

    ``features`` default to the input columns of the model's current ``stage`` version (read once
    from the registry: a later version must read the same columns). ``tenv`` defaults to
    :func:`~streamml.flink.env.table_env` (a local mini-cluster, or the cluster under ``flink run``).
    """
    require_pyflink()
    from streamml.kafka.admin import ensure_topic, list_topics
    from streamml.registry import Registry
    from streamml.registry.descriptor import check_stage

    check_stage(stage)
    topics = list_topics(settings)
    if input_topic not in topics:
        raise ConfigError(f"input topic {input_topic} does not exist", hint="run the feature pipeline first")
    if features is None:
        d = Registry(settings).latest(model, stage)
        if d is None:
            raise ConfigError(f"{model} has no {stage} version to take the feature columns from",
                              hint=f"publish {model} at {stage}, or pass features=[...]")
        features = [c["name"] for c in d.input_schema]
    features = list(features)
    out = output_topic or settings.topic("predictions", model)
    ensure_topic(settings, out, max(int(topics[input_topic]), parallelism))
    tenv = tenv if tenv is not None else table_env(settings, parallelism=parallelism, checkpoint_ms=checkpoint_ms)
    job = job_name or f"streamml-flink-score-{settings.namespace}-{model}"
    tag = re.sub(r"[^A-Za-z0-9_]", "_", f"{model}_{uuid.uuid4().hex[:8]}")
    prefix = f"{job}-{uuid.uuid4().hex[:8]}"  # per job: a second job never fences this one's transactions
    src, sink, fn = f"sm_features_{tag}", f"sm_predictions_{tag}", f"streamml_score_{tag}"
    register(tenv, settings, name=fn, models=[model], stage=stage, features=features,
             wait_for_model_s=wait_for_model_s)
    reserved = {id_column, time_column, "sm_key"}
    cols = [f"{_ident(c)} DOUBLE" for c in features if c not in reserved]
    tenv.execute_sql(f"""CREATE TEMPORARY TABLE {src} (
  sm_key BYTES, {_ident(id_column)} STRING, {_ident(time_column)} BIGINT{''.join(', ' + c for c in cols)}
) WITH (
  {_with({'connector': 'kafka', 'topic': input_topic, **kafka_properties(settings, extra_properties),
          'properties.group.id': job, 'properties.isolation.level': 'read_committed',
          'scan.startup.mode': starting_offsets, 'key.format': 'raw', 'key.fields': 'sm_key',
          'value.format': 'json', 'value.fields-include': 'EXCEPT_KEY',
          'value.json.ignore-parse-errors': 'true'})}
)""")
    tenv.execute_sql(f"""CREATE TEMPORARY TABLE {sink} (
  sm_key BYTES, event_id STRING, model STRING, model_version INT, score DOUBLE, event_time BIGINT,
  headers MAP<STRING, BYTES> METADATA
) WITH (
  {_with({'connector': 'kafka', 'topic': out, **kafka_properties(settings, extra_properties),
          'key.format': 'raw', 'key.fields': 'sm_key', 'value.format': 'json',
          'value.fields-include': 'EXCEPT_KEY', 'sink.partitioner': 'fixed',
          'sink.delivery-guarantee': 'exactly-once', 'sink.transactional-id-prefix': prefix,
          'properties.transaction.timeout.ms': '300000'})}
)""")
    component = f"flink.serve.{model}"

    def h(key: str, expr: str) -> str:
        return f"{_lit(key)}, ENCODE({expr}, 'UTF-8')"

    args = ", ".join(_ident(c) for c in features)
    headers = ", ".join([h("sm.component", _lit(component)), h("sm.version", _lit(__version__)),
                         h("sm.event_id", f"CAST(s.{_ident(id_column)} AS STRING)"),
                         h("sm.event_time", f"CAST(s.{_ident(time_column)} AS STRING)"),
                         h("sm.model", "s.r.model"), h("sm.model_version", "CAST(s.r.model_version AS STRING)")])
    tenv.get_config().set("pipeline.name", job)
    result = tenv.execute_sql(f"""INSERT INTO {sink}
SELECT s.sm_key, s.{_ident(id_column)}, s.r.model, s.r.model_version, s.r.score, s.{_ident(time_column)},
       MAP[{headers}]
FROM (SELECT *, {fn}({_lit(model)}, {args}) AS r FROM {src}) AS s""")
    return ScoringJob(result, tenv, input_topic, out, prefix)
