"""A pinned :class:`~streamml.train.Dataset` as a Spark DataFrame: the same ranges, rows, labels and manifest.

Spark reads exactly the dataset's pinned :class:`~streamml.kafka.read.TopicRange` values with
its Kafka batch source (``assign`` plus ``startingOffsets``/``endingOffsets`` per partition,
``kafka.isolation.level=read_committed``), one Spark partition per Kafka partition. The rows are
made by the dataset's own code, inside the executors: each Arrow batch of raw values goes
through :meth:`Dataset.prepare_batch` (the same JSON decoding and schema, time filter,
point-in-time label join and unlabelled rule as ``Dataset.iter_batches``). The label table
(``key, _label, _arrival, _loff``, small) is read by Spark too, built on the driver by the same
:func:`~streamml.train.labels.labels_frame`, and broadcast.

Every row carries ``_topic``, ``_partition`` and ``_offset``: the order key of the dataset
(``topic, partition, offset``); :meth:`SparkDataset.collect` sorts by it, so a model fitted on
the collected rows sees them in the order ``TrainingJob`` gives them, and fits the same bytes.

The columns and types are fixed before the query runs: the dataset's ``schema`` when it has one,
else what a sample of the first rows decodes to. A batch that decodes to another type fails with
a :class:`~streamml.errors.SchemaError` naming the column (give the dataset a ``schema``).

:meth:`SparkDataset.manifest` counts rows and labelled rows with Spark, and reads the
schema-version and pipeline-hash headers of *every* record (streamml's own reader samples the
first and last record of each batch by default), so on topics whose headers change inside a
batch it may list more versions than ``Dataset.manifest()``; the spec and fingerprint are the same.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from streamml.errors import ConfigError, SchemaError
from streamml.kafka.read import TopicRange
from streamml.spark.session import kafka_options, require_pyspark
from streamml.train.dataset import Dataset, _decode
from streamml.train.labels import labels_frame
from streamml.train.reader import _SCHEMA, _SCHEMA_VERSION, PIPELINE_HASH_HEADERS, RawBatch

__all__ = ["SparkDataset", "to_spark", "read_ranges_df"]

_ORDER = ["_topic", "_partition", "_offset"]


def read_ranges_df(spark: Any, settings: Any, ranges: Sequence[TopicRange], *, headers: bool = False,
                   extra_options: Mapping[str, str] | None = None) -> Any:
    """Spark's Kafka batch source over exactly ``ranges`` (read committed), or None when they are empty.

    A partition listed more than once is read once per listing (the reads are unioned).
    """
    todo = [r for r in sorted(ranges) if len(r) > 0]
    waves: list[list[TopicRange]] = []
    for r in todo:
        for w in waves:
            if all((x.topic, x.partition) != (r.topic, r.partition) for x in w):
                w.append(r)
                break
        else:
            waves.append([r])
    frames = []
    for w in waves:
        assign: dict[str, list[int]] = {}
        start: dict[str, dict[str, int]] = {}
        end: dict[str, dict[str, int]] = {}
        for r in w:
            assign.setdefault(r.topic, []).append(r.partition)
            start.setdefault(r.topic, {})[str(r.partition)] = r.start
            end.setdefault(r.topic, {})[str(r.partition)] = r.end
        reader = spark.read.format("kafka").options(**kafka_options(settings, extra_options))
        frames.append(reader.option("assign", orjson.dumps(assign).decode())
                      .option("startingOffsets", orjson.dumps(start).decode())
                      .option("endingOffsets", orjson.dumps(end).decode())
                      .option("kafka.isolation.level", "read_committed")
                      .option("includeHeaders", "true" if headers else "false").load())
    if not frames:
        return None
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def _plain(t: pa.DataType) -> pa.DataType:
    """Arrow types Spark takes: plain strings, binaries and lists."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(_plain(t.value_type))
    return t


def _arrow_schema(df: pl.DataFrame) -> pa.Schema:
    return pa.schema([pa.field(f.name, _plain(f.type)) for f in df.to_arrow().schema])


def _conform(df: pl.DataFrame, schema: pa.Schema, where: str) -> pa.Table:
    """``df`` with exactly ``schema``'s columns and types (missing columns null)."""
    t = df.to_arrow()
    cols = []
    for f in schema:
        if f.name not in t.column_names:
            cols.append(pa.nulls(t.num_rows, f.type))
            continue
        c = t.column(f.name)
        if c.type != f.type:
            try:
                c = c.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"{where}: column {f.name!r} decodes as {c.type}, the frame's schema says {f.type}",
                                  hint="give the dataset a schema= (column -> dtype) so every batch decodes alike"
                                  ) from exc
        cols.append(c)
    return pa.Table.from_arrays(cols, schema=schema)


