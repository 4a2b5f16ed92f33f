"""Training jobs and retraining triggers: champion/challenger on the same held-out window.

A :class:`TrainingJob` pins a dataset now, splits off the newest part as the held-out
window, trains a candidate, exports it (ONNX when possible), scores the candidate *and the
current production model* on that same window with the same metric, and publishes the
candidate with both scores and the decision in its descriptor. It is promoted to
production only when ``candidate - production > margin`` (or when there is no production
version yet).

A :class:`Retrainer` runs jobs when a trigger fires:

* **schedule** — ``every_s`` seconds since the job last ran;
* **new labels** — ``new_labels`` more records on the job's labels topic since it last ran;
* **control** — a JSON message on ``<ns>.control``: ``{"command": "retrain", "model": "fraud"}``,
  or an alert ``{"type": "alert", "model": "fraud", ...}`` (unless it says ``"retrain": false``);
* **by hand** — :meth:`TrainingJob.run`, or ``streamml train``.

**Warm start** (``TrainingJob(..., warm_start=True)``, ``streamml train --warm-start``): when
the model has a production version, the job trains only on the offsets that arrived after
that parent's training manifest (each partition starts where the parent's train and holdout
ranges ended), gives the trainer the parent's ONNX bytes (``trainer.warm_start(bytes)``, see
:mod:`streamml.train.deep_models`), and records ``"parent": {"name", "version", "sha256"}`` in
the new manifest. Nothing new to train on raises :class:`NoNewData` (a retrainer skips the run).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import orjson
from confluent_kafka import TopicPartition

from streamml.config import Settings
from streamml.errors import ConfigError, StreamMLError
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.registry.base import LoadedModel
from streamml.registry.descriptor import Descriptor
from streamml.registry.formats import Artifact, export_model
from streamml.registry.models import load_model
from streamml.train.dataset import Dataset
from streamml.train.evaluate import score_metric
from streamml.train.reader import TopicRange, resolve_ranges
from streamml.train.trainers import trainer_name, unwrap

if TYPE_CHECKING:
    from streamml.registry.registry import Registry

__all__ = ["TrainingJob", "TrainingResult", "Retrainer", "request_retrain", "reproduce", "TRAINING_KIND", "NoNewData",
           "ranges_after"]

TRAINING_KIND = "streamml.training/v1"


class NoNewData(StreamMLError):
    """A warm-started job found no records after its parent's training data: nothing to train on."""


def _parent_ends(manifest: dict[str, Any]) -> dict[tuple[str, int], int]:
    """Per (topic, partition): where the data a training manifest used (train and holdout) ended."""
    ends: dict[tuple[str, int], int] = {}
    for part in ("train", "holdout"):
        for r in (manifest.get(part) or {}).get("spec", {}).get("ranges", []):
            key = (str(r["topic"]), int(r["partition"]))
            ends[key] = max(ends.get(key, 0), int(r["end"]))
    return ends


def ranges_after(ranges: Sequence[TopicRange], manifest: dict[str, Any]) -> tuple[TopicRange, ...]:
    """``ranges`` cut to what arrived after the data of a training manifest (a descriptor's ``manifest``).

    >>> m = {"train": {"spec": {"ranges": [{"topic": "t", "partition": 0, "start": 0, "end": 80}]}},
    ...      "holdout": {"spec": {"ranges": [{"topic": "t", "partition": 0, "start": 80, "end": 100}]}}}
    >>> [(r.start, r.end) for r in ranges_after([TopicRange("t", 0, 0, 150), TopicRange("t", 1, 0, 9)], m)]
    [(100, 150), (0, 9)]
    """
    ends = _parent_ends(manifest)
    return tuple(TopicRange(r.topic, r.partition, min(r.end, max(r.start, ends.get((r.topic, r.partition), r.start))),
                            r.end) for r in ranges)


@dataclass
class TrainingResult:
    """What one run of a job did: the published descriptor, both scores, the decision."""

    descriptor: Descriptor
    promoted: bool
    candidate_score: float
    production_score: float | None
    production_version: int | None
    reason: str

    @property
    def version(self) -> int:
        return self.descriptor.version


