"""Prometheus metric families, built from metric state in one place.

Both ``/metrics`` endpoints streamml serves use :func:`families`: a component's own
(:func:`streamml.monitor.metrics.serve_metrics`, from :meth:`Metrics.state`) and the
dashboard's namespace-wide one (from the latest snapshot of every instance on
``<ns>.metrics``, with a ``worker`` label). The names follow Prometheus' naming guide
(https://prometheus.io/docs/practices/naming/): one ``streamml_`` prefix, base units,
``_total`` on counters and only there, versions as an ``_info`` metric, distributions as
histograms (never percentiles exported as gauges), one name per quantity:

=================================  =========  ==========================================
name                               type       labels
=================================  =========  ==========================================
``streamml_records_total``         counter    component
``streamml_batches_total``         counter    component
``streamml_errors_total``          counter    component, kind
``streamml_dlq_records_total``     counter    component, reason
``streamml_latency_seconds``       histogram  component, stage
``streamml_model_info``            gauge = 1  component, model, version
``streamml_prediction_score``      histogram  model
``streamml_consumer_lag``          gauge      group, topic, partition (records behind)
``streamml_<gauge>``               gauge      free-form, e.g. ``streamml_drift_psi``
                                              {model, feature}, ``streamml_drift_ks``,
                                              ``streamml_quality_precision`` {model}
=================================  =========  ==========================================

The state is the JSON shape of :meth:`Metrics.snapshot` (a subset of it):

``components``  ``{name: {records, batches, errors_by_kind, dlq, dlq_reasons,
                latency_seconds: {stage: {le, counts (cumulative, last = +Inf), sum}}}}``
``models``      ``[{component, model, version}]``
``predictions`` ``{model: {buckets, counts (per bucket, last = overflow), sum}}``
``lag``         ``[{group, topic, partition, lag}]``
``gauges``      ``[{name, labels, value}]``

>>> fams = families([({"components": {"serve.fraud": {"records": 3, "latency_seconds": {"e2e": {
...     "le": [0.01, 0.1], "counts": [1, 2, 3], "sum": 0.3}}}}}, {"worker": "w1"})])
>>> [(f.name, f.type) for f in fams][:5]  # doctest: +NORMALIZE_WHITESPACE
[('streamml_records', 'counter'), ('streamml_batches', 'counter'), ('streamml_errors', 'counter'),
 ('streamml_dlq_records', 'counter'), ('streamml_latency_seconds', 'histogram')]
>>> [(s.name, s.labels.get("le"), s.value) for s in fams[4].samples][:2]
[('streamml_latency_seconds_bucket', '0.01', 1.0), ('streamml_latency_seconds_bucket', '0.1', 2.0)]
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping, cast

from prometheus_client import utils
from prometheus_client.metrics_core import Metric

__all__ = ["families", "check_gauge_name", "CORE_NAMES"]

#: The families every endpoint exposes (possibly without samples), by exposed name.
CORE_NAMES = ("streamml_records_total", "streamml_batches_total", "streamml_errors_total",
              "streamml_dlq_records_total", "streamml_latency_seconds", "streamml_model_info",
              "streamml_prediction_score", "streamml_consumer_lag")
_GAUGE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# suffixes a free-form gauge may not take: they belong to counters, histograms, info metrics,
# or are units that are not base units
_RESERVED = ("_total", "_count", "_sum", "_bucket", "_created", "_info", "_ms", "_milliseconds",
             "_microseconds", "_minutes", "_hours", "_kb", "_mb", "_gb", "_kilobytes", "_megabytes", "_percent")


def check_gauge_name(name: str) -> str:
    """``name`` (without the ``streamml_`` prefix) if it is a valid free-form gauge name, else ValueError.

    >>> check_gauge_name("drift_psi")
    'drift_psi'
    >>> check_gauge_name("latency_ms")
    Traceback (most recent call last):
    ...
    ValueError: gauge name 'latency_ms' breaks Prometheus naming: snake_case, base units, no _total/_info suffix
    """
    full = f"streamml_{name}"
    if (not _GAUGE.match(name) or name.endswith(_RESERVED) or full in CORE_NAMES
            or any(full.startswith(c + "_") for c in CORE_NAMES)):
        raise ValueError(f"gauge name {name!r} breaks Prometheus naming: snake_case, base units, "
                         "no _total/_info suffix")
    return name


#: how prometheus_client writes ``le`` (its own histograms' spelling: 0.005, 1.0, +Inf)
_le: Callable[[float], str] = cast(Callable[[float], str], utils.floatToGoString)


class _Family:
    """One metric family whose samples are keyed by (sample name, labels): a later source wins."""

    def __init__(self, name: str, doc: str, typ: str) -> None:
        self.metric = Metric(name, doc, typ)
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[dict[str, str], float]] = {}

    def add(self, suffix: str, labels: Mapping[str, str], value: float) -> None:
        lbl = {k: str(v) for k, v in labels.items()}
        name = self.metric.name + suffix
        self.samples[(name, tuple(sorted(lbl.items())))] = (lbl, float(value))

    def build(self) -> Metric:
        for (name, _), (labels, value) in self.samples.items():
            self.metric.add_sample(name, labels, value)
        return self.metric


def _histogram(fam: _Family, labels: Mapping[str, str], le: Iterable[float], cumulative: list[float],
               total: float) -> None:
    bounds = [float(x) for x in le]
    if len(cumulative) != len(bounds) + 1:
        return
    for bound, count in zip(bounds, cumulative):
        fam.add("_bucket", {**labels, "le": _le(bound)}, count)
    fam.add("_bucket", {**labels, "le": "+Inf"}, cumulative[-1])
    fam.add("_count", labels, cumulative[-1])
    fam.add("_sum", labels, total)


def families(sources: Iterable[tuple[Mapping[str, Any], Mapping[str, str]]], *,
             lag: Iterable[Mapping[str, Any]] | None = None) -> list[Metric]:
    """The metric families of ``sources``: pairs of (state, labels added to each sample).

    ``lag``, when given, replaces the sources' consumer-lag rows (the dashboard measures lag
    itself, once per partition, rather than once per reporting instance).
    """
    records = _Family("streamml_records", "Records processed", "counter")
    batches = _Family("streamml_batches", "Batches processed", "counter")
    errors = _Family("streamml_errors", "Failed records or calls", "counter")
    dlq = _Family("streamml_dlq_records", "Records sent to the dead-letter topic", "counter")
    latency = _Family("streamml_latency_seconds", "Per-record latency in seconds (stage e2e: event time to "
                      "processed; other stages as named)", "histogram")
    model = _Family("streamml_model", "Model version in use (always 1; the version is a label)", "info")
    pred = _Family("streamml_prediction_score", "Distribution of prediction scores", "histogram")
    lg = _Family("streamml_consumer_lag", "Consumer lag in records (high watermark - committed offset)", "gauge")
    gauges: dict[str, _Family] = {}
    lag_rows: list[Mapping[str, Any]] = []
    for state, extra in sources:
        for comp, c in (state.get("components") or {}).items():
            base = {"component": comp, **extra}
            records.add("_total", base, c.get("records", 0))
            batches.add("_total", base, c.get("batches", 0))
            for kind, k in (c.get("errors_by_kind") or {}).items():
                errors.add("_total", {**base, "kind": kind}, k)
            reasons = c.get("dlq_reasons") or {}
            for reason, k in reasons.items():
                dlq.add("_total", {**base, "reason": reason}, k)
            other = int(c.get("dlq", 0)) - sum(int(v) for v in reasons.values())
            if other or not reasons:
                dlq.add("_total", {**base, "reason": ""}, other)
            for stage, h in (c.get("latency_seconds") or {}).items():
                _histogram(latency, {**base, "stage": stage}, h.get("le", []),
                           [float(v) for v in h.get("counts", [])], float(h.get("sum", 0.0)))
        for m in state.get("models") or []:
            model.add("_info", {"component": m["component"], "model": m["model"], "version": str(m["version"]),
                                **extra}, 1.0)
        for name, p in (state.get("predictions") or {}).items():
            counts = [float(v) for v in p.get("counts", [])]
            cum = [sum(counts[: i + 1]) for i in range(len(counts))]
            total = p.get("sum")
            if total is None:  # snapshots written before the sum was published
                total = float(p.get("mean", 0.0)) * (cum[-1] if cum else 0.0)
            _histogram(pred, {"model": name, **extra}, p.get("buckets", []), cum, float(total))
        lag_rows += state.get("lag") or []
        for g in state.get("gauges") or []:
            try:
                gname = check_gauge_name(str(g["name"]))
            except ValueError:
                continue  # a snapshot from an older or foreign writer: never break the scrape
            fam = gauges.get(gname)
            if fam is None:
                fam = gauges[gname] = _Family(f"streamml_{gname}", f"streamml gauge {gname}", "gauge")
            fam.add("", {**(g.get("labels") or {}), **extra}, g["value"])
    for r in (lag_rows if lag is None else lag):
        lg.add("", {"group": r["group"], "topic": r["topic"], "partition": str(r["partition"])}, r["lag"])
    core = [records, batches, errors, dlq, latency, model, pred, lg]
    return [f.build() for f in core] + [gauges[k].build() for k in sorted(gauges)]
