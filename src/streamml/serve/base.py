"""What the scorer needs from a model, and where models come from.

Two small protocols keep the scorer independent of storage:

* :class:`LoadedModel` — a model ready to score: ``name``, ``version``, the ordered
  ``input_columns`` it expects, and ``predict(X) -> Scores`` over a whole batch
  (``X`` is a float32 matrix, one row per event, columns in ``input_columns`` order).
  This is the one model contract of streamml, defined in :mod:`streamml.registry.base`
  and re-exported here with :class:`Scores`; what ``Registry.load`` returns is one.
* :class:`ModelSource` — where versions come from: :meth:`ModelSource.latest` (what a
  starting scorer serves) and :meth:`ModelSource.follow` (new versions as they are
  published or promoted). Each version arrives as a :class:`Candidate`: its
  :class:`ModelRef` (the descriptor fields the scorer checks) and a ``load()`` that
  fetches the artifact, checks its hash and returns a :class:`LoadedModel`.

The registry adapter (:mod:`streamml.serve.registry_source`) implements ``ModelSource``
over the models topic; :class:`MemorySource` implements it in memory.

>>> import numpy as np
>>> m = Constant("fallback", score=0.5, label=0)
>>> s = m.predict(np.zeros((3, 2), dtype=np.float32))
>>> s.score.tolist(), s.label.tolist()
([0.5, 0.5, 0.5], [0, 0, 0])
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from streamml.registry.base import LoadedModel, Model, Scores

__all__ = [
    "Scores", "LoadedModel", "ModelRef", "Candidate", "ModelSource", "MemorySource", "Constant", "Slow",
    "STAGES",
]

#: Stages a model version can be in, in order of trust.
STAGES = ("candidate", "shadow", "canary", "production", "archived")


@dataclass(frozen=True)
class ModelRef:
    """The descriptor fields a scorer checks before it serves a version."""

    name: str
    version: int
    stage: str = "production"
    format: str = "onnx"
    sha256: str = ""
    input_columns: tuple[str, ...] = ()
    input_types: tuple[str, ...] = ()
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.stage})"


@dataclass
class Candidate:
    """A model version on offer: what it claims (``ref``) and how to get it (``load``)."""

    ref: ModelRef
    load: Callable[[], LoadedModel]


class ModelSource(Protocol):
    """Where model versions come from."""

    def latest(self, name: str, stage: str) -> Candidate | None:
        """The newest version of ``name`` at ``stage`` right now, if any."""
        ...

    def follow(self, stop: threading.Event) -> Iterator[Candidate]:
        """Every version change (any name, any stage) from now on, until ``stop`` is set.

        Implementations yield ``None``-free candidates and return when ``stop`` is set;
        they should wake up at least every second to check it.
        """
        ...


class MemorySource:
    """A :class:`ModelSource` held in memory: ``publish`` a candidate, followers see it.

    >>> src = MemorySource()
    >>> src.publish(Candidate(ModelRef("m", 1), lambda: Constant("m", version=1)))
    >>> src.latest("m", "production").ref.version
    1
    >>> src.latest("m", "canary") is None
    True
    """

    def __init__(self) -> None:
        self._log: list[Candidate] = []
        self._cond = threading.Condition()

    def publish(self, candidate: Candidate) -> None:
        with self._cond:
            self._log.append(candidate)
            self._cond.notify_all()

    def latest(self, name: str, stage: str) -> Candidate | None:
        with self._cond:
            current: dict[int, Candidate] = {}
            for c in self._log:
                if c.ref.name == name:
                    current[c.ref.version] = c  # the last word on a version is its stage
            hits = [c for c in current.values() if c.ref.stage == stage]
        return max(hits, key=lambda c: c.ref.version) if hits else None

    def follow(self, stop: threading.Event) -> Iterator[Candidate]:
        with self._cond:
            seen = len(self._log)
        while not stop.is_set():
            with self._cond:
                if seen >= len(self._log):
                    self._cond.wait(0.5)
                fresh, seen = self._log[seen:], len(self._log)
            yield from fresh


class Constant(Model):
    """A model that answers the same score for every row: the last-resort fallback."""

    def __init__(self, name: str = "fallback", *, score: float = 0.0, label: int | None = None,
                 version: int = 0, input_columns: tuple[str, ...] = ()) -> None:
        self.name, self.version, self.input_columns = name, version, tuple(input_columns)
        self.value, self.label_value = float(score), label

    def predict(self, x: np.ndarray) -> Scores:
        """``score`` (and ``label`` when set) for each of the ``x.shape[0]`` rows."""
        n = x.shape[0]
        label = None if self.label_value is None else np.full(n, self.label_value, dtype=np.int64)
        return Scores(np.full(n, self.value, dtype=np.float64), label)

    def __repr__(self) -> str:
        return f"Constant({self.name!r}, score={self.value})"


class Slow(Model):
    """Wraps a model and makes every call take at least ``delay_s`` longer (for deadline tests and demos).

    The sleep releases the GIL, as onnxruntime does while it computes.
    """

    def __init__(self, model: LoadedModel, delay_s: float) -> None:
        self.inner, self.delay_s = model, delay_s
        self.name, self.version, self.input_columns = model.name, model.version, model.input_columns
        self.calls = 0

    def predict(self, x: np.ndarray) -> Scores:
        """The wrapped model's answer, ``delay_s`` later."""
        self.calls += 1
        time.sleep(self.delay_s)
        return self.inner.predict(x)
