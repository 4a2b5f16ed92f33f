"""The registry as a :class:`~streamml.serve.base.ModelSource`: the models topic, followed live.

``latest`` asks the registry which version holds a stage; ``follow`` watches the catalog
from the moment this source was created (so nothing published between the two is
missed) and offers every descriptor record: the registry rewrites a version's descriptor
with its new stage whenever it is promoted, published at a stage, or rolled back to.
Loading goes through :meth:`Registry.load` — signature, size and SHA-256 checked there —
whose result (an :class:`~streamml.registry.models.OnnxModel` or
:class:`~streamml.registry.models.PythonModel`) already is the
:class:`~streamml.registry.base.LoadedModel` the scorer serves.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

from streamml.config import Settings
from streamml.registry.base import LoadedModel
from streamml.registry.models import PythonModel
from streamml.serve.base import Candidate, ModelRef

__all__ = ["RegistrySource", "ref_of", "PythonModel"]


def ref_of(d: Any) -> ModelRef:
    """The :class:`ModelRef` of a registry descriptor."""
    cols = tuple(c["name"] for c in d.input_schema)
    types = tuple(str(c.get("type", "")) for c in d.input_schema)
    threshold = (d.tags or {}).get("threshold")
    return ModelRef(d.name, int(d.version), d.stage, d.format, d.sha256, cols, types,
                    float(threshold) if threshold is not None else None, {"task": d.task})


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
        """The :class:`Candidate` of descriptor ``d``: its ref, and a loader through the registry."""

        def load() -> LoadedModel:
            model: LoadedModel = self.registry.load(d)
            return model

        return Candidate(ref_of(d), load)

    def latest(self, name: str, stage: str) -> Candidate | None:
        """The newest version of ``name`` at ``stage``, if any."""
        d = self.registry.latest(name, stage)
        return self.candidate(d) if d is not None else None

    def follow(self, stop: threading.Event) -> Iterator[Candidate]:
        """Candidates as they are published; a follow that failed resumes at the first event it
        had not finished (the position moves once the candidate was considered)."""
        for ev in self.registry.watch(from_offset=self._start, stop=stop, poll=0.2):
            if ev.kind == "descriptor" and ev.descriptor is not None:
                yield self.candidate(ev.descriptor)
            self._start = ev.offset + 1
