"""The Flink side of a :class:`~streamml.config.Settings`: the PyFlink check, Kafka properties, a table environment.

PyFlink (``apache-flink``) pins older numpy, pandas, pyarrow, protobuf and cloudpickle than
streamml's own environment uses, so it lives in a venv of its own (``make flink-env`` makes
``.venv-flink``; users install ``streamml[flink]`` into a clean environment).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.kafka.java import java_client_options

__all__ = ["require_pyflink", "kafka_properties", "table_env"]


def require_pyflink() -> Any:
    """The ``pyflink`` module, or a :class:`ConfigError` naming the venv and the extra."""
    try:
        import pyflink
    except ImportError:
        raise ConfigError("the Flink bridge needs PyFlink (apache-flink), which is not installed in this environment",
                          hint="run it from the Flink venv (make flink-env; .venv-flink/bin/python), or "
                               "pip install 'streamml[flink]' into a clean environment (apache-flink pins "
                               "older numpy/pandas/pyarrow than streamml's main venv)") from None
    return pyflink


def kafka_properties(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``properties.*`` options of Flink's Kafka table connector, from ``settings`` then ``extra``.

    >>> kafka_properties(Settings(bootstrap_servers="b:9092"), {"properties.client.id": "x"})
    {'properties.bootstrap.servers': 'b:9092', 'properties.client.id': 'x'}
    """
    plain = {k[11:] if k.startswith("properties.") else k: v for k, v in (extra or {}).items()}
    return {f"properties.{k}": v for k, v in java_client_options(settings, plain, engine="Flink").items()}


def table_env(settings: Settings, *, parallelism: int = 2, checkpoint_ms: int = 5000,
              python_executable: str | None = sys.executable, conf: Mapping[str, str] | None = None) -> Any:
    """A streaming ``TableEnvironment`` with Flink's Kafka connector on ``pipeline.jars``.

    Run in this process it is a local mini-cluster (tests, notebooks, ``python job.py``); the same
    script submitted with ``flink run --python job.py`` runs on the cluster, where the
    connector jar is passed with ``--jarfile`` (see docs/flink-bridge.md). Checkpointing is on
    (``checkpoint_ms``, exactly-once mode): the Kafka sink commits its transactions on checkpoints.
    The Python UDF workers run ``python_executable`` (default: this interpreter, which has
    streamml); under ``flink run`` pass ``None`` so that ``-pyexec`` / ``-pyclientexec`` decide.
    """
    require_pyflink()
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from streamml.flink.connector import connector_jars

    jars = connector_jars(Path(settings.cache_dir))
    tenv = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    c = tenv.get_config()
    c.set("pipeline.jars", ";".join(p.resolve().as_uri() for p in jars))
    c.set("parallelism.default", str(parallelism))
    c.set("execution.checkpointing.interval", f"{int(checkpoint_ms)} ms")
    c.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    if python_executable:
        c.set("python.executable", python_executable)
        c.set("python.client.executable", python_executable)
    c.set("table.local-time-zone", "UTC")
    for k, v in (conf or {}).items():
        c.set(k, str(v))
    return tenv
