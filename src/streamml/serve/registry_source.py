"""The registry as a :class:`~streamml.serve.base.ModelSource`: the models topic, followed live.

``latest`` asks the registry which version holds a stage; ``follow`` watches the catalog
from the moment this source was created (so nothing published between the two is
missed) and offers every descriptor record: the registry rewrites a version's descriptor
with its new stage whenever it is promoted, published at a stage, or rolled back to.
Loading goes through :meth:`Registry.load` — signature, size and SHA-256 checked there —
and the loaded ONNX session is wrapped as an :class:`~streamml.serve.onnxmodel.OnnxModel`.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

import numpy as np

from streamml.config import Settings
from streamml.errors import ModelError
from streamml.serve.base import Candidate, ModelRef, Scores
from streamml.serve.onnxmodel import OnnxModel

__all__ = ["RegistrySource", "ref_of", "PythonModel"]


def ref_of(d: Any) -> ModelRef:
    """The :class:`ModelRef` of a registry descriptor."""
    cols = tuple(c["name"] for c in d.input_schema)
    types = tuple(str(c.get("type", "")) for c in d.input_schema)
    threshold = (d.tags or {}).get("threshold")
    return ModelRef(d.name, int(d.version), d.stage, d.format, d.sha256, cols, types,
                    float(threshold) if threshold is not None else None, {"task": d.task})


class PythonModel:
    """A registry model that is not ONNX (a signed pickle, e.g. River), scored through its ``score``."""

    def __init__(self, loaded: Any, ref: ModelRef) -> None:
        self.inner, self.name, self.version = loaded, ref.name, ref.version
        self.input_columns, self.sha256, self.threshold = ref.input_columns, ref.sha256, ref.threshold

    def predict(self, x: np.ndarray) -> Scores:
        score = np.asarray(self.inner.score(x), dtype=np.float64)
        label = (score >= self.threshold).astype(np.int64) if self.threshold is not None else None
        return Scores(score, label)


class RegistrySource:
    """Serve what :class:`streamml.registry.Registry` says is in each stage."""

    def __init__(self, settings: Settings | None = None, *, registry: Any = None) -> None:
        from streamml.registry import Registry
        from streamml.train.reader import resolve_ranges

        if registry is None:
            if settings is None:
                raise ValueError("give settings or a registry")
            registry = Registry(settings)
        self.registry = registry
        (rng,) = resolve_ranges(registry.settings, [registry.topic], partitions=[0], timeout=registry.timeout)
        self._start = rng.end

    def candidate(self, d: Any) -> Candidate:
        ref = ref_of(d)

        def load() -> Any:
            lm = self.registry.load(d)
            if lm.format == "onnx":
                return OnnxModel(lm.session, name=ref.name, version=ref.version, input_columns=ref.input_columns,
                                 threshold=ref.threshold, sha=d.sha256)
            if lm.format == "pickle":
                return PythonModel(lm, ref)
            raise ModelError(f"{ref}: cannot serve format {lm.format!r}")

        return Candidate(ref, load)

    def latest(self, name: str, stage: str) -> Candidate | None:
        d = self.registry.latest(name, stage)
        return self.candidate(d) if d is not None else None

    def follow(self, stop: threading.Event) -> Iterator[Candidate]:
        """Candidates as they are published; a follow that failed resumes at the first event it
        had not finished (the position moves once the candidate was considered)."""
        for ev in self.registry.watch(from_offset=self._start, stop=stop, poll=0.2):
            if ev.kind == "descriptor" and ev.descriptor is not None:
                yield self.candidate(ev.descriptor)
            self._start = ev.offset + 1