@dataclass
class TrainingJob:
    """Everything needed to (re)train one model.

    ``features_topic``/``labels_topic`` are topic or stream names (see
    :meth:`Dataset.from_topics`); ``trainer`` is ``train(ds) -> model``; ``metric`` one of
    :data:`~streamml.train.evaluate.METRICS`; ``holdout`` the newest fraction of the data
    (by event time, or by offset with ``split_by="offset"``) held out for evaluation.
    ``warm_start`` continues training the production version on the data that arrived
    after it (see the module docstring; the trainer needs a ``warm_start`` method).
    """

    name: str
    features_topic: str
    trainer: Callable[[Dataset], Any]
    labels_topic: str | None = None
    features: Sequence[str] | None = None
    metric: str = "roc_auc"
    margin: float = 0.0
    holdout: float = 0.2
    split_by: str = "time"
    seed: int = 0
    format: str | None = None
    store: str = "inline"
    promote: bool = True
    dataset_options: dict[str, Any] = field(default_factory=dict)
    warm_start: bool = False

    def __post_init__(self) -> None:
        if self.warm_start and not callable(getattr(self.trainer, "warm_start", None)):
            raise ConfigError(f"trainer {trainer_name(self.trainer)!r} cannot warm-start (it has no warm_start method)",
                              hint="use torch_autoencoder, torch_classifier or keras_autoencoder, or drop warm_start")

    def dataset(self, settings: Settings) -> Dataset:
        """The job's dataset, pinned now."""
        return Dataset.from_topics(settings, self.features_topic, labels=self.labels_topic, features=self.features,
                                   seed=self.seed, **self.dataset_options)

    def run(self, settings: Settings, registry: "Registry | None" = None, *, reason: str = "manual",
            dataset: Dataset | None = None) -> TrainingResult:
        """Train, evaluate against production on the same window, publish, maybe promote."""
        from streamml.registry.registry import Registry

        registry = registry or Registry(settings)
        if not 0 < self.holdout < 1:
            raise ConfigError(f"holdout must be between 0 and 1, got {self.holdout}")
        ds = dataset or self.dataset(settings)
        parent = registry.latest(self.name) if self.warm_start else None
        if parent is not None:
            ds = self._after(ds, parent)
        train, held = ds.split(by=self.split_by, fractions=(1 - self.holdout, self.holdout))
        if self.warm_start:
            self.trainer.warm_start(registry.fetch(parent) if parent is not None else None)  # type: ignore[attr-defined]
        model, feats = unwrap(self.trainer(train), train)
        artifact = export_model(model, feats, format=self.format)
        frame = held.with_features(feats).to_polars()
        label = ds.spec.label
        if label not in frame.columns:
            raise ConfigError(f"the held-out window has no {label!r} column to evaluate {self.metric} on",
                              hint="give the job a labels topic, or records with a label field")
        frame = frame.filter(frame[label].is_not_null())
        y = frame[label].to_numpy()
        candidate = _local(self.name, artifact)
        cand_score = score_metric(self.metric, y, candidate.score(frame))
        current = registry.latest(self.name)
        prod_score = None
        if current is not None:
            prod_score = score_metric(self.metric, y, registry.load(current).score(frame))
        promoted = self.promote and (prod_score is None or cand_score - prod_score > self.margin)
        decision = {
            "promoted": promoted, "metric": self.metric, "margin": self.margin, "candidate": cand_score,
            "production": prod_score, "production_version": current.version if current else None,
            "holdout_rows": int(frame.height), "reason": reason,
            "rule": "candidate - production > margin (or no production version)",
        }
        manifest: dict[str, Any] = {"kind": TRAINING_KIND, "trainer": trainer_name(self.trainer), "seed": self.seed,
                    "train": train.manifest(), "holdout": held.manifest(), "metric": self.metric}
        if parent is not None:
            manifest["parent"] = {"name": parent.name, "version": parent.version, "sha256": parent.sha256}
        d = registry.publish(name=self.name, artifact=artifact, metrics={self.metric: cand_score,
                                                                         "train_rows": manifest["train"]["rows"],
                                                                         "holdout_rows": int(frame.height)},
                             manifest=manifest, decision=decision, trainer=trainer_name(self.trainer),
                             stage="production" if promoted else "candidate", store=self.store)
        return TrainingResult(d, promoted, cand_score, prod_score, current.version if current else None, reason)

    def _after(self, ds: Dataset, parent: Descriptor) -> Dataset:
        """``ds`` cut to the offsets after the parent's training data (raises :class:`NoNewData`)."""
        manifest = parent.manifest or {}
        if not manifest.get("train"):
            raise ConfigError(f"{parent.ref} has no training manifest: cannot tell which data is new",
                              hint="train it without warm start (or publish one trained by a TrainingJob)")
        ranges = ranges_after(ds.ranges, manifest)
        if not any(len(r) for r in ranges):
            raise NoNewData(f"{self.name}: no new records since {parent.ref} was trained "
                            f"(it used offsets up to {_ends_text(manifest)})",
                            hint="produce more data, or retrain without warm start")
        return Dataset(ds.settings, replace(ds.spec, ranges=ranges), batch_rows=ds.batch_rows, progress=ds.progress,
                       headers=ds.headers)


