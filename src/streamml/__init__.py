"""streamml: continuous machine learning on Apache Kafka.

>>> import streamml
>>> "connect" in streamml.__all__
True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamml")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

from streamml import errors
from streamml.api import connect
from streamml.config import Settings

__all__ = ["__version__", "Settings", "connect", "errors"]
