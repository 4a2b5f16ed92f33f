"""The Spark side of a :class:`~streamml.config.Settings`: Kafka options for Spark's source and sink, a session.

Spark's Kafka connector runs the Java client: :func:`kafka_options` is
:func:`streamml.kafka.java.java_client_options` with Spark's ``kafka.`` prefix; anything else
goes in ``extra`` as ``kafka.<java option>``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.kafka.java import java_client_options

__all__ = ["kafka_options", "session", "require_pyspark"]


def require_pyspark() -> Any:
    """The ``pyspark`` module, or a :class:`ConfigError` naming the extra to install."""
    try:
        import pyspark
    except ImportError:
        raise ConfigError("the Spark bridge needs PySpark, which is not installed",
                          hint="pip install 'streamml[spark]'") from None
    return pyspark


def kafka_options(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``kafka.*`` options for Spark's Kafka source and sink, from ``settings``.

    >>> kafka_options(Settings(bootstrap_servers="b:9092", kafka={"linger.ms": "5"}))
    {'kafka.bootstrap.servers': 'b:9092'}
    >>> o = kafka_options(Settings(bootstrap_servers="b:9092", kafka={"security.protocol": "SASL_SSL",
    ...     "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p"}))
    >>> o["kafka.sasl.mechanism"], o["kafka.sasl.jaas.config"].split()[0]
    ('SCRAM-SHA-512', 'org.apache.kafka.common.security.scram.ScramLoginModule')
    """
    plain = {k[6:] if k.startswith("kafka.") else k: v for k, v in (extra or {}).items()}
    return {f"kafka.{k}": v for k, v in java_client_options(settings, plain, engine="Spark").items()}


def session(settings: Settings, *, master: str = "local[2]", app_name: str = "streamml",
            shuffle_partitions: int = 2, conf: Mapping[str, str] | None = None) -> Any:
    """A SparkSession with Spark's Kafka connector on ``spark.jars`` (fetched into the cache once).

    On a cluster, build the session yourself and pass ``--jars`` (see the README); this is for
    local runs, notebooks and tests.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    from streamml.spark.connector import connector_jars

    jars = connector_jars(Path(settings.cache_dir))
    b = (SparkSession.builder.master(master).appName(app_name)
         .config("spark.jars", ",".join(str(j) for j in jars))
         .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
         .config("spark.ui.enabled", "false")
         .config("spark.sql.session.timeZone", "UTC"))
    if master.startswith("local"):  # the workers run this interpreter (with streamml), not python3 on PATH
        b = b.config("spark.pyspark.python", sys.executable)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    return b.getOrCreate()
