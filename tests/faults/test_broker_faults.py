"""Broker faults on a 3-node cluster (replication 3, min.insync.replicas 2, no unclean election):
SIGKILL and clean restart of each broker in turn, then of the partition leader five times, while
events are ingested, processed by exactly-once stream workers and scored by exactly-once scorers. Every
acknowledged ingest record must appear exactly once downstream, per the independent read_committed verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamml.chaos import AckedProducer, BrokerChaos, Procs, stage_report, wait_until, write_app
from streamml.chaos.soak import publish_soak_model
from streamml.config import Settings
from streamml.kafka.admin import ensure_topic, topic_config
from streamml.kafka.inspect import under_replicated, wait_fully_replicated
from streamml.kafka.local import LocalCluster
from streamml.verify import read_topic, verify

pytestmark = pytest.mark.faults


def run_scenario(cluster: LocalCluster, settings: Settings, tmp: Path, n: int = 6000, rate: float = 150) -> dict:
    raw, out = settings.topic("raw", "pay"), settings.topic("features", "pay")
    ensure_topic(settings, raw, 3, replication=3, config={"min.insync.replicas": "2"})
    assert topic_config(settings, raw)["unclean.leader.election.enable"] == "false"
    app = write_app(tmp, "pay", "pay")
    procs = Procs(settings, tmp)
    procs.start("worker0", ["run", str(app), "--worker-index", "0", "--max-batch", "500"])
    procs.start("worker1", ["run", str(app), "--worker-index", "1", "--max-batch", "500"])
    preds = settings.topic("predictions", "fraud")
    ensure_topic(settings, out, 3, replication=3)
    publish_soak_model(settings)
    for inst in ("a", "b"):
        procs.start(f"scorer-{inst}", ["serve", "--model", "fraud", "--input", "pay", "--instance", inst,
                                      "--batch-size", "500"])
    producer = AckedProducer(settings, raw, n, rate)
    chaos = BrokerChaos(cluster, settings)
    producer.start()
    try:
        chaos.each_broker_in_turn(hard=True)
        chaos.each_broker_in_turn(hard=False)
        chaos.leader_kills(raw, times=5)
        producer.join(600)
        assert not producer.is_alive()
        if not wait_until(lambda: len(read_topic(settings, preds, 30)) >= len(producer.acked), 240):
            procs.dump_stacks()
            pytest.fail(f"{len(read_topic(settings, preds, 30))} predictions for {len(producer.acked)} acked "
                        f"events ({len(read_topic(settings, out, 30))} features)\n"
                        + stage_report(settings, [raw, out, preds]) + "\n" + procs.logs(60))
    finally:
        procs.stop_all()
    report = verify(settings, [raw], [out], expected=lambda r: r.header("sm.event_id") in producer.acked)
    scoring = verify(settings, [out], [preds])
    assert wait_fully_replicated(settings, 120)
    result = {"records_sent": n, "acked": len(producer.acked), "send_failures": len(producer.failed),
              "faults": chaos.faults, **report.as_dict(), "scoring": scoring.as_dict(),
              "under_replicated_at_end": under_replicated(settings)}
    (tmp / "report.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_partition", "scoring")}),
          "\nscoring:", scoring.summary(), "\n" + "\n".join(chaos.log))
    assert report.ok, report.summary()
    assert scoring.ok, "scoring: " + scoring.summary()
    assert result["under_replicated_at_end"] == 0
    assert len(producer.acked) == n, f"{len(producer.failed)} sends failed: acks=all should ride out one broker down"
    return result


def test_broker_kills_during_ingest_and_stream_processing(cluster3: LocalCluster, settings3: Settings,
                                                          tmp_path: Path) -> None:
    settings3.home.mkdir(parents=True, exist_ok=True)
    run_scenario(cluster3, settings3, tmp_path)


def test_broker_kills_on_a_secured_cluster(secure_cluster3: LocalCluster, tmp_path: Path) -> None:
    """The same scenario over SASL_SSL with ACLs, as a least-privileged user whose credentials
    reach every component (producer, CLI workers, verifier) through settings only."""
    import uuid

    from streamml.kafka.security import add_user, grant_namespace

    ns = "s" + uuid.uuid4().hex[:8]
    admin = secure_cluster3.settings()
    add_user(admin, "pipeline", "pipeline-secret")
    grant_namespace(admin, "pipeline", ns)
    s = secure_cluster3.settings(user="pipeline", password="pipeline-secret").with_(
        namespace=ns, home=tmp_path / "home")
    s.home.mkdir(parents=True)
    run_scenario(secure_cluster3, s, tmp_path, n=3000)
