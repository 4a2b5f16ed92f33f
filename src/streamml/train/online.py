"""Online learning: a River model learns from the features+labels stream, test-then-train.

Each labelled example is first predicted, the prediction scored by the metric, then learnt
(prequential evaluation) — exactly the loop of River's ``progressive_val_score``, so over
the same examples in the same order the two report the same metric.

Examples come either from one topic whose records carry the label (``label_field``), in
offset order, or from a features topic joined to a labels topic by ``key``: an example is
complete when both sides have arrived, and is learnt at that moment (features wait for
their label; a label that arrives first waits for its features). Every ``snapshot_every``
examples the model is published to the registry as a signed pickle, with the metric.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import orjson
from confluent_kafka import Message, TopicPartition

from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.kafka import clients
from streamml.kafka.message import topic_of
from streamml.kafka.read import TopicRange, messages, read_ranges
from streamml.registry.descriptor import Descriptor
from streamml.train.reader import resolve_ranges

if TYPE_CHECKING:
    from streamml.registry.registry import Registry

__all__ = ["OnlineLearner", "OnlineReport", "prequential_step"]


def _predictor(model: Any, metric: Any) -> Callable[[Any], Any]:
    from river import base

    if isinstance(model, base.AnomalyFilter):
        return lambda x: model.classify(model.score_one(x))
    if isinstance(model, base.AnomalyDetector):
        return model.score_one
    if isinstance(model, base.Classifier) and not metric.requires_labels:
        return model.predict_proba_one
    predict: Callable[[Any], Any] = model.predict_one
    return predict


def prequential_step(model: Any, metric: Any, x: dict[str, Any], y: Any,
                     predict: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Predict ``x``, update ``metric`` with ``(y, prediction)``, then learn ``(x, y)``."""
    predict = predict or _predictor(model, metric)
    y_pred = predict(x)
    if y_pred is not None and y_pred != {}:
        metric.update(y_true=y, y_pred=y_pred)
    if model._supervised:  # noqa: SLF001 -- river's own flag for supervised estimators
        model.learn_one(x, y)
    else:
        model.learn_one(x)
    return y_pred


@dataclass
class OnlineReport:
    """Where an online run stands: examples learnt, the metric, snapshots published."""

    examples: int = 0
    metric: Any = None
    snapshots: list[Descriptor] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    @property
    def value(self) -> float:
        return float(self.metric.get()) if self.metric is not None else float("nan")


