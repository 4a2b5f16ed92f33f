"""streamml on Apache Flink (extra ``streamml[flink]``, venv ``.venv-flink``): models as data in Flink jobs.

* :func:`register` — ``streamml_score(model_name, *features)``, a vectorised Python UDF for the
  Table API and Flink SQL scoring with a model's production version, followed on the models topic
  inside the UDF workers and swapped without restarting the job (:mod:`streamml.flink.udf`);
* :func:`score_stream` — a Flink job from a features topic (read committed) to the predictions
  topic through Flink's Kafka sink, **exactly once**, lineage in the record headers;
* :func:`table_env` and :func:`connector_jars` — a streaming table environment with Flink's Kafka
  connector, fetched from Maven Central into the cache.

PyFlink is imported only when one of these is called: importing this package without it works,
and the first call raises a :class:`~streamml.errors.ConfigError` naming the venv and the extra.
See docs/flink-bridge.md for ``flink run`` on a cluster.
"""

from __future__ import annotations

from streamml.flink.connector import connector_jars, connector_version
from streamml.flink.env import kafka_properties, require_pyflink, table_env
from streamml.flink.score import ScoringJob, register, score_stream

__all__ = ["require_pyflink", "connector_jars", "connector_version", "kafka_properties", "table_env", "register",
           "score_stream", "ScoringJob"]
