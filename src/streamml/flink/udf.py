"""``streamml_score(model_name, *features)``: a vectorised Flink UDF scoring with the production model.

What runs where: the job's planner (the client or the JobManager) sees only the function's
declaration; each Python UDF worker of the TaskManagers unpickles one :class:`ScoreFunction`
whose :meth:`~ScoreFunction.open` starts this process's :class:`~streamml.serve.swap.ModelHost`
over the registry (:func:`streamml.serve.hosts.shared_host`, the same host the Spark bridge
keeps per executor worker): a :class:`~streamml.serve.registry_source.RegistrySource` followed by
a background thread, each version verified by :func:`streamml.serve.swap.verify` (hash against
the descriptor, input schema, a test inference) before it is offered. ``open()`` also catches up
with the registry (a restarted or rescaled task never meets an older version than the one before
it), and each Arrow batch first swaps in the verified successor, then scores with one version:
a promotion swaps the model **without restarting the job**.

The result is ``ROW<score DOUBLE, model STRING, model_version INT>``; a row the model cannot
score (a null or non-numeric feature) gets a NULL score with the model and version still set.
Features are given in the model's input order (``features=`` names them, and then they are
matched by name). The function is declared non-deterministic (the model changes under it),
which also keeps the planner from calling it once per field of the row it returns.

The module imports without PyFlink (for documentation and doctests); :func:`make_udf` says
what is missing.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

from streamml.config import Settings
from streamml.errors import ModelError
from streamml.flink.env import require_pyflink

try:
    from pyflink.table.udf import ScalarFunction
except ImportError:  # no PyFlink here: the class still imports, make_udf() refuses with the reason
    ScalarFunction = object

__all__ = ["ScoreFunction", "result_type", "make_udf"]

_log = logging.getLogger("streamml.flink")


def result_type() -> Any:
    """``ROW<score DOUBLE, model STRING, model_version INT>``."""
    from pyflink.table import DataTypes

    return DataTypes.ROW([DataTypes.FIELD("score", DataTypes.DOUBLE()),
                          DataTypes.FIELD("model", DataTypes.STRING()),
                          DataTypes.FIELD("model_version", DataTypes.INT())])


class ScoreFunction(ScalarFunction):  # type: ignore[misc]
    """The vectorised scoring function (see the module docstring)."""

    def __init__(self, settings: Settings, *, models: Sequence[str] = (), stage: str = "production",
                 features: Sequence[str] | None = None, wait_for_model_s: float = 60.0) -> None:
        self.settings = settings
        self.models = tuple(models)
        self.stage = stage
        self.features = tuple(features) if features else None
        self.wait_s = wait_for_model_s
        self._hosts: dict[str, Any] = {}

    def is_deterministic(self) -> bool:
        return False  # the model changes under it

    def open(self, function_context: Any) -> None:
        self._hosts = {}
        for name in self.models:
            self._host(name)

    def _host(self, name: str) -> Any:
        host = self._hosts.get(name)
        if host is None:
            from streamml.serve.hosts import shared_host

            host = shared_host(self.settings, name, self.stage, self.wait_s)
            host.catch_up()  # this task may replace another: serve at least what it served
            self._hosts[name] = host
        return host

    def eval(self, model_name: Any, *features: Any) -> pd.DataFrame:
        # a literal argument (the model's name, mostly) comes as a scalar, a column as a Series
        n = next((len(a) for a in (model_name, *features) if isinstance(a, pd.Series)), 1)
        model_name = model_name if isinstance(model_name, pd.Series) else pd.Series([model_name] * n, dtype=object)
        features = tuple(f if isinstance(f, pd.Series) else pd.Series([f] * n) for f in features)
        score = np.full(n, np.nan)
        names: list[str | None] = [None] * n
        versions = np.zeros(n, dtype=np.int64)
        valid = np.zeros(n, dtype=bool)
        for name in pd.unique(model_name.astype(object)):
            rows = np.flatnonzero((model_name == name).to_numpy())
            if name is None or not rows.size:
                continue
            host = self._host(str(name))
            host.swap()  # between batches: one batch, one version
            current = host.get(str(name), self.stage)
            if current is None:  # never score a batch with no model: fail the task (Flink restarts it)
                raise ModelError(f"no servable version of {name}@{self.stage} in this worker",
                                 hint=f"publish {name} and promote it to {self.stage}")
            x = self._matrix(current, [f.iloc[rows] for f in features])
            good = ~np.isnan(x).any(axis=1)
            if good.any():
                score[rows[good]] = np.asarray(current.predict(np.ascontiguousarray(x[good])).score, dtype=np.float64)
            valid[rows[good]] = True
            for i in rows.tolist():
                names[i] = current.name
            versions[rows] = int(current.version)
        return pd.DataFrame({"score": pd.Series(score).where(valid, None),
                             "model": pd.Series(names, dtype=object),
                             "model_version": pd.Series(versions, dtype="int32")})

    def _matrix(self, current: Any, cols: list[pd.Series]) -> np.ndarray:
        wanted = tuple(current.input_columns)
        if self.features is not None:
            if len(self.features) != len(cols):
                raise ModelError(f"streamml_score got {len(cols)} features but was told of {len(self.features)}",
                                 hint="pass the features named in features=, in that order")
            missing = [c for c in wanted if c not in self.features]
            if missing:
                raise ModelError(f"{current.name} v{current.version} reads {missing[0]}, which is not passed",
                                 hint=f"call streamml_score('{current.name}', {', '.join(wanted)})")
            by_name = dict(zip(self.features, cols))
            cols = [by_name[c] for c in wanted]
        elif len(cols) != len(wanted):
            raise ModelError(f"{current.name} v{current.version} reads {len(wanted)} features, got {len(cols)}",
                             hint=f"call streamml_score('{current.name}', {', '.join(wanted)})")
        return np.column_stack([pd.to_numeric(c, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                                for c in cols]).astype(np.float32) if cols else np.zeros((0, 0), np.float32)


def make_udf(settings: Settings, **kw: Any) -> Any:
    """The user-defined function object to register: ``tenv.create_temporary_function('streamml_score', f)``."""
    require_pyflink()
    from pyflink.table.udf import udf

    return udf(ScoreFunction(settings, **kw), result_type=result_type(), func_type="pandas", deterministic=False)