def _runs(rb: pa.RecordBatch) -> Iterator[tuple[str, int, list[bytes], list[int]]]:
    """Consecutive records of one partition: ``(topic, partition, values, offsets)``, tombstones skipped."""
    topics = rb.column("topic").to_pylist()
    parts = rb.column("partition").to_pylist()
    values = rb.column("value").to_pylist()
    offsets = rb.column("offset").to_pylist()
    i, n = 0, len(values)
    while i < n:
        j = i
        while j < n and topics[j] == topics[i] and parts[j] == parts[i]:
            j += 1
        keep = [k for k in range(i, j) if values[k] is not None]
        yield topics[i], int(parts[i]), [values[k] for k in keep], [int(offsets[k]) for k in keep]
        i = j


def _rows(ds: Dataset, rb: pa.RecordBatch, labels: pl.DataFrame | None) -> Iterator[pl.DataFrame]:
    for topic, part, values, offsets in _runs(rb):
        if not values:
            continue
        df = ds.prepare_batch(RawBatch(topic, part, values, offsets), labels, with_metadata=True)
        yield df.with_columns(pl.lit(topic, dtype=pl.String).alias("_topic"))


class SparkDataset:
    """A :class:`Dataset` read by Spark: :attr:`df` (the DataFrame), :meth:`collect`, :meth:`manifest`.

    It offers what trainers use of a dataset (``to_numpy``, ``features``, ``seed``, ``label``),
    so ``SklearnClassifier()(sds)`` trains on the Spark-read rows.
    """

    def __init__(self, dataset: Dataset, spark: Any, *, extra_options: Mapping[str, str] | None = None) -> None:
        require_pyspark()
        self.dataset = dataset
        self.spark = spark
        self.extra_options = dict(extra_options or {})
        self._labels: pl.DataFrame | None = None
        self._df: Any = None
        self.schema: pa.Schema | None = None

    # -- what trainers use ----------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.dataset.seed

    @property
    def label(self) -> str:
        return self.dataset.label

    @property
    def features(self) -> list[str]:
        if self.dataset.spec.features is not None:
            return list(self.dataset.spec.features)
        skip = {self.dataset.spec.key, self.dataset.spec.time_field, self.dataset.spec.label, *_ORDER}
        schema = self._schema()
        return [f.name for f in schema if f.name not in skip and (pa.types.is_integer(f.type)
                                                                   or pa.types.is_floating(f.type))]

    def to_numpy(self, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray | None]:
        """``(X, y)`` of the collected rows, in the dataset's order (see :meth:`Dataset.frame_to_numpy`)."""
        ds = self.dataset.with_features(self.features)
        return ds.frame_to_numpy(self.collect(), dtype)

    # -- reading ----------------------------------------------------------------------------
    def label_table(self) -> pl.DataFrame | None:
        """The dataset's label table, read by Spark, in the shape :func:`join_labels` takes."""
        src = self.dataset.spec.labels
        if src is None:
            return None
        if self._labels is None:
            from pyspark.sql import functions as F

            raw = read_ranges_df(self.spark, self.dataset.settings, src.ranges, extra_options=self.extra_options)
            frames = []
            if raw is not None:
                t = pl.from_arrow(raw.select("topic", "partition", "offset", "value",
                                             F.unix_millis("timestamp").alias("ts")).toArrow())
                assert isinstance(t, pl.DataFrame)
                t = t.filter(pl.col("value").is_not_null()).sort("topic", "partition", "offset")
                for (_topic, _part), g in t.group_by(["topic", "partition"], maintain_order=True):
                    frames.append(labels_frame(_decode(g["value"].to_list()), key=src.rule.key, field=src.field,
                                               arrival=g["ts"].to_list(), offsets=g["offset"].to_list()))
            self._labels = (pl.concat(frames, how="diagonal_relaxed") if frames else
                            labels_frame(pl.DataFrame(), key=src.rule.key, field=src.field, arrival=[], offsets=[]))
        return self._labels

    def _raw(self, headers: bool = False) -> Any:
        return read_ranges_df(self.spark, self.dataset.settings, self.dataset.ranges, headers=headers,
                              extra_options=self.extra_options)

    def _schema(self, sample_rows: int = 2000) -> pa.Schema:
        if self.schema is not None:
            return self.schema
        labels = self.label_table()
        raw = self._raw()
        frames: list[pl.DataFrame] = []
        if raw is not None:
            sample = raw.select("topic", "partition", "offset", "value").limit(sample_rows).toArrow()
            for rb in sample.to_batches():
                frames.extend(_rows(self.dataset, rb, labels))
        if frames:
            df = pl.concat(frames, how="diagonal_relaxed")
        else:  # nothing to sample: the declared schema (or none) plus the order key
            empty = RawBatch("", 0, [], [])
            df = self.dataset.prepare_batch(empty, labels, with_metadata=True).with_columns(
                pl.lit("", dtype=pl.String).alias("_topic"))
            if self.dataset.spec.schema is None and df.width <= 3:
                raise ConfigError("the dataset's ranges hold no records to take the columns from",
                                  hint="give the dataset a schema=, or pin ranges that hold data")
        self.schema = _arrow_schema(df.select([*(c for c in df.columns if c not in _ORDER), *_ORDER]))
        return self.schema

    @property
    def df(self) -> Any:
        """The Spark DataFrame of the dataset's rows (lazy; ``_topic, _partition, _offset`` included)."""
        if self._df is None:
            from pyspark.sql.pandas.types import from_arrow_schema

            schema = self._schema()
            raw = self._raw()
            if raw is None:
                self._df = self.spark.createDataFrame([], from_arrow_schema(schema))
                return self._df
            labels = self.label_table()
            bcast = self.spark.sparkContext.broadcast(_ipc(labels) if labels is not None else None)
            ds = Dataset(self.dataset.settings, self.dataset.spec)

            def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                lab = pl.read_ipc(bcast.value) if bcast.value is not None else None
                for rb in batches:
                    for df in _rows(ds, rb, lab):
                        if df.height:
                            yield from _conform(df, schema, "reading the dataset").to_batches()

            self._df = raw.select("topic", "partition", "offset", "value").mapInArrow(rows, from_arrow_schema(schema))
        return self._df

    def collect(self, *, with_metadata: bool = False) -> pl.DataFrame:
        """The rows on the driver as Polars, in the dataset's order (topic, partition, offset)."""
        t = self.df.orderBy(*_ORDER).toArrow()
        df = pl.from_arrow(t)
        assert isinstance(df, pl.DataFrame)
        return df if with_metadata else df.drop(_ORDER)

    # -- lineage ------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The dataset's manifest, with what Spark's read observed (rows, labelled rows, every record's
        schema-version and pipeline-hash headers)."""
        from pyspark.sql import functions as F

        label = self.dataset.label
        cols = self.df.columns
        agg = [F.count(F.lit(1)).alias("rows")]
        agg.append(F.count(F.col(label)).alias("labelled") if label in cols else F.lit(0).alias("labelled"))
        r = self.df.agg(*agg).collect()[0]
        versions: set[str] = set()
        hashes: set[str] = set()
        raw = self._raw(headers=True)
        if raw is not None:
            keys = [_SCHEMA, _SCHEMA_VERSION, *PIPELINE_HASH_HEADERS]
            hs = raw.select(F.filter("headers", lambda h: h["key"].isin(keys)).alias("h")).where(
                F.size("h") > 0).distinct().collect()
            for row in hs:
                pairs = {h["key"]: (h["value"] or b"").decode() for h in row["h"]}
                for k in PIPELINE_HASH_HEADERS:
                    if pairs.get(k):
                        hashes.add(pairs[k])
                if _SCHEMA_VERSION in pairs:
                    name = pairs.get(_SCHEMA)
                    versions.add(f"{name}:{pairs[_SCHEMA_VERSION]}" if name else pairs[_SCHEMA_VERSION])
        self.dataset.record_observed(rows=int(r["rows"]), labelled=int(r["labelled"]) if label in cols else 0,
                                     schema_versions=sorted(versions), pipeline_hashes=sorted(hashes))
        if self.dataset.spec.features is None:
            self.dataset = self.dataset.with_features(self.features)
            self.dataset.record_observed(rows=int(r["rows"]), labelled=int(r["labelled"]) if label in cols else 0,
                                         schema_versions=sorted(versions), pipeline_hashes=sorted(hashes))
        return self.dataset.manifest()


def _ipc(df: pl.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.write_ipc(buf)
    return buf.getvalue()


def to_spark(dataset: Dataset, spark: Any, *, extra_options: Mapping[str, str] | None = None) -> SparkDataset:
    """``dataset`` as a :class:`SparkDataset` (``.df`` is the DataFrame); see the module docstring."""
    return SparkDataset(dataset, spark, extra_options=extra_options)
