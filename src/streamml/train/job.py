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
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import orjson
from confluent_kafka import TopicPartition

from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.registry.base import LoadedModel
from streamml.registry.descriptor import Descriptor
from streamml.registry.formats import Artifact, export_model
from streamml.registry.models import load_model
from streamml.train.dataset import Dataset
from streamml.train.evaluate import score_metric
from streamml.train.reader import resolve_ranges
from streamml.train.trainers import trainer_name, unwrap

if TYPE_CHECKING:
    from streamml.registry.registry import Registry

__all__ = ["TrainingJob", "TrainingResult", "Retrainer", "request_retrain", "reproduce", "TRAINING_KIND"]

TRAINING_KIND = "streamml.training/v1"


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

    def dataset(self, settings: Settings) -> Dataset:
        """The job's dataset, pinned now."""
        return Dataset.from_topics(settings, self.features_topic, labels=self.labels_topic, features=self.features,
                                   seed=self.seed, **self.dataset_options)

    def run(self, settings: Settings, registry: "Registry | None" = None, *, reason: str = "manual",
            dataset: Dataset | None = None) -> TrainingResult:
        """Train, evaluate against production on the same window, publish, maybe promote."""
        from streamml.registry.registry import Registry

        registry = registry or Registry(settings)
        ds = dataset or self.dataset(settings)
        if not 0 < self.holdout < 1:
            raise ConfigError(f"holdout must be between 0 and 1, got {self.holdout}")
        train, held = ds.split(by=self.split_by, fractions=(1 - self.holdout, self.holdout))
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
        d = registry.publish(name=self.name, artifact=artifact, metrics={self.metric: cand_score,
                                                                         "train_rows": manifest["train"]["rows"],
                                                                         "holdout_rows": int(frame.height)},
                             manifest=manifest, decision=decision, trainer=trainer_name(self.trainer),
                             stage="production" if promoted else "candidate", store=self.store)
        return TrainingResult(d, promoted, cand_score, prod_score, current.version if current else None, reason)


def _local(name: str, artifact: Artifact) -> LoadedModel:
    """The candidate as the registry would load it, from the bytes just exported (not yet published)."""
    d = Descriptor(name=name, version=0, format=artifact.format, sha256=artifact.sha256, size=artifact.size,
                   input_schema=artifact.input_schema, output_schema=artifact.output_schema, task=artifact.task)
    return load_model(d, artifact.data, signature_verified=True)  # bytes made in this process


def reproduce(settings: Settings, manifest: dict[str, Any], trainer: Callable[[Dataset], Any], *,
              format: str | None = None) -> Artifact:
    """Retrain from a recorded manifest (a descriptor's ``manifest``, or its ``train`` part):
    the same data and seed give the same artifact bytes."""
    train_manifest = manifest.get("train", manifest)
    ds = Dataset.from_manifest(settings, train_manifest)
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
            result = job.run(self.settings, self.registry, reason=why)
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
