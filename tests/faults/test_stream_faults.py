"""Exactly-once under repeated SIGKILL of stream workers, under load (the long variant).

Ten kills spread over two workers while a producer writes; the independent read_committed
verifier must find zero lost and zero duplicate windows and aggregates equal to the
recomputation from the input. Writes of the killed transactions exist in the log but are
aborted (counted as ``aborted_records``), which shows the kills hit open transactions.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from streamml.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
eos = importlib.import_module("test_stream_eos")


def test_ten_sigkills_under_load_lose_and_duplicate_nothing(settings: Settings, tmp_path: Path) -> None:
    r = eos.kill_scenario(settings, tmp_path, kills=10, workers=2, n=60_000, rate=3000, seed=11)
    print("fault report", r)
    assert r["kills"] == 10
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["extra"] == 0 and r["wrong"] == 0, r
    assert r["dup_ids"] == 0 and r["outputs"] == r["expected"]
    assert r["aborted_records"] > 0          # some kills landed inside a transaction
    assert r["open_transactions"] == 0
