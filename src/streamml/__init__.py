"""streamml: continuous machine learning on Apache Kafka.

The public API is small; everything else lives in the sub-packages that follow the pipeline
(``streamml.ingest``, ``.stream``, ``.train``, ``.registry``, ``.serve``, ``.monitor``,
``.query``). Names load on first use, so ``import streamml`` stays fast.

>>> import streamml
>>> "connect" in streamml.__all__ and callable(streamml.stream)
True
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from streamml import errors
from streamml._version import __version__
from streamml.api import connect
from streamml.config import Settings
from streamml.stream import stream  # eager: the function, not the sub-package of the same name
from streamml.verify import verify  # likewise

_LAZY = {
    # ingest
    "ingest_files": "streamml.ingest", "generate_transactions": "streamml.ingest",
    "generate_sensors": "streamml.ingest", "Schema": "streamml.schema", "Field": "streamml.schema",
    "load_schema": "streamml.schema",
    # preprocess
    "Pipeline": "streamml.stream", "Table": "streamml.stream",
    "TestDriver": "streamml.stream", "run": "streamml.stream", "replay": "streamml.stream",
    # train and models as data
    "Dataset": "streamml.train", "TrainingJob": "streamml.train", "Retrainer": "streamml.train",
    "OnlineLearner": "streamml.train", "Registry": "streamml.registry",
    # serve
    "Scorer": "streamml.serve", "ServeOptions": "streamml.serve", "RegistrySource": "streamml.serve",
    # interactive
    "topic": "streamml.query", "topics": "streamml.query", "sql": "streamml.query", "tail": "streamml.query",
    "deploy": "streamml.query",
}

__all__ = ["__version__", "Settings", "connect", "errors", "stream", "verify", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamml' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
