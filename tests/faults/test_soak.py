"""A short soak through the real command: load, random broker/worker faults, then the verifier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults


def test_short_soak_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    res = subprocess.run([sys.executable, "-m", "streamml", "soak", "--minutes", "1", "--faults", "3", "--rate", "200",
                          "--seed", "7", "--report", str(report_file)],
                         capture_output=True, text=True, timeout=900)
    assert report_file.exists(), res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(report_file.read_text())
    print(json.dumps({k: v for k, v in report.items() if k != "log"}), *report["log"], sep="\n")
    assert report["faults_total"] >= 3
    assert report["acked"] == report["records"] >= 12_000  # 1 min at 200/s, longer while faults remain
    for stage in report["stages"].values():
        assert stage["lost"] == 0 and stage["duplicated"] == 0 and stage["open_transactions"] == 0
    assert report["under_replicated"] == 0
    assert res.returncode == 0, res.stderr[-2000:]