class OnlineLearner:
    """Learn a River ``model`` continuously from Kafka (see the module docstring).

    ``features`` names the input fields (default: every numeric field but key, time and
    label). ``keep_order`` records the event ids in the order they were learnt.
    """

    def __init__(self, settings: Settings, model: Any, *, name: str, features_topic: str,
                 labels_topic: str | None = None, label_field: str = "label", key: str = "event_id",
                 time_field: str = "event_time", features: Sequence[str] | None = None, metric: Any = None,
                 snapshot_every: int | None = None, snapshot_stage: str = "candidate",
                 registry: "Registry | None" = None, keep_order: bool = False) -> None:
        from river import metrics

        from streamml.train.dataset import _topic

        self.settings = settings
        self.model = model
        self.name = name
        self.features_topic = _topic(settings, features_topic, "features")
        self.labels_topic = _topic(settings, labels_topic, "labels") if labels_topic else None
        self.label_field, self.key, self.time_field = label_field, key, time_field
        self.features = list(features) if features is not None else None
        self.metric = metric if metric is not None else metrics.ROCAUC()
        self.snapshot_every = snapshot_every
        self.snapshot_stage = snapshot_stage
        self.registry = registry
        if snapshot_every and registry is None:
            from streamml.registry.registry import Registry

            self.registry = Registry(settings)
        self.report = OnlineReport(metric=self.metric)
        self.keep_order = keep_order
        self._predict = _predictor(model, self.metric)
        self._waiting_x: dict[str, dict[str, Any]] = {}
        self._waiting_y: dict[str, Any] = {}

    def _x(self, rec: dict[str, Any]) -> dict[str, Any]:
        if self.features is None:
            skip = {self.key, self.time_field, self.label_field}
            self.features = [k for k, v in rec.items()
                             if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)]
        return {f: rec.get(f) for f in self.features}

    def _learn(self, event_id: str, x: dict[str, Any], y: Any) -> None:
        prequential_step(self.model, self.metric, x, y, self._predict)
        self.report.examples += 1
        if self.keep_order:
            self.report.order.append(event_id)
        if self.snapshot_every and self.report.examples % self.snapshot_every == 0:
            self.snapshot()

    def snapshot(self) -> Descriptor:
        """Publish the model as it is now (a signed pickle) with the prequential metric."""
        assert self.registry is not None
        d = self.registry.publish(copy.deepcopy(self.model), name=self.name, features=self.features or [],
                                  format="pickle", stage=self.snapshot_stage, trainer="river-online",
                                  metrics={type(self.metric).__name__: self.report.value,
                                           "examples": self.report.examples},
                                  manifest={"kind": "streamml.online/v1", "features_topic": self.features_topic,
                                            "labels_topic": self.labels_topic, "examples": self.report.examples})
        self.report.snapshots.append(d)
        return d

    def _handle(self, topic: str, value: bytes | None) -> None:
        if value is None:
            return
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(rec, dict):
            return
        eid = str(rec.get(self.key))
        if topic == self.features_topic:
            x = self._x(rec)
            if self.labels_topic is None:
                if rec.get(self.label_field) is not None:
                    self._learn(eid, x, rec[self.label_field])
            elif eid in self._waiting_y:
                self._learn(eid, x, self._waiting_y.pop(eid))
            else:
                self._waiting_x[eid] = x
        else:
            y = rec.get(self.label_field)
            if y is None:
                return
            if eid in self._waiting_x:
                self._learn(eid, self._waiting_x.pop(eid), y)
            else:
                self._waiting_y[eid] = y

    def run(self, *, max_examples: int | None = None, until_end: bool = False, timeout: float | None = None,
            stop: threading.Event | None = None, from_beginning: bool = True) -> OnlineReport:
        """Consume and learn until ``max_examples``, the end of what exists now
        (``until_end``), ``timeout`` seconds, or ``stop``."""
        if max_examples is None and not until_end and timeout is None and stop is None:
            raise ConfigError("OnlineLearner.run needs max_examples, until_end, timeout or stop")
        topics = [self.features_topic] + ([self.labels_topic] if self.labels_topic else [])
        ranges = resolve_ranges(self.settings, topics)
        deadline = None if timeout is None else time.monotonic() + timeout

        def done() -> bool:
            return ((stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline)
                    or (max_examples is not None and self.report.examples >= max_examples))

        for batch in self._batches(ranges, until_end, from_beginning, done):
            for m in batch:
                self._handle(topic_of(m), m.value())
                if max_examples is not None and self.report.examples >= max_examples:
                    break
            if done():
                break
        return self.report

    def _batches(self, ranges: list[TopicRange], until_end: bool, from_beginning: bool,
                 done: Callable[[], bool]) -> Iterator[list[Message]]:
        """The records to learn from: the pinned ranges through the shared read layer
        (``until_end``), or everything from the start (or the end) on, as it arrives."""
        if until_end:
            if from_beginning:
                yield from read_ranges(self.settings, ranges, max_messages=500, context="online learning")
            return
        c = clients.consumer(self.settings, f"streamml-online-{self.name}-{uuid.uuid4().hex[:8]}")
        c.assign([TopicPartition(r.topic, r.partition, r.start if from_beginning else r.end) for r in ranges])
        try:
            while not done():
                yield messages(c.consume(500, timeout=0.1), "online learning: ")
        finally:
            c.close()
