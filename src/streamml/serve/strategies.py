"""Serving strategies: which model answers for each row of a batch.

Every strategy names the roles it needs (``roles``; the first is the primary, whose
topic the predictions go to) and turns a batch plus the roles' current models into a
:class:`Decision`. Each model scores the rows it is given in one call.

* :class:`Single` — the production model answers.
* :class:`Shadow` — a candidate scores the same rows; only the primary's answer is
  published, both are recorded side by side for comparison.
* :class:`Canary` — a stable hash of each key sends a configured share of keys to the candidate.
* :class:`Speculative` — several models run concurrently in a thread pool (ONNX Runtime
  releases the GIL); the most preferred answer ready by the deadline wins, and a fallback
  answers when none is ready: a guaranteed execution time.
* :class:`Consensus` — a weighted average of the scores, a majority vote on the labels.
* :class:`QualityBased` — every model scores, the one with the best live quality (from
  delayed labels, :class:`~streamml.serve.quality.LiveQuality`) answers.

Strategies are registered by name (:func:`register_strategy`; :data:`STRATEGIES` is the
read-only name -> class registry). :func:`strategy_class` looks one up and names the valid
choices when it does not know the name; :func:`build_strategy` builds one from its roles
and a :class:`StrategyOptions` after checking the number of models against the class's
``min_models`` / ``max_models``; :func:`roles_for` gives the roles for a model name and
``--also`` names, the way ``streamml serve`` does. The contract test
(``tests/unit/test_serve_strategy_contract.py``) runs over every registered strategy.

>>> import numpy as np, polars as pl
>>> from streamml.serve.base import Constant
>>> b = Batch(pl.DataFrame({"event_id": ["a", "b"], "x": [1.0, 2.0]}), [b"k1", b"k2"])
>>> d = Consensus([Role("m1"), Role("m2")]).decide(
...     {Role("m1"): Constant("m1", score=0.2, label=0, version=1),
...      Role("m2"): Constant("m2", score=0.8, label=1, version=4)}, b)
>>> d.scores.score.tolist(), d.extra["members"][0]
([0.5, 0.5], 'm1:1,m2:4')
>>> type(build_strategy("shadow", roles_for("shadow", "fraud"))).__name__
'Shadow'
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

import numpy as np
import polars as pl

from streamml.errors import ConfigError, ServingError
from streamml.serve.base import Constant, LoadedModel, Scores
from streamml.serve.quality import LiveQuality
from streamml.serve.swap import Role

__all__ = ["Batch", "Decision", "Strategy", "StrategyOptions", "Single", "Shadow", "Canary", "Speculative",
           "Consensus", "QualityBased", "bucket", "STRATEGIES", "register_strategy", "strategy_class",
           "build_strategy", "roles_for"]

S = TypeVar("S", bound="type[Strategy]")
_REGISTRY: dict[str, type["Strategy"]] = {}
#: The registered strategies, name -> class (read-only; add one with :func:`register_strategy`).
STRATEGIES: Mapping[str, type["Strategy"]] = MappingProxyType(_REGISTRY)


class Batch:
    """The valid rows of one consumed batch: features ``df`` and message ``keys``, same order."""

    def __init__(self, df: pl.DataFrame, keys: Sequence[bytes | None], id_column: str = "event_id",
                 x: dict[tuple[str, ...], np.ndarray] | None = None) -> None:
        self.df, self.keys, self.id_column = df, list(keys), id_column
        self._x: dict[tuple[str, ...], np.ndarray] = {}
        self._x.update(x or {})  # matrices already built for these columns (same rows)

    def __len__(self) -> int:
        return self.df.height

    def x(self, model: LoadedModel, rows: np.ndarray | None = None) -> np.ndarray:
        """The float32 matrix for ``model`` (its input columns, in order), optionally only ``rows``."""
        cols = tuple(model.input_columns)
        if cols not in self._x:
            for have, mat in list(self._x.items()):
                if set(cols) <= set(have):  # a column subset of a matrix already built
                    self._x[cols] = mat[:, [have.index(c) for c in cols]]
                    break
        if cols not in self._x:
            self._x[cols] = (self.df.select([pl.col(c).cast(pl.Float32) for c in cols]).to_numpy()
                             .astype(np.float32, copy=False) if cols else np.zeros((len(self), 0), np.float32))
        x = self._x[cols]
        return x if rows is None else x[rows]

    def event_ids(self) -> list[str]:
        if self.id_column in self.df.columns:
            return self.df[self.id_column].cast(pl.String).to_list()
        return [(k or b"").decode("utf-8", "replace") for k in self.keys]


@dataclass
class Decision:
    """A batch's answers: ``scores``; who gave them (``by``, and per row ``which`` when mixed);
    extra output columns; ``shadow`` rows for the comparison topic."""

    scores: Scores
    by: list[LoadedModel]
    which: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    shadow: pl.DataFrame | None = None


def bucket(key: bytes | str | None, buckets: int = 10_000) -> int:
    """A stable bucket of a key (CRC-32), the same in every process and Python version.

    >>> bucket(b"card-7"), bucket("card-7")
    (9473, 9473)
    """
    data = key.encode() if isinstance(key, str) else (key or b"")
    return zlib.crc32(data) % buckets


def _require(models: dict[Role, LoadedModel | None], role: Role) -> LoadedModel:
    m = models.get(role)
    if m is None:
        raise ServingError(f"no model serves {role}", hint=f"publish and promote a version of {role.name}")
    return m


@dataclass(frozen=True)
class StrategyOptions:
    """The settings of every strategy in one parameter object; each strategy reads its own.

    Attributes
    ----------
    canary_share : float
        Canary: share of keys routed to the candidate.
    deadline_s : float
        Speculative: the answer deadline per batch.
    fallback : LoadedModel, optional
        Speculative: who answers when no model is in time (default: a constant 0).
    grace_s : float
        Speculative: scheduling jitter allowed in ``deadline_met``.
    weights : sequence of float, optional
        Consensus: one weight per model (default: equal).
    threshold : float
        Consensus: the score at which a model without labels votes 1.
    quality : LiveQuality, optional
        Quality: the live quality tracker (required by that strategy).
    min_labels : int
        Quality: labels a model needs before its quality counts.
    """

    canary_share: float = 0.1
    deadline_s: float = 0.05
    fallback: LoadedModel | None = None
    grace_s: float = 0.01
    weights: Sequence[float] | None = None
    threshold: float = 0.5
    quality: LiveQuality | None = None
    min_labels: int = 50


class Strategy(ABC):
    """Picks, per batch, which model's answer each row gets.

    Subclasses set ``name`` (the registry key), the number of models they take
    (``min_models``, ``max_models``; None = no limit), ``candidate_stage`` when they are a
    (primary, candidate) pair whose candidate defaults to another stage of the primary
    model, and override :meth:`from_options` when their constructor takes more than roles.
    """

    name: ClassVar[str] = "strategy"
    min_models: ClassVar[int] = 1
    max_models: ClassVar[int | None] = None
    candidate_stage: ClassVar[str | None] = None

    def __init__(self, roles: Sequence[Role]) -> None:
        self.check_models(len(roles))
        self.roles = list(roles)

    @classmethod
    def check_models(cls, n: int) -> None:
        """Raise :class:`ConfigError` unless the strategy takes ``n`` models.

        >>> try:
        ...     Consensus.check_models(1)
        ... except ConfigError as exc:
        ...     print(exc.message)
        the consensus strategy needs at least 2 models, got 1
        """
        lo, hi = cls.min_models, cls.max_models
        if lo <= n and (hi is None or n <= hi):
            return
        want = f"exactly {lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
        bound = lo if n < lo else hi
        if n < lo:
            hint = "add models (streamml serve --also OTHER_MODEL)"
        elif hi == 1:
            hint = "it serves one model: drop --also, or pick a strategy for several"
        else:
            hint = f"give it at most {hi} models (streamml serve: --model and {(hi or 1) - 1} --also)"
        raise ConfigError(f"the {cls.name} strategy needs {want} model{'' if bound == 1 else 's'}, got {n}",
                          hint=hint)

    @classmethod
    def from_options(cls, roles: Sequence[Role], options: StrategyOptions) -> "Strategy":
        """The strategy over ``roles`` with the settings in ``options`` it uses."""
        return cls(roles)

    @property
    def primary(self) -> Role:
        return self.roles[0]

    @abstractmethod
    def decide(self, models: dict[Role, LoadedModel | None], batch: Batch) -> Decision:
        """Score ``batch`` with ``models`` (the current model of each role, None when it has none)."""

    def close(self) -> None:  # noqa: B027 -- an optional hook; most strategies hold nothing
        """Release threads or clients the strategy holds."""


def register_strategy(cls: S) -> S:
    """Class decorator: make ``cls`` available under ``cls.name`` (a name is registered once).

    >>> @register_strategy
    ... class Last(Single):
    ...     name = "last-doctest"
    >>> strategy_class("last-doctest") is Last
    True
    >>> _ = _REGISTRY.pop("last-doctest")
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a Strategy subclass")
    taken = _REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ConfigError(f"a strategy named {cls.name!r} is already registered ({taken.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[Strategy]:
    """The strategy class registered as ``name``.

    >>> try:
    ...     strategy_class("bogus")
    ... except ConfigError as exc:
    ...     print(exc.message, "|", exc.hint)
    unknown strategy 'bogus' | choose one of: single, shadow, canary, speculative, consensus, quality
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown strategy {name!r}", hint="choose one of: " + ", ".join(_REGISTRY))
    return cls


def roles_for(name: str, model: str, also: Sequence[str] = (), *, candidate_stage: str | None = None) -> list[Role]:
    """The roles of strategy ``name`` for a primary ``model`` and other models ``also``.

    For a (primary, candidate) strategy the candidates are at ``candidate_stage`` (default:
    the strategy's own stage, e.g. ``shadow``), and with no other model the candidate is
    the primary model at that stage; for the others every model is at ``production``.

    >>> roles_for("canary", "fraud")
    [Role(name='fraud', stage='production'), Role(name='fraud', stage='canary')]
    >>> [str(r) for r in roles_for("shadow", "a", ["b"], candidate_stage="production")]
    ['a', 'b']
    """
    cls = strategy_class(name)
    primary = Role(model)
    if cls.candidate_stage is not None:
        stage = candidate_stage or cls.candidate_stage
        return [primary, *([Role(n, stage) for n in also] or [Role(model, stage)])]
    return [primary, *(Role(n) for n in also)]


def build_strategy(name: str, roles: Sequence[Role], options: StrategyOptions | None = None) -> Strategy:
    """The strategy registered as ``name`` over ``roles`` (the first is the primary).

    Raises :class:`ConfigError` for an unknown name (naming the choices), for a number of
    models the strategy does not take, and for settings it refuses.
    """
    cls = strategy_class(name)
    cls.check_models(len(roles))
    return cls.from_options(list(roles), options or StrategyOptions())


@register_strategy
class Single(Strategy):
    """The primary model answers every row."""

    name = "single"
    max_models = 1

    def decide(self, models: dict[Role, LoadedModel | None], batch: Batch) -> Decision:
        m = _require(models, self.primary)
        return Decision(m.predict(batch.x(m)), [m])


def _side_by_side(batch: Batch, a: LoadedModel, sa: Scores, b: LoadedModel, sb: Scores) -> pl.DataFrame:
    cols: dict[str, Any] = {"event_id": batch.event_ids(),
                            "model": a.name, "model_version": a.version, "score": sa.score,
                            "candidate": b.name, "candidate_version": b.version, "candidate_score": sb.score}
    if sa.label is not None:
        cols["label"] = sa.label
    if sb.label is not None:
        cols["candidate_label"] = sb.label
    return pl.DataFrame(cols)


@register_strategy
class Shadow(Strategy):
    """Publish the primary's answer; score the candidate too and record both side by side."""

    name = "shadow"
    min_models = max_models = 2
    candidate_stage = "shadow"

    def __init__(self, primary: Role, candidate: Role) -> None:
        super().__init__([primary, candidate])

    @classmethod
    def from_options(cls, roles: Sequence[Role], options: StrategyOptions) -> "Shadow":
        """Roles ``[primary, candidate]``."""
        cls.check_models(len(roles))
        return cls(roles[0], roles[1])

    def decide(self, models: dict[Role, LoadedModel | None], batch: Batch) -> Decision:
        m = _require(models, self.primary)
        out = m.predict(batch.x(m))
        cand = models.get(self.roles[1])
        if cand is None or len(batch) == 0:
            return Decision(out, [m])
        shadow_scores = cand.predict(batch.x(cand))
        return Decision(out, [m], shadow=_side_by_side(batch, m, out, cand, shadow_scores))


@register_strategy
class Canary(Strategy):
    """Send ``share`` of keys (by a stable hash) to the candidate, the rest to the primary.

    Rows without a key are routed by their event id, so the choice is stable per event too.
    """

    name = "canary"
    min_models = max_models = 2
    candidate_stage = "canary"

    def __init__(self, primary: Role, candidate: Role, share: float = 0.1) -> None:
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"canary share must be between 0 and 1, got {share}")
        super().__init__([primary, candidate])
        self.share = share

    @classmethod
    def from_options(cls, roles: Sequence[Role], options: StrategyOptions) -> "Canary":
        """Roles ``[primary, candidate]``; ``options.canary_share``."""
        cls.check_models(len(roles))
        return cls(roles[0], roles[1], options.canary_share)

    def routed(self, batch: Batch) -> np.ndarray:
        """A boolean mask: True where the candidate answers."""
        limit = int(round(self.share * 10_000))
        ids = None
        out = np.zeros(len(batch), dtype=bool)
        for i, k in enumerate(batch.keys):
            if k is None:
                ids = ids or batch.event_ids()
                out[i] = bucket(ids[i]) < limit
            else:
                out[i] = bucket(k) < limit
        return out

    def decide(self, models: dict[Role, LoadedModel | None], batch: Batch) -> Decision:
        m = _require(models, self.primary)
        cand = models.get(self.roles[1])
        if cand is None or self.share == 0.0:
            return Decision(m.predict(batch.x(m)), [m])
        mask = self.routed(batch)
        score = np.zeros(len(batch), dtype=np.float64)
        label: np.ndarray | None = np.zeros(len(batch), dtype=np.int64)
        for model, rows in ((m, np.flatnonzero(~mask)), (cand, np.flatnonzero(mask))):
            if rows.size == 0:
                continue
            s = model.predict(batch.x(model, rows))
            score[rows] = s.score
            if s.label is None:
                label = None
            elif label is not None:
                label[rows] = s.label
        return Decision(Scores(score, label), [m, cand], which=mask.astype(np.int64))


@register_strategy
class Speculative(Strategy):
    """Run every model at once; the most preferred answer ready by ``deadline_s`` wins.

    Models are preferred in the order given. A model still busy with an earlier batch is
    skipped. When no model is ready in time the ``fallback`` answers (by default a
    constant score of 0), so every batch is answered within the deadline plus the
    fallback's own cost. ``deadline_met`` in the output allows ``grace_s`` of scheduling jitter.
    """

    name = "speculative"

    def __init__(self, roles: Sequence[Role], deadline_s: float, fallback: LoadedModel | None = None,
                 grace_s: float = 0.01) -> None:
        super().__init__(roles)
        self.grace_s = grace_s
        if deadline_s <= 0:
            raise ConfigError(f"the deadline must be positive, got {deadline_s}")
        self.deadline_s = deadline_s
        self.fallback = fallback or Constant("fallback", score=0.0, label=0)
        self._pool = cf.ThreadPoolExecutor(max_workers=len(self.roles) * 2, thread_name_prefix="streamml-spec")
        self._busy: dict[Role, cf.Future[Scores]] = {}
        self.missed = 0

    @classmethod
    def from_options(cls, roles: Sequence[Role], options: StrategyOptions) -> "Speculative":
        """``options.deadline_s``, ``fallback`` and ``grace_s``."""
        return cls(roles, options.deadline_s, options.fallback, options.grace_s)

    def decide(self, models: dict[Role, LoadedModel | None], batch: Batch) -> Decision:
        start = time.monotonic()
        deadline = start + self.deadline_s
        running: list[tuple[LoadedModel, cf.Future[Scores]]] = []
        for role in self.roles:
            m = models.get(role)
            busy = self._busy.get(role)
            if m is None or (busy is not None and not busy.done()):
                continue
            fut = self._pool.submit(m.predict, batch.x(m))
            self._busy[role] = fut
            running.append((m, fut))
        chosen: tuple[LoadedModel, Scores] | None = None
        for m, fut in running:  # preference order: wait for the best one while time remains
            try:
                chosen = (m, fut.result(timeout=max(0.0, deadline - time.monotonic())))
                break
            except cf.TimeoutError:
                continue
            except Exception:  # a failing model is a model that did not answer
                continue
        elapsed = time.monotonic() - start
        if chosen is None:
            self.missed += 1
            chosen = (self.fallback, self.fallback.predict(batch.x(self.fallback)))
        n = len(batch)
        return Decision(chosen[1], [chosen[0]], extra={
            "fallback": np.full(n, chosen[0] is self.fallback), "answer_ms": np.full(n, round(elapsed * 1000, 3)),
            "deadline_met": np.full(n, elapsed <= self.deadline_s + self.grace_s)})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@register_strategy
class Consensus(Strategy):
    """A weighted average of the models' scores; labels by weighted majority vote (ties: 1)."""

    name = "consensus"
    min_models = 2

    def __init__(self, roles: Sequence[Role], weights: Sequence[float] | None = None,
                 threshold: float = 0.5) -> None:
        super().__init__(roles)
        self.weights = list(weights) if weights else [1.0] * len(self.roles)
        if len(self.weights) != len(self.roles):
            raise ConfigError(f"{len(self.weights)} weights for {len(self.roles)} models")
        self.threshold = threshold

    @classmethod
    def from_options(cls, roles: Sequence[Role], options: StrategyOptions) -> "Consensus":
        """``options.weights`` and ``threshold``."""
        return cls(roles, options.weights, options.threshold)

    def decide(self, models: dict[Role, LoadedModel | None], batch: Batch) -> Decision:
        used, scores, weights = [], [], []
        for role, w in zip(self.roles, self.weights):
            m = models.get(role)
            if m is not None:
                used.append(m)
                scores.append(m.predict(batch.x(m)))
                weights.append(w)
        if not used:
            raise ServingError("no model of the ensemble is loaded")
        wv = np.asarray(weights, dtype=np.float64)
        mean = np.average(np.vstack([s.score for s in scores]), axis=0, weights=wv)
        votes = np.vstack([s.label if s.label is not None else (s.score >= self.threshold).astype(np.int64)
                           for s in scores])
        yes = (votes * wv[:, None]).sum(axis=0)
        label = (yes * 2 >= wv.sum()).astype(np.int64)
        members = ",".join(f"{m.name}:{m.version}" for m in used)
        return Decision(Scores(mean, label), [used[0]], extra={"members": [members] * len(batch)})


@register_strategy
class QualityBased(Strategy):
    """Every model scores; the one with the best live quality answers (the first while none is measured)."""

    name = "quality"
    min_models = 2

    def __init__(self, roles: Sequence[Role], quality: LiveQuality, min_labels: int = 50) -> None:
        super().__init__(roles)
        self.quality, self.min_labels = quality, min_labels

    @classmethod
    def from_options(cls, roles: Sequence[Role], options: StrategyOptions) -> "QualityBased":
        """``options.quality`` (required) and ``min_labels``."""
        if options.quality is None:
            raise ConfigError("the quality strategy needs live quality from labels",
                              hint="streamml serve: give --labels TOPIC")
        return cls(roles, options.quality, min_labels=options.min_labels)

    def best(self, used: list[LoadedModel]) -> int:
        """Index of the model with the best measured quality (0 until enough labels arrived)."""
        best_i, best_q = 0, -1.0
        for i, m in enumerate(used):
            q, n = self.quality.quality(m.name)
            if n >= self.min_labels and q > best_q:
                best_i, best_q = i, q
        return best_i

    def decide(self, models: dict[Role, LoadedModel | None], batch: Batch) -> Decision:
        used = [m for r in self.roles if (m := models.get(r)) is not None]
        if not used:
            raise ServingError("no model is loaded")
        ids = batch.event_ids()
        results = []
        for m in used:
            s = m.predict(batch.x(m))
            self.quality.record(m.name, ids, s)
            results.append(s)
        i = self.best(used)
        q, n = self.quality.quality(used[i].name)
        return Decision(results[i], [used[i]], extra={"quality": [round(q, 4) if n else None] * len(batch)})