def _ends_text(manifest: dict[str, Any]) -> str:
    return ", ".join(f"{t}/{p}:{e}" for (t, p), e in sorted(_parent_ends(manifest).items())[:4])


def _local(name: str, artifact: Artifact) -> LoadedModel:
    """The candidate as the registry would load it, from the bytes just exported (not yet published)."""
    d = Descriptor(name=name, version=0, format=artifact.format, sha256=artifact.sha256, size=artifact.size,
                   input_schema=artifact.input_schema, output_schema=artifact.output_schema, task=artifact.task)
    return load_model(d, artifact.data, signature_verified=True)  # bytes made in this process


def reproduce(settings: Settings, manifest: dict[str, Any], trainer: Callable[[Dataset], Any], *,
              format: str | None = None, registry: "Registry | None" = None) -> Artifact:
    """Retrain from a recorded manifest (a descriptor's ``manifest``, or its ``train`` part):
    the same data and seed give the same artifact bytes. A warm-started model's manifest names
    its parent: the trainer is warm-started from that version, fetched from the registry."""
    train_manifest = manifest.get("train", manifest)
    ds = Dataset.from_manifest(settings, train_manifest)
    parent = manifest.get("parent")
    if parent and callable(getattr(trainer, "warm_start", None)):
        from streamml.registry.registry import Registry

        reg = registry or Registry(settings)
        d = reg.get(parent["name"], int(parent["version"]))
        if d.sha256 != parent["sha256"]:
            raise ConfigError(f"{d.ref} is not the parent the manifest names (SHA-256 {d.sha256[:12]}..., "
                              f"expected {parent['sha256'][:12]}...)")
        trainer.warm_start(reg.fetch(d))  # type: ignore[attr-defined]
    model, feats = unwrap(trainer(ds), ds)
    return export_model(model, feats, format=format)


def request_retrain(settings: Settings, model: str, reason: str = "requested") -> None:
    """Put ``{"command": "retrain", "model": ...}`` on ``<ns>.control``."""
    topic = settings.topic("control")
    ensure_topic(settings, topic, 1)
    p = clients.producer(settings)
    p.produce(topic, orjson.dumps({"command": "retrain", "model": model, "reason": reason,
                                   "at": int(time.time() * 1000)}), model.encode())
    p.flush(30)


