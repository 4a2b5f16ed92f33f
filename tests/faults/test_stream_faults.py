"""Exactly-once under repeated SIGKILL of stream workers, under load (the long variant).

Ten kills spread over two workers while a producer writes; the independent read_committed
verifier must find zero lost and zero duplicate windows and aggregates equal to the
recomputation from the input. One of the kills is made certain to land inside an open
transaction (the worker kills itself between flush and commit); the writes of killed
transactions exist in the output and changelog topics but are aborted.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from streamml.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
eos = importlib.import_module("test_stream_eos")


KILL_HOOK = """
# Fault injection: the first worker to find the marker file SIGKILLs itself inside an open
# transaction (outputs and changelog written and flushed, not committed).
import os, signal
from streamml.kafka import transactions as _tx

_commit = _tx.TransactionalSession.commit
def _commit_or_die(self, offsets=None):
    try:
        os.rename({marker!r}, {marker!r} + ".taken")
    except OSError:
        return _commit(self, offsets)
    os.kill(os.getpid(), signal.SIGKILL)
_tx.TransactionalSession.commit = _commit_or_die
"""


def test_ten_sigkills_under_load_lose_and_duplicate_nothing(settings: Settings, tmp_path: Path,
                                                            monkeypatch: object) -> None:
    from streamml.kafka.admin import list_topics
    from streamml.verify import read_topic

    marker = tmp_path / "kill-once"
    marker.touch()
    monkeypatch.setattr(eos, "APP", KILL_HOOK.format(marker=str(marker)) + eos.APP)  # type: ignore[attr-defined]
    r = eos.kill_scenario(settings, tmp_path, kills=10, workers=2, n=60_000, rate=3000, seed=11)
    assert not marker.exists(), "the in-transaction kill never fired"
    changelogs = [t for t in list_topics(settings) if t.startswith(f"{settings.namespace}.changelog.")]
    r["aborted_changelog_records"] = sum(
        eos.aborted_records(settings, t, len(read_topic(settings, t))) for t in changelogs)
    print("fault report", r)
    assert r["kills"] == 10
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["extra"] == 0 and r["wrong"] == 0, r
    assert r["dup_ids"] == 0 and r["outputs"] == r["expected"]
    # the kills landed inside open transactions: their writes exist but were aborted
    assert r["aborted_records"] + r["aborted_changelog_records"] > 0
    assert r["open_transactions"] == 0
