"""Dataset: a pinned, replayable view of topics, with delayed labels joined point-in-time.

A dataset is *pinned*: it names exact partitions and offset ranges (resolved once, from
offsets or record timestamps, see :func:`~streamml.train.reader.resolve_ranges`), so
reading it twice — today or next year, while the topics still hold the data — gives the
same rows in the same order (topic, partition, offset). Its :meth:`Dataset.manifest`
records everything needed to rebuild it (:meth:`Dataset.from_manifest`): ranges, the
label rule (see :mod:`streamml.train.labels`), filters, seed, and what reading observed
(row counts, schema versions, pipeline hashes) plus library versions.

Reads are ``read_committed``: records of aborted transactions never appear. Values are
JSON objects decoded a whole batch at a time into Polars; ``iter_batches`` streams data
larger than memory, ``to_polars``/``to_arrow``/``to_pandas``/``to_numpy`` materialise it.

Example (no broker needed to build and split a pinned dataset)::

    ds = Dataset.from_topics(settings, ["shop.features.pay"], labels="shop.labels.pay")
    train, valid, test = ds.split(by="time", fractions=(0.7, 0.15, 0.15))
    X, y = train.to_numpy()
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Iterator, Sequence

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from streamml.config import Settings
from streamml.errors import ConfigError
from streamml.extras import require
from streamml.train.labels import LabelRule, join_labels, labels_frame
from streamml.train.prefetch import ProgressBar, prefetch
from streamml.train.reader import RawBatch, TopicRange, read_ranges, resolve_ranges

__all__ = ["Dataset", "LabelSource", "library_versions", "MANIFEST_KIND"]

MANIFEST_KIND = "streamml.dataset/v1"
_META = ("_partition", "_offset")


def _decode(values: list[bytes], schema: dict[str, Any] | None = None) -> pl.DataFrame:
    try:
        from streamml.schema.batch import decode_json
    except ImportError:  # pragma: no cover - the schema package ships with streamml
        import io

        return pl.read_ndjson(io.BytesIO(b"\n".join(values)), schema=schema, infer_schema_length=None)
    return decode_json(values, schema)


def polars_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Column -> Polars dtype, from dtypes or their names.

    >>> polars_schema({"amount": "Float64", "event_id": pl.String})
    {'amount': Float64, 'event_id': String}
    """
    if schema is None:
        return None
    out = {}
    for col, t in schema.items():
        dtype = getattr(pl, t, None) if isinstance(t, str) else t
        if dtype is None:
            raise ConfigError(f"unknown Polars dtype {t!r} for column {col!r}", hint="use e.g. Float64, Int64, String")
        out[col] = dtype
    return out


def _schema_names(schema: dict[str, Any] | None) -> dict[str, str] | None:
    return None if schema is None else {c: str(t) for c, t in polars_schema(schema).items()}  # type: ignore[union-attr]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a trained artifact."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("streamml", "numpy", "polars", "pyarrow", "scikit-learn", "skl2onnx", "onnx", "onnxruntime",
                 "river", "confluent-kafka"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class LabelSource:
    """Where labels come from: a topic pinned to ranges, the value field, and the rule."""

    topic: str
    ranges: tuple[TopicRange, ...]
    rule: LabelRule
    field: str = "label"

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "ranges": [r.as_dict() for r in self.ranges], "field": self.field,
                **self.rule.as_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelSource":
        rule = LabelRule(int(d["as_of_ms"]), d.get("max_delay_ms"), d.get("key", "event_id"),
                         d.get("time_field", "event_time"))
        return cls(d["topic"], tuple(TopicRange.from_dict(r) for r in d["ranges"]), rule, d.get("field", "label"))


@dataclass(frozen=True)
class _Spec:
    ranges: tuple[TopicRange, ...]
    labels: LabelSource | None = None
    features: tuple[str, ...] | None = None
    label: str = "label"
    key: str = "event_id"
    time_field: str = "event_time"
    time_filter: tuple[int | None, int | None] | None = None
    unlabelled: str = "drop"
    fill_label: Any = None
    seed: int = 0
    split: str | None = None
    schema: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ranges": [r.as_dict() for r in self.ranges],
            "labels": self.labels.as_dict() if self.labels else None,
            "features": list(self.features) if self.features is not None else None,
            "label": self.label, "key": self.key, "time_field": self.time_field,
            "time_filter": list(self.time_filter) if self.time_filter else None,
            "unlabelled": self.unlabelled, "fill_label": self.fill_label, "seed": self.seed, "split": self.split,
            "schema": self.schema,
        }


