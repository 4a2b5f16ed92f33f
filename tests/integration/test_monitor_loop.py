"""The closed loop, shortened: a new fraud pattern is noticed, retrained on, promoted and swapped in, unattended."""

from __future__ import annotations

import io

import orjson
from rich.console import Console
from test_kafka_layer import drain

from streamml.config import Settings
from streamml.demos.fraud import MODEL, Timeline, run


def test_closed_loop_detects_new_fraud_pattern_retrains_promotes_and_swaps(settings: Settings) -> None:
    out = io.StringIO()
    rep = run(settings, timeline=Timeline.short(), console=Console(file=out, width=140), port=0)
    text = out.getvalue()
    assert rep["errors"] == [], (rep["errors"], rep.get("tracebacks"), text)

    # the lifecycle: unsupervised v1, supervised v2 (promoted over v1), v3 asked for by the monitor
    versions = {v["version"]: v for v in rep["versions"]}
    assert versions[1]["trainer"] == "isolation-forest"
    assert versions[2]["promoted"] and versions[2]["reason"].startswith("control: labels available")
    assert rep["retrains_requested"] == 1, text
    monitor_driven = [v for v in rep["versions"] if v["version"] > 2]
    assert len(monitor_driven) == 1, rep["versions"]
    v3 = monitor_driven[0]
    assert v3["reason"].startswith(("control: drift", "control: quality", "control: prediction_drift")), v3
    assert v3["promoted"] and v3["stage"] == "production"

    # exactly one retrain command from the monitor on <ns>.control, naming its reason
    commands = [orjson.loads(v) for _, v in drain(settings, settings.topic("control"), expect=2)]
    from_monitor = [c for c in commands if c.get("source") == "monitor"]
    assert len(from_monitor) == 1 and from_monitor[0]["command"] == "retrain" and from_monitor[0]["model"] == MODEL
    assert v3["reason"] == "control: " + from_monitor[0]["reason"]

    # the scorer swapped: v3 scored payments after the new pattern started, and caught the pattern
    after = {r["version"]: r for r in rep["quality"] if r["phase"] == "after"}
    assert 2 in after and 3 in after, rep["quality"]
    assert after[2]["cashout_recall"] is not None and after[3]["cashout_recall"] is not None
    assert after[3]["cashout_recall"] > after[2]["cashout_recall"]
    assert rep["throughput"] > 0 and rep["pipeline_latency_ms"]["p50"] > 0
    for needle in ("dashboard: http://", "RETRAIN requested", "PROMOTED", f"now on v{v3['version']}"):
        assert needle in text, (needle, text)
