"""Prometheus' naming guide (https://prometheus.io/docs/practices/naming/) as a check.

:func:`problems` parses an exposition with prometheus_client's own text parser and returns
one line per family or sample that breaks a convention streamml follows (empty = clean):

- names are snake_case with the ``streamml_`` prefix, and each family is exposed once;
- types are counter, gauge, histogram or info; never a summary or untyped;
- ``_total`` only and always on counters;
- time in ``_seconds``, sizes in ``_bytes``; no ``_ms``, kilobytes, percent...;
- versions only as labels of an ``_info`` gauge whose value is 1;
- distributions as histograms (cumulative buckets, ``+Inf`` = ``_count``), never percentiles
  as gauges (no ``quantile``/``p99`` gauges) nor cumulative counts as gauges.
"""

from __future__ import annotations

import math
import re

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["problems"]

_NAME = re.compile(r"^streamml_[a-z0-9]+(_[a-z0-9]+)*$")
_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPES = {"counter", "gauge", "histogram", "info"}
# tokens that name a non-base unit
_NOT_BASE = {"ms", "msec", "millis", "milliseconds", "us", "microseconds", "ns", "nanoseconds", "minutes",
             "hours", "days", "kb", "mb", "gb", "kib", "mib", "kilobytes", "megabytes", "gigabytes", "bits",
             "percent", "pct"}
# tokens that say the quantity is a time (must be in seconds) or a size (must be in bytes)
_TIME = {"latency", "duration", "delay", "elapsed", "age", "uptime", "time", "timestamp", "seconds"}
_SIZE = {"size", "memory", "payload", "bytes"}
# pre-computed percentiles or cumulative counts exported as gauges
_PERCENTILE = re.compile(r"(^|_)(p\d{2,3}|percentiles?|quantiles?|median)(_|$)")
_COUNTISH = {"records", "count", "events", "requests", "messages", "batches", "errors", "processed"}


def problems(text: str, where: str = "") -> list[str]:
    """Every breach of the conventions in the exposition ``text`` (``where`` prefixes the lines)."""
    out: list[str] = []
    seen: set[str] = set()

    def bad(name: str, why: str) -> None:
        out.append(f"{where}{name}: {why}")

    for fam in text_string_to_metric_families(text):
        exposed = fam.name + "_total" if fam.type == "counter" else fam.name
        if exposed in seen:
            bad(exposed, "exposed twice (two TYPE blocks for one name)")
        seen.add(exposed)
        if not _NAME.match(exposed):
            bad(exposed, "not snake_case with the streamml_ prefix")
        if fam.type not in _TYPES:
            bad(exposed, f"type {fam.type} (use counter, gauge, histogram or info)")
        tokens = fam.name.split("_")[1:]
        unit = tokens[-1] if tokens else ""
        if set(tokens) & _NOT_BASE:
            bad(exposed, f"not in base units ({sorted(set(tokens) & _NOT_BASE)}): use seconds or bytes")
        if set(tokens) & _TIME and unit != "seconds":
            bad(exposed, "a time must be in seconds, with the _seconds suffix")
        if set(tokens) & _SIZE and unit != "bytes":
            bad(exposed, "a size must be in bytes, with the _bytes suffix")
        if fam.type != "counter" and (fam.name.endswith("_total")
                                      or any(s.name.endswith("_total") for s in fam.samples)):
            bad(exposed, f"_total on a {fam.type} (only counters end in _total)")
        if fam.type == "counter":
            for s in fam.samples:
                if s.name not in (fam.name + "_total", fam.name + "_created"):
                    bad(s.name, "a counter sample must end in _total")
                if s.value < 0 or math.isnan(s.value):
                    bad(s.name, f"counter value {s.value}")
        is_info = fam.type == "info" or (fam.type == "gauge" and fam.name.endswith("_info"))
        if fam.name.endswith("_info") and fam.type not in ("gauge", "info"):
            bad(exposed, f"an _info metric must be a gauge, not a {fam.type}")
        if is_info:
            for s in fam.samples:
                if s.value != 1:
                    bad(s.name, f"an _info sample has the value 1, not {s.value}")
        if any("version" in s.labels for s in fam.samples) and not is_info:
            bad(exposed, "a version label outside an _info metric")
        if fam.type == "gauge" and not is_info:
            if _PERCENTILE.search(fam.name) or any({"quantile", "percentile"} & set(s.labels) for s in fam.samples):
                bad(exposed, "pre-computed percentiles as a gauge: expose a histogram")
            if unit in _COUNTISH:
                bad(exposed, "looks like a cumulative count exported as a gauge: expose a counter")
        if fam.type == "histogram":
            out += [f"{where}{p}" for p in _histogram_problems(fam)]
        for s in fam.samples:
            for label in s.labels:
                if not _LABEL.match(label) and label != "le":
                    bad(s.name, f"label {label!r} is not snake_case")
    return out


def _histogram_problems(fam: object) -> list[str]:
    series: dict[tuple[tuple[str, str], ...], dict[str, object]] = {}
    for s in fam.samples:  # type: ignore[attr-defined]
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        row = series.setdefault(key, {"buckets": []})
        if s.name.endswith("_bucket"):
            row["buckets"].append((float(s.labels["le"]), s.value))  # type: ignore[union-attr]
        elif s.name.endswith("_count"):
            row["count"] = s.value
        elif s.name.endswith("_sum"):
            row["sum"] = s.value
        else:
            return [f"{s.name}: a histogram sample is _bucket, _count or _sum"]
    out = []
    for key, row in series.items():
        name = f"{fam.name}{dict(key)}"  # type: ignore[attr-defined]
        buckets = sorted(row["buckets"])  # type: ignore[call-overload]
        counts = [v for _, v in buckets]
        if not buckets or buckets[-1][0] != math.inf:
            out.append(f"{name}: no le=+Inf bucket")
        elif row.get("count") != counts[-1]:
            out.append(f"{name}: _count {row.get('count')} != +Inf bucket {counts[-1]}")
        if "sum" not in row:
            out.append(f"{name}: no _sum")
        if any(b < a for a, b in zip(counts, counts[1:])):
            out.append(f"{name}: buckets are not cumulative")
    return out