class Dataset:
    """A pinned view of one or more topics (see the module docstring).

    Build one with :meth:`from_topics` (pins the topics now) or :meth:`from_manifest`
    (rebuilds a recorded one). ``progress=True`` shows a rich progress bar while reading.
    """

    def __init__(self, settings: Settings, spec: _Spec, *, batch_rows: int = 50_000, progress: bool = False,
                 headers: str = "sample") -> None:
        if spec.unlabelled not in ("drop", "keep", "fill"):
            raise ConfigError(f"unlabelled must be drop, keep or fill, got {spec.unlabelled!r}")
        self.settings = settings
        self.spec = spec
        self.batch_rows = batch_rows
        self.progress = progress
        self.headers = headers
        self._labels: pl.DataFrame | None = None
        self._observed: dict[str, Any] | None = None
        self._features: tuple[str, ...] | None = spec.features

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_topics(
        cls,
        settings: Settings,
        topics: str | Sequence[str],
        *,
        labels: str | None = None,
        label_field: str = "label",
        features: Sequence[str] | None = None,
        label: str = "label",
        key: str = "event_id",
        time_field: str = "event_time",
        partitions: Sequence[int] | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        as_of_ms: int | None = None,
        max_label_delay_ms: int | None = None,
        unlabelled: str = "drop",
        fill_label: Any = None,
        seed: int = 0,
        schema: dict[str, Any] | None = None,
        **options: Any,
    ) -> "Dataset":
        """Pin ``topics`` (names, or stream names resolved to ``<ns>.features.<name>``) now.

        ``labels`` is a labels topic (or stream name -> ``<ns>.labels.<name>``) joined by
        ``key``; without it the label is the ``label`` field of the records themselves
        (or there is none: unsupervised). ``start_time_ms``/``end_time_ms`` select records by
        Kafka timestamp, resolved to exact offsets. ``as_of_ms`` (default: now) is the label
        cutoff (rule 2 of :mod:`streamml.train.labels`); the label ranges are pinned to the
        offsets that exist now, and the cutoff filters them by arrival time. ``schema``
        (column -> Polars dtype or its name) fixes the columns read and their types: every
        batch decodes alike, and faster, since nothing is inferred.
        """
        names = [_topic(settings, n, "features") for n in ([topics] if isinstance(topics, str) else topics)]
        ranges = resolve_ranges(settings, names, partitions=partitions, start_time_ms=start_time_ms,
                                end_time_ms=end_time_ms)
        as_of = int(as_of_ms if as_of_ms is not None else time.time() * 1000)
        source = None
        if labels is not None:
            ltopic = _topic(settings, labels, "labels")
            lranges = resolve_ranges(settings, [ltopic])
            source = LabelSource(ltopic, tuple(lranges), LabelRule(as_of, max_label_delay_ms, key, time_field),
                                 label_field)
        spec = _Spec(tuple(ranges), source, tuple(features) if features is not None else None, label, key,
                     time_field, None, unlabelled if (source or unlabelled != "drop") else "drop", fill_label,
                     seed, None, _schema_names(schema))
        return cls(settings, spec, **options)

    @classmethod
    def from_manifest(cls, settings: Settings, manifest: dict[str, Any], **options: Any) -> "Dataset":
        """Rebuild the dataset a manifest describes (the same rows, in the same order)."""
        if manifest.get("kind") != MANIFEST_KIND:
            raise ConfigError(f"not a dataset manifest (kind={manifest.get('kind')!r})")
        d = manifest["spec"]
        tf = d.get("time_filter")
        spec = _Spec(tuple(TopicRange.from_dict(r) for r in d["ranges"]),
                     LabelSource.from_dict(d["labels"]) if d.get("labels") else None,
                     tuple(d["features"]) if d.get("features") is not None else None, d.get("label", "label"),
                     d.get("key", "event_id"), d.get("time_field", "event_time"),
                     (tf[0], tf[1]) if tf else None, d.get("unlabelled", "drop"), d.get("fill_label"),
                     int(d.get("seed", 0)), d.get("split"), d.get("schema"))
        return cls(settings, spec, **options)

    def _derive(self, **changes: Any) -> "Dataset":
        ds = Dataset(self.settings, replace(self.spec, **changes), batch_rows=self.batch_rows,
                     progress=self.progress, headers=self.headers)
        ds._features = changes.get("features", self._features)
        if "labels" not in changes:
            ds._labels = self._labels
        return ds

    # -- properties ----------------------------------------------------------------------------
    @property
    def ranges(self) -> tuple[TopicRange, ...]:
        return self.spec.ranges

    @property
    def label(self) -> str:
        """The label column's name (present when labels are joined or carried by the records)."""
        return self.spec.label

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def features(self) -> list[str]:
        """Feature columns: as given, else every numeric column but key, time and label."""
        if self._features is None:
            self._resolve_features(self._peek())
        return list(self._features or ())

    def with_features(self, features: Sequence[str]) -> "Dataset":
        return self._derive(features=tuple(features))

    def with_seed(self, seed: int) -> "Dataset":
        return self._derive(seed=int(seed))

    def __len__(self) -> int:
        """Offsets covered (an upper bound on rows: markers and aborted records are gaps)."""
        return sum(len(r) for r in self.spec.ranges)

    def __repr__(self) -> str:
        parts = ", ".join(f"{r.key()}[{r.start}:{r.end})" for r in self.spec.ranges[:4])
        more = "" if len(self.spec.ranges) <= 4 else f", +{len(self.spec.ranges) - 4}"
        return f"Dataset({parts}{more}, split={self.spec.split!r})"

    # -- reading -------------------------------------------------------------------------------
    def _label_table(self) -> pl.DataFrame | None:
        src = self.spec.labels
        if src is None:
            return None
        if self._labels is None:
            frames = []
            for b in read_ranges(self.settings, src.ranges, with_timestamps=True, headers="none"):
                df = _decode(b.values)
                frames.append(labels_frame(df, key=src.rule.key, field=src.field, arrival=b.timestamps or [],
                                           offsets=b.offsets))
            self._labels = (pl.concat(frames, how="diagonal_relaxed") if frames else
                            labels_frame(pl.DataFrame(), key=src.rule.key, field=src.field, arrival=[], offsets=[]))
        return self._labels

    def _peek(self) -> pl.DataFrame:
        for df in self.iter_batches(batch_rows=1000, _limit_one=True):
            return df
        return pl.DataFrame()

    def _resolve_features(self, df: pl.DataFrame) -> None:
        if self._features is not None:
            return
        skip = {self.spec.key, self.spec.time_field, self.spec.label, *_META}
        self._features = tuple(c for c, t in df.schema.items() if c not in skip and t.is_numeric())

    def _prepare(self, b: RawBatch, labels: pl.DataFrame | None, with_metadata: bool) -> pl.DataFrame:
        df = _decode(b.values, polars_schema(self.spec.schema))
        if with_metadata:
            df = df.with_columns(pl.lit(b.partition, dtype=pl.Int32).alias("_partition"),
                                 pl.Series("_offset", b.offsets, dtype=pl.Int64))
        s = self.spec
        if s.time_filter and s.time_field in df.columns:
            lo, hi = s.time_filter
            if lo is not None:
                df = df.filter(pl.col(s.time_field) >= lo)
            if hi is not None:
                df = df.filter(pl.col(s.time_field) < hi)
        if labels is not None and s.labels is not None:
            df = join_labels(df, labels, s.labels.rule, label=s.label)
        if s.label in df.columns:
            if s.unlabelled == "drop":
                df = df.filter(pl.col(s.label).is_not_null())
            elif s.unlabelled == "fill":
                df = df.with_columns(pl.col(s.label).fill_null(s.fill_label))
        return df

    def prepare_batch(self, batch: RawBatch, labels: pl.DataFrame | None,
                      with_metadata: bool = False) -> pl.DataFrame:
        """One batch of raw values as this dataset's rows: decoded with its schema, time-filtered,
        labels joined by its rule (``labels`` in :func:`~streamml.train.labels.labels_frame` shape),
        unlabelled rows handled. What :meth:`iter_batches` does per batch, for other engines' readers
        (:mod:`streamml.spark`)."""
        return self._prepare(batch, labels, with_metadata)

    def record_observed(self, *, rows: int, labelled: int, schema_versions: Sequence[str] = (),
                        pipeline_hashes: Sequence[str] = ()) -> None:
        """Record what another engine's read of these ranges observed (the manifest reports it)."""
        self._observed = {"rows": int(rows), "labelled": int(labelled), "schema_versions": sorted(schema_versions),
                          "pipeline_hashes": sorted(pipeline_hashes), "columns": []}

    def iter_batches(self, *, batch_rows: int | None = None, epochs: int = 1, shuffle: bool = False,
                     with_metadata: bool = False, _limit_one: bool = False) -> Iterator[pl.DataFrame]:
        """Stream the dataset as Polars frames of about ``batch_rows`` rows, ``epochs`` times.

        Each epoch replays the pinned ranges from Kafka, so memory stays bounded by one batch
        (plus the label table). ``shuffle`` permutes rows within each batch, seeded by
        ``seed + epoch`` (deterministic). ``with_metadata`` adds ``_partition`` and ``_offset``.
        """
        labels = self._label_table()
        total = len(self) * epochs
        observed: dict[str, Any] = {"rows": 0, "labelled": 0, "schema_versions": set(), "pipeline_hashes": set(),
                                    "columns": []}
        bar = ProgressBar(total, f"reading {len(self.spec.ranges)} partition(s)") if self.progress and not _limit_one \
            else None
        try:
            for epoch in range(epochs):
                reader = partial(read_ranges, self.settings, self.spec.ranges,
                                 batch_rows=batch_rows or self.batch_rows, headers=self.headers,
                                 on_progress=bar.advance if bar else None, with_offsets=with_metadata)
                for b in (reader() if _limit_one else prefetch(reader)):
                    observed["schema_versions"] |= b.schema_versions
                    observed["pipeline_hashes"] |= b.pipeline_hashes
                    df = self._prepare(b, labels, with_metadata)
                    if not observed["columns"]:
                        observed["columns"] = list(df.columns)
                    if shuffle and df.height > 1:
                        rng = np.random.default_rng(self.spec.seed + epoch)
                        df = df[rng.permutation(df.height)]
                    if epoch == 0:
                        observed["rows"] += df.height
                        if self.spec.label in df.columns:
                            observed["labelled"] += int(df[self.spec.label].is_not_null().sum())
                    if df.height == 0:
                        continue
                    self._resolve_features(df)
                    yield df
                    if _limit_one:
                        return
                if epoch == 0:
                    self._observed = {**observed, "schema_versions": sorted(observed["schema_versions"]),
                                      "pipeline_hashes": sorted(observed["pipeline_hashes"])}
        finally:
            if bar:
                bar.close()

    def epochs(self, n: int, *, shuffle: bool = True,
               batch_rows: int | None = None) -> Iterator[tuple[int, Iterator[pl.DataFrame]]]:
        """``for epoch, batches in ds.epochs(3): ...`` — each epoch a fresh replay."""
        for e in range(n):
            sub = self.with_seed(self.spec.seed + e)
            yield e, sub.iter_batches(batch_rows=batch_rows, shuffle=shuffle)
            self._observed = self._observed or sub._observed  # noqa: SLF001 -- another Dataset
            self._features = self._features or sub._features  # noqa: SLF001 -- another Dataset

    # -- materialisation -----------------------------------------------------------------------
    def to_polars(self, *, with_metadata: bool = False) -> pl.DataFrame:
        frames = list(self.iter_batches(with_metadata=with_metadata))
        if not frames:
            return pl.DataFrame()
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed", rechunk=False)

    def to_arrow(self, *, with_metadata: bool = False) -> pa.Table:
        return self.to_polars(with_metadata=with_metadata).to_arrow()

    def to_pandas(self, *, with_metadata: bool = False) -> Any:
        require("pandas", "Dataset.to_pandas()")
        return self.to_polars(with_metadata=with_metadata).to_pandas()

    def to_numpy(self, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray | None]:
        """``(X, y)``: the feature columns in order, and the labels (None when unsupervised)."""
        df = self.to_polars()
        return self.frame_to_numpy(df, dtype)

    def frame_to_numpy(self, df: pl.DataFrame, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray | None]:
        """Split one frame of this dataset into ``(X, y)`` with this dataset's feature list."""
        feats = self.features
        missing = [c for c in feats if c not in df.columns]
        if df.height and missing:
            raise ConfigError(f"feature column(s) {', '.join(missing)} not in the data",
                              hint=f"columns are: {', '.join(df.columns)}")
        if df.height == 0:
            return np.zeros((0, len(feats)), dtype=dtype), None
        X = df.select([pl.col(c).cast(pl.Float64).fill_null(0.0) for c in feats]).to_numpy().astype(dtype)
        y = df[self.spec.label].to_numpy() if self.spec.label in df.columns else None
        return X, y

    # -- splits --------------------------------------------------------------------------------
    def split(self, *, by: str = "time", fractions: Sequence[float] = (0.8, 0.2),
              at: Sequence[int] | None = None, point_in_time: bool = True) -> list["Dataset"]:
        """Split into consecutive parts: ``by="offset"`` (each partition's offset range cut in
        proportion, nothing read) or ``by="time"`` (event-time windows ``[lo, hi)``, bounds
        ``at`` given, else the ``fractions`` quantiles of event time, which needs one pass).

        With ``point_in_time`` a time split's labels are cut at its window's end, so training
        never sees a label that arrived during the evaluation window.
        """
        names = ["train", "validation", "test"] if len(fractions) == 3 or (at and len(at) == 2) \
            else [f"part{i}" for i in range(len(at) + 1 if at else len(fractions))]
        if by == "offset":
            if at is not None:
                raise ConfigError("split(by='offset') takes fractions, not at=")
            return self._split_offsets(fractions, names)
        if by != "time":
            raise ConfigError(f"split by {by!r}: use 'time' or 'offset'")
        bounds = list(at) if at is not None else self._time_quantiles(fractions)
        edges: list[int | None] = [None, *bounds, None]
        out = []
        lo0, hi0 = self.spec.time_filter or (None, None)
        for i in range(len(edges) - 1):
            lo = _max_opt(edges[i], lo0)
            hi = _min_opt(edges[i + 1], hi0)
            labels = self.spec.labels
            if point_in_time and labels is not None and hi is not None:
                labels = replace(labels, rule=labels.rule.with_as_of(hi))
            part = self._derive(time_filter=(lo, hi), labels=labels, split=names[i])
            if labels is self.spec.labels:
                part._labels = self._labels  # noqa: SLF001 -- another Dataset: share the loaded labels
            out.append(part)
        return out

    def _split_offsets(self, fractions: Sequence[float], names: list[str]) -> list["Dataset"]:
        total = float(sum(fractions))
        parts: list[list[TopicRange]] = [[] for _ in fractions]
        for r in self.spec.ranges:
            rest, done = r, 0.0
            for i, f in enumerate(fractions):
                if i == len(fractions) - 1:
                    parts[i].append(rest)
                    break
                share = (f / total) / (1.0 - done) if done < 1.0 else 1.0
                head, rest = rest.split_at(min(share, 1.0))
                parts[i].append(head)
                done += f / total
        return [self._derive(ranges=tuple(p), split=names[i]) for i, p in enumerate(parts)]

    def _time_quantiles(self, fractions: Sequence[float]) -> list[int]:
        tcol = self.spec.time_field
        times = []
        for b in read_ranges(self.settings, self.spec.ranges, batch_rows=self.batch_rows, headers="none"):
            df = _decode(b.values)
            if tcol in df.columns:
                times.append(df[tcol].cast(pl.Int64).to_numpy())
        if not times:
            raise ConfigError(f"cannot split by time: no {tcol!r} field in the data")
        t = np.sort(np.concatenate(times))
        lo, hi = self.spec.time_filter or (None, None)
        if lo is not None:
            t = t[t >= lo]
        if hi is not None:
            t = t[t < hi]
        if not t.size:
            raise ConfigError("cannot split by time: no record in the dataset's time range")
        cum = np.cumsum(fractions)[:-1] / float(sum(fractions))
        return [int(t[min(len(t) - 1, int(round(c * len(t))))]) for c in cum]

    # -- deep learning (streamml[deep], see streamml.train.deep_data) ---------------------------
    def with_ranges(self, ranges: Sequence[TopicRange]) -> "Dataset":
        """The same dataset over ``ranges`` (a subset of its own, e.g. one shard's)."""
        return self._derive(ranges=tuple(ranges))

    def to_torch(self, *, batch_size: int = 256, shuffle_buffer: int = 0, epoch: int = 0, dtype: Any = "float32",
                 label_dtype: Any = None, drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None) -> Any:
        """A ``torch.utils.data.IterableDataset`` of ``(X, y)`` batches (``(X,)`` unsupervised),
        streamed and sharded across DataLoader workers and distributed ranks, each row once per
        epoch; ``shuffle_buffer`` rows mix them, seeded by ``seed``, epoch (``set_epoch``) and shard.
        """
        return _deep().TorchTopicDataset(self, batch_size=batch_size, shuffle_buffer=shuffle_buffer, epoch=epoch,
                                         dtype=dtype, label_dtype=label_dtype, drop_last=drop_last, rank=rank,
                                         world_size=world_size)

    def torch_loader(self, *, batch_size: int = 256, num_workers: int = 0, persistent_workers: bool = False,
                     pin_memory: bool = False, **options: Any) -> Any:
        """``to_torch(**options).loader(...)``: a ready ``DataLoader`` (``loader.dataset.set_epoch(n)``)."""
        return self.to_torch(batch_size=batch_size, **options).loader(
            num_workers=num_workers, persistent_workers=persistent_workers, pin_memory=pin_memory)

    def to_keras(self, *, batch_size: int = 256, shuffle_buffer: int = 0, epoch: int = 0, dtype: Any = "float32",
                 drop_last: bool = False, rank: int | None = None, world_size: int | None = None,
                 **keras_options: Any) -> Any:
        """A ``keras.utils.PyDataset`` with ``to_torch``'s batches (this shard's rows held in memory,
        reshuffled each epoch); ``workers``/``use_multiprocessing``/``max_queue_size`` go to Keras."""
        return _deep().make_keras_dataset(self, batch_size=batch_size, shuffle_buffer=shuffle_buffer, epoch=epoch,
                                          dtype=dtype, drop_last=drop_last, rank=rank, world_size=world_size,
                                          **keras_options)

    # -- other engines (extras that register a bridge, e.g. streamml[spark]) ----------------------
    def to_spark(self, spark: Any, **options: Any) -> Any:
        """This dataset read by Spark: a :class:`streamml.spark.SparkDataset` (``.df`` is the
        DataFrame over exactly these pinned ranges; see :mod:`streamml.spark.dataset`)."""
        return bridge("spark")(self, spark, **options)

    # -- lineage -------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """Everything needed to rebuild this dataset, plus what reading it observed.

        ``fingerprint`` hashes the spec only (not library versions or observations), so two
        datasets with equal fingerprints read the same records.
        """
        if self._observed is None:
            for _ in self.iter_batches():
                pass
        spec = self.spec.as_dict()
        if spec["features"] is None and self._features is not None:
            spec["features"] = list(self._features)
        fingerprint = hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()
        obs = dict(self._observed or {})
        return {
            "kind": MANIFEST_KIND,
            "spec": spec,
            "fingerprint": fingerprint,
            "topics": sorted({r.topic for r in self.spec.ranges}),
            "rows": obs.get("rows"),
            "labelled": obs.get("labelled"),
            "schema_versions": obs.get("schema_versions", []),
            "pipeline_hash": (obs.get("pipeline_hashes") or [None])[0] if len(obs.get("pipeline_hashes", [])) <= 1
            else obs.get("pipeline_hashes"),
            "seed": self.spec.seed,
            "libraries": library_versions(),
        }


_BRIDGES: dict[str, Any] = {}


def register_bridge(engine: str, fn: Any) -> None:
    """Make ``Dataset.to_<engine>`` call ``fn(dataset, session, **options)`` (done by the bridge package)."""
    _BRIDGES[engine] = fn


def bridge(engine: str) -> Any:
    """The registered bridge of ``engine``; the bridge package (``streamml.<engine>``, an extra) is a
    plug-in loaded by name here, so this module never imports it."""
    if engine not in _BRIDGES:
        import importlib

        try:
            importlib.import_module(f"streamml.{engine}")
        except ImportError as exc:
            raise ConfigError(f"the {engine} bridge cannot be loaded: {exc}",
                              hint=f"pip install 'streamml[{engine}]'") from exc
    return _BRIDGES[engine]


def _deep() -> Any:
    try:
        from streamml.train import deep_data
    except ImportError as exc:
        raise ConfigError(f"deep learning from topics needs {exc.name or 'torch'}",
                          hint="pip install 'streamml[deep]'") from exc
    return deep_data


def _topic(settings: Settings, name: str, kind: str) -> str:
    """``name`` when such a topic exists, else resolved with default ``kind``
    (:func:`streamml.kafka.names.resolve_topic`)."""
    from streamml.kafka.admin import list_topics
    from streamml.kafka.names import resolve_topic

    return resolve_topic(name, settings.namespace, kind=kind, existing=list_topics(settings))


def _max_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
