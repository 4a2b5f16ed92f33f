"""Monitoring: metrics, drift, live quality, alerts and retrain triggers, the dashboard.

Components record metrics per batch through :func:`get_metrics` (see
:mod:`streamml.monitor.metrics` for the API); :class:`Monitor` watches one model and
asks for retraining on ``<ns>.control`` when its inputs drift or its quality drops.
"""

from streamml.monitor.alerts import Alerter, control_sender
from streamml.monitor.drift import DriftDetector, DriftReport, Reference, ks_statistic, psi
from streamml.monitor.metrics import Metrics, get_metrics, latencies_from_headers
from streamml.monitor.quality import QualityTracker

__all__ = [
    "Metrics", "get_metrics", "latencies_from_headers", "Reference", "DriftDetector", "DriftReport", "psi",
    "ks_statistic", "QualityTracker", "Alerter", "control_sender", "Monitor", "MonitorConfig",
]


def __getattr__(name: str) -> object:
    if name in ("Monitor", "MonitorConfig"):
        from streamml.monitor import loop

        return getattr(loop, name)
    raise AttributeError(name)
