"""Optional integrations: which extra installs each, and one error when it is missing.

The core (Kafka, schemas, streams, training with scikit-learn, ONNX serving, monitoring) needs
no extra. Each integration names its extra, so that a missing one ends in one line that says
what to install:

>>> EXTRAS["paho"], EXTRAS["fastapi"], EXTRAS["cryptography"]
('mqtt', 'http', 'secure')
>>> require("json", "reading JSON").__name__
'json'
>>> try:
...     require("no_such_module", "the MQTT bridge", extra="mqtt")
... except MissingExtraError as exc:
...     print(exc.message); print(exc.hint)
the MQTT bridge needs no_such_module, which is not installed
pip install 'streamml[mqtt]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from streamml.errors import MissingExtraError

__all__ = ["EXTRAS", "require", "missing"]

#: Top-level module -> the extra that installs it.
EXTRAS: dict[str, str] = {
    "paho": "mqtt",
    "fastapi": "http", "uvicorn": "http", "starlette": "http",
    "cryptography": "secure",
    "river": "river",
    "pandas": "pandas",
    "torch": "deep", "keras": "deep", "onnxscript": "deep",
    "pyspark": "spark",
}


def missing(exc: ImportError, feature: str, *, extra: str | None = None) -> MissingExtraError:
    """The error for ``exc`` (an import that failed): what needs what, and the extra to install."""
    name = (exc.name or str(exc)).split(".")[0]
    extra = extra or EXTRAS.get(name)
    hint = f"pip install 'streamml[{extra}]'" if extra else f"pip install {name}"
    return MissingExtraError(f"{feature} needs {name}, which is not installed", hint=hint, name=name)


def require(module: str, feature: str, *, extra: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing(exc, feature, extra=extra) from None
