"""Live model quality from delayed labels, joined to predictions by event id.

Predictions are recorded as they are made (``record``); labels arrive later on
``<ns>.labels.<stream>`` as JSON ``{"event_id": ..., "label": 0|1}`` (``observe`` or the
:meth:`LiveQuality.follow` thread). Whichever side comes first waits, bounded, for the
other. Each model's quality is the accuracy of its last ``window`` labelled predictions
(its label when it gives one, else ``score >= 0.5``).

>>> import numpy as np
>>> from streamml.serve.base import Scores
>>> q = LiveQuality(window=100)
>>> q.record("good", ["a", "b"], Scores(np.array([0.9, 0.1]), np.array([1, 0])))
>>> q.record("bad", ["a", "b"], Scores(np.array([0.1, 0.9])))
>>> q.observe(["a", "b", "zz"], [1, 0, 1])
2
>>> q.quality("good"), q.quality("bad"), q.quality("unknown")
((1.0, 2), (0.0, 2), (0.0, 0))
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Sequence

import numpy as np

from streamml.serve.base import Scores

__all__ = ["LiveQuality"]

_log = logging.getLogger("streamml.serve")


class LiveQuality:
    """Rolling per-model accuracy from labels joined by event id (thread-safe)."""

    def __init__(self, window: int = 1000, max_pending: int = 200_000) -> None:
        self.window, self.max_pending = window, max_pending
        self._preds: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._labels: OrderedDict[str, int] = OrderedDict()
        self._hits: dict[str, deque[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.labels_seen = 0

    def _score(self, model: str, predicted: int, actual: int) -> None:
        self._hits.setdefault(model, deque(maxlen=self.window)).append(int(predicted == actual))

    def record(self, model: str, event_ids: Sequence[str], scores: Scores) -> None:
        """Remember ``model``'s predicted label for each event until its label arrives."""
        labels = scores.label if scores.label is not None else (scores.score >= 0.5).astype(np.int64)
        with self._lock:
            for eid, lab in zip(event_ids, labels.tolist()):
                actual = self._labels.get(eid)
                if actual is not None:
                    self._score(model, lab, actual)
                    continue
                self._preds.setdefault(eid, {})[model] = lab
            while len(self._preds) > self.max_pending:
                self._preds.popitem(last=False)

    def observe(self, event_ids: Sequence[str], labels: Sequence[Any]) -> int:
        """Take in labels; returns how many met a recorded prediction."""
        joined = 0
        with self._lock:
            for eid, lab in zip(event_ids, labels):
                if lab is None:
                    continue
                actual = int(lab)
                self.labels_seen += 1
                preds = self._preds.pop(eid, None)
                if preds is None:
                    self._labels[eid] = actual
                    continue
                joined += 1
                for model, predicted in preds.items():
                    self._score(model, predicted, actual)
            while len(self._labels) > self.max_pending:
                self._labels.popitem(last=False)
        return joined

    def quality(self, model: str) -> tuple[float, int]:
        """``(accuracy, labelled predictions)`` of ``model`` over the window; ``(0.0, 0)`` when unmeasured."""
        with self._lock:
            hits = self._hits.get(model)
            if not hits:
                return 0.0, 0
            return sum(hits) / len(hits), len(hits)

    def follow(self, settings: Any, topic: str, *, id_field: str = "event_id",
               label_field: str = "label") -> "LiveQuality":
        """Start a thread reading ``topic`` (read_committed, from the beginning) into :meth:`observe`."""
        from streamml.kafka import clients
        from streamml.schema.batch import decode_json

        c = clients.consumer(settings, f"{settings.namespace}.serve.quality-{time.time_ns()}")
        c.subscribe([topic])

        def run() -> None:
            try:
                while not self._stop.is_set():
                    values = [v for m in c.consume(5000, timeout=0.5) if m.error() is None and (v := m.value())]
                    if not values:
                        continue
                    try:
                        df = decode_json(values)
                    except Exception:
                        _log.warning("skipped a batch of %d unreadable labels on %s", len(values), topic)
                        continue
                    if id_field in df.columns and label_field in df.columns:
                        self.observe([str(v) for v in df[id_field].to_list()], df[label_field].to_list())
            finally:
                c.close()

        self._thread = threading.Thread(target=run, name="streamml-labels", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
