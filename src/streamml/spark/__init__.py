"""streamml on Apache Spark (extra ``streamml[spark]``): pinned datasets and models as data.

* :func:`to_spark` / ``Dataset.to_spark(spark)`` — a :class:`SparkDataset` whose ``df`` is a
  DataFrame over exactly a dataset's pinned offset ranges (Spark's Kafka batch source, read
  committed), with the same rows, label join and manifest as streamml's own reader;
* :func:`score_stream` — Structured Streaming scoring with the production model, followed on the
  models topic inside the executors and swapped without restarting the query; predictions with
  lineage headers through Spark's Kafka sink (**at least once**);
* :func:`publish_spark_ml` — publishes a Spark ML model through ONNX, or refuses with the reason;
* :func:`session` and :func:`connector_jars` — a local session with the Kafka connector from the cache.

PySpark is imported only when a session is used: importing this package without it works, and
the first call raises a :class:`~streamml.errors.ConfigError` naming the extra.
"""

from __future__ import annotations

from streamml.spark.connector import connector_jars
from streamml.spark.dataset import SparkDataset, read_ranges_df, to_spark
from streamml.spark.mlmodel import publish_spark_ml
from streamml.spark.score import score_stream
from streamml.spark.session import kafka_options, require_pyspark, session
from streamml.train.dataset import register_bridge

__all__ = ["SparkDataset", "to_spark", "read_ranges_df", "score_stream", "publish_spark_ml", "session",
           "connector_jars", "kafka_options", "require_pyspark"]

register_bridge("spark", to_spark)
