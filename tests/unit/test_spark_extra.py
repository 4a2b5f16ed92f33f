"""Without PySpark the Spark bridge says which extra to install (no broker, no Spark needed)."""

from __future__ import annotations

import sys

import pytest

from streamml.errors import ConfigError
from streamml.spark import require_pyspark
from streamml.spark.connector import _candidates


def test_missing_pyspark_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now raises ImportError
    with pytest.raises(ConfigError) as err:
        require_pyspark()
    assert "streamml[spark]" in str(err.value)


def test_connector_version_falls_back_within_the_major() -> None:
    assert _candidates("4.3.0")[:3] == ["4.3.0", "4.2.3", "4.2.2"]
    assert _candidates("4.2.1")[:3] == ["4.2.1", "4.2.0", "4.1.3"]