class Retrainer:
    """Runs :class:`TrainingJob` s when their triggers fire (see the module docstring).

    ``run_once()`` checks every trigger once and runs what is due; ``run()`` loops until
    ``stop`` is set. Control messages are read from the end of ``<ns>.control`` as it was
    when the retrainer started (older commands are not replayed).
    """

    def __init__(self, settings: Settings, jobs: TrainingJob | Sequence[TrainingJob], *,
                 registry: "Registry | None" = None, every_s: float | None = None, new_labels: int | None = None,
                 control: bool = True, on_result: Callable[[TrainingResult], None] | None = None) -> None:
        self.settings = settings
        self.jobs = {j.name: j for j in ([jobs] if isinstance(jobs, TrainingJob) else jobs)}
        from streamml.registry.registry import Registry

        self.registry = registry or Registry(settings)
        self.every_s = every_s
        self.new_labels = new_labels
        self.on_result = on_result
        self.results: list[TrainingResult] = []
        self.skipped: list[tuple[str, str]] = []
        self._last_run = {n: time.monotonic() for n in self.jobs}
        self._label_marks = {n: self._label_count(j) for n, j in self.jobs.items()}
        self._consumer = None
        if control:
            topic = settings.topic("control")
            ensure_topic(settings, topic, 1)
            ranges = resolve_ranges(settings, [topic])
            self._consumer = clients.consumer(settings, f"streamml-retrainer-{uuid.uuid4().hex[:10]}")
            self._consumer.assign([TopicPartition(r.topic, r.partition, r.end) for r in ranges])

    def _label_count(self, job: TrainingJob) -> int:
        if not job.labels_topic or self.new_labels is None:
            return 0
        from streamml.train.dataset import _topic

        return sum(len(r) for r in resolve_ranges(self.settings, [_topic(self.settings, job.labels_topic, "labels")]))

    def _commands(self, timeout: float) -> list[tuple[str, str]]:
        if self._consumer is None:
            return []
        out = []
        for m in self._consumer.consume(100, timeout=timeout):
            if m.error() is not None:  # end-of-partition events and transient errors: nothing to act on
                continue
            try:
                msg = orjson.loads(m.value() or b"null")
            except orjson.JSONDecodeError:
                continue
            if not isinstance(msg, dict) or msg.get("model") not in self.jobs:
                continue
            if msg.get("command") == "retrain":
                out.append((msg["model"], f"control: {msg.get('reason', 'retrain command')}"))
            elif msg.get("type") == "alert" and msg.get("retrain", True) is not False:
                out.append((msg["model"], f"alert: {msg.get('alert') or msg.get('reason') or 'alert'}"))
        return out

    def due(self, timeout: float = 0.5) -> list[tuple[str, str]]:
        """Jobs whose trigger fired, with the reason, each at most once."""
        due = self._commands(timeout)
        now = time.monotonic()
        for name, job in self.jobs.items():
            if self.every_s is not None and now - self._last_run[name] >= self.every_s:
                due.append((name, f"schedule: every {self.every_s:g}s"))
            if self.new_labels is not None and job.labels_topic:
                grown = self._label_count(job) - self._label_marks[name]
                if grown >= self.new_labels:
                    due.append((name, f"labels: {grown} new labelled records"))
        seen: dict[str, str] = {}
        for name, why in due:
            seen.setdefault(name, why)
        return list(seen.items())

    def run_once(self, timeout: float = 0.5) -> list[TrainingResult]:
        out = []
        for name, why in self.due(timeout):
            job = self.jobs[name]
            self._label_marks[name] = self._label_count(job)
            self._last_run[name] = time.monotonic()
            try:
                result = job.run(self.settings, self.registry, reason=why)
            except NoNewData as exc:  # a warm-started job with nothing new: skip this run
                self.skipped.append((name, exc.message))
                continue
            self.results.append(result)
            out.append(result)
            if self.on_result:
                self.on_result(result)
        return out

    def run(self, stop: threading.Event | None = None, *, max_runs: int | None = None,
            timeout: float | None = None) -> list[TrainingResult]:
        """Loop over :meth:`run_once` until ``stop`` is set, ``max_runs`` jobs ran, or ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done: list[TrainingResult] = []
        while not (stop and stop.is_set()) and (deadline is None or time.monotonic() < deadline):
            done += self.run_once()
            if max_runs is not None and len(done) >= max_runs:
                break
        return done

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
