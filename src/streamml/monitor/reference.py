"""The training reference of a model version, found from its descriptor.

A descriptor on ``<ns>.models`` records exactly which offsets trained the version
(``manifest.train``, a pinned dataset manifest). The reference drift is measured against
is therefore rebuilt from the same records: the dataset is replayed from the manifest,
summarised per input feature (:meth:`Reference.from_frame`), and the version itself scores
those rows to give the reference of its prediction scores. A descriptor may also carry a
ready reference (``reference``, ``metrics.reference`` or ``manifest.reference``); that one
wins when present.

:class:`CatalogWatcher` follows the catalog partition of the models topic and says when
the production version of one model changes.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Mapping

import orjson
import polars as pl
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streamml.config import Settings
from streamml.monitor.drift import Reference

__all__ = ["CatalogWatcher", "reference_for", "stored_reference"]

_log = logging.getLogger("streamml.monitor")


def stored_reference(desc: Mapping[str, Any]) -> dict[str, Any] | None:
    """A reference stored in the descriptor itself, wherever it was put."""
    for path in (("reference",), ("metrics", "reference"), ("manifest", "reference"), ("tags", "reference")):
        node: Any = desc
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and node.get("features"):
            return dict(node)
    return None


def reference_for(settings: Settings, desc: Mapping[str, Any], *, max_rows: int = 50_000,
                  with_scores: bool = True) -> Reference | None:
    """The reference of one version (see the module doc); ``None`` when it cannot be built."""
    stored = stored_reference(desc)
    if stored is not None:
        return Reference.from_dict(stored)
    manifest = desc.get("manifest") or {}
    train = manifest.get("train") if isinstance(manifest, Mapping) else None
    if not train:
        return None
    features = [c["name"] for c in desc.get("input_schema") or [] if "name" in c]
    try:
        from streamml.train.dataset import Dataset

        ds = Dataset.from_manifest(settings, dict(train))
        frame = ds.to_polars()
    except Exception as exc:  # the data may be gone (retention) or the manifest foreign
        _log.warning("cannot replay the training data of %s@%s: %s", desc.get("name"), desc.get("version"), exc)
        return None
    if frame.height > max_rows:
        frame = frame.sample(max_rows, seed=0)
    features = [f for f in features if f in frame.columns] or [
        c for c, t in frame.schema.items() if t.is_numeric() and c not in ("event_time", "label")]
    ref = Reference.from_frame(frame, features, model=str(desc.get("name")), version=desc.get("version"))
    if with_scores:
        try:
            from streamml.registry.descriptor import Descriptor
            from streamml.registry.registry import Registry

            model = Registry(settings, create=False).load(Descriptor.from_dict(dict(desc)))
            scores = pl.DataFrame({"score": model.score(frame)})
            score_ref = Reference.from_frame(scores, ["score"])
            ref = Reference({**ref.features, **score_ref.features}, ref.rows, ref.model, ref.version)
        except Exception as exc:
            _log.warning("cannot score the training data of %s@%s: %s", desc.get("name"), desc.get("version"), exc)
    return ref


class CatalogWatcher:
    """Follows ``<ns>.models`` partition 0 (descriptors and stage pointers) for one model.

    :meth:`poll` returns the production descriptor when it changed since the last call.
    """

    def __init__(self, settings: Settings, model: str) -> None:
        from streamml.kafka import clients

        self.settings = settings
        self.model = model
        self.topic = settings.topic("models")
        try:
            from streamml.registry.registry import Registry

            Registry(settings)                       # creates the topic with the registry's layout
        except Exception as exc:
            _log.warning("models topic not ensured: %s", exc)
        self.descriptors: dict[int, dict[str, Any]] = {}
        self.pointer: dict[str, Any] | None = None
        self.production: int | None = None
        self._consumer = clients.consumer(settings, f"{settings.namespace}.monitor-catalog-{uuid.uuid4().hex[:8]}")
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])

    def poll(self, timeout: float = 0.0) -> dict[str, Any] | None:
        msgs = self._consumer.consume(500, timeout=timeout)
        for m in msgs:
            raw_key, value = m.key(), m.value()
            if m.error() is not None or not raw_key:
                continue
            name, _, ver = raw_key.decode().partition(":")
            if name != self.model or value is None:
                continue
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if obj.get("type") == "descriptor" and ver.isdigit():
                self.descriptors[int(ver)] = obj
            elif obj.get("type") == "stages":
                self.pointer = obj
        prod = None
        if self.pointer is not None:
            prod = (self.pointer.get("stages") or {}).get("production")
        else:
            versions = [v for v, d in self.descriptors.items() if d.get("stage") == "production"]
            prod = max(versions) if versions else None
        if prod is not None and prod != self.production and int(prod) in self.descriptors:
            self.production = int(prod)
            return self.descriptors[int(prod)]
        return None

    def lineage(self) -> list[dict[str, Any]]:
        """Every version with its stage, metrics, decision and training offsets, newest first."""
        out = []
        for _v, d in sorted(self.descriptors.items(), reverse=True):
            out.append(summarize_descriptor(d))
        return out

    def close(self) -> None:
        self._consumer.close()


def summarize_descriptor(d: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a descriptor shown in the dashboard: version, stage, scores, training offsets.

    >>> summarize_descriptor({"name": "fraud", "version": 2, "stage": "production", "metrics": {"roc_auc": 0.9},
    ...     "manifest": {"train": {"spec": {"ranges": [{"topic": "t", "partition": 0, "start": 0, "end": 10}]},
    ...                            "rows": 10}}})["training"]
    [{'topic': 't', 'partition': 0, 'start': 0, 'end': 10}]
    """
    manifest = d.get("manifest") or {}
    train = manifest.get("train") if isinstance(manifest, Mapping) else None
    ranges = []
    if isinstance(train, Mapping):
        spec = train["spec"] if isinstance(train.get("spec"), Mapping) else train
        ranges = [dict(r) for r in spec.get("ranges", []) if isinstance(r, Mapping)]
    metrics = {k: v for k, v in (d.get("metrics") or {}).items() if not isinstance(v, (dict, list))}
    decision = d.get("decision") or {}
    return {"name": d.get("name"), "version": d.get("version"), "stage": d.get("stage"),
            "created_at": d.get("created_at"), "format": d.get("format"), "sha256": str(d.get("sha256", ""))[:12],
            "trainer": d.get("trainer"), "metrics": metrics,
            "decision": {k: decision.get(k) for k in ("promoted", "metric", "candidate", "production", "reason")
                         if k in decision},
            "training": ranges, "train_rows": (train or {}).get("rows") if isinstance(train, Mapping) else None}
