"""File ingest against the real broker: poison to the DLQ, keys and times, resume, SIGKILL without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import drain

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import EXIT_USAGE
from streamml.ingest import ingest_files
from streamml.kafka import clients
from streamml.schema import Field, Schema, SchemaRegistry, codec_for

SCHEMA = Schema("pay", [Field("id", int), Field("amount", float, min=0), Field("cur", str, enum=["EUR", "USD"]),
                        Field("ts", "timestamp")])
SM = [str(Path(sys.executable).parent / "streamml")]


def _row(i: int) -> dict[str, Any]:
    return {"id": i, "amount": round(i * 0.25, 2), "cur": "EUR" if i % 2 else "USD", "ts": 1_700_000_000_000 + i}


def test_poison_jsonl_goes_to_the_dlq_and_the_rest_is_kept(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "pay.jsonl"
    good: dict[int, bytes] = {}
    lines: list[bytes] = []
    poison = {
        b'{"id": 1000, "amount": ': "malformed JSON",
        b'{"id": "x", "amount": 1.0, "cur": "EUR", "ts": 1}': "field 'id': expected int, got str",
        b'{"id": 1001, "amount": 1.0, "cur": "\xff\xfe", "ts": 1}': "invalid UTF-8",
        b'{"id": 1002, "cur": "EUR", "ts": 1}': "missing required field 'amount'",
        b'{"id": 1003, "amount": 1.0, "cur": "EUR", "ts": 1, "pad": "' + b"x" * 1_200_000 + b'"}': "record too large",
    }
    bad_lines: dict[int, str] = {}
    for i in range(3000):
        line = json.dumps(_row(i)).encode()
        lines.append(line)
        good[len(lines)] = line
        if i % 600 == 5:
            p = list(poison)[(i // 600) % len(poison)]
            lines.append(p)
            bad_lines[len(lines)] = poison[p]
    path.write_bytes(b"\n".join(lines) + b"\n")

    report = ingest_files(settings, path, "pay", schema=SCHEMA, key="cur", time_column="ts", chunk_bytes=64 << 10)
    c = report.counts
    assert (c.records_in, c.accepted, c.dead_lettered) == (len(lines), len(good), len(bad_lines))
    assert c.balanced and report.total.as_dict()["accepted"] == len(good)

    raw = drain(settings, settings.topic("raw", "pay"), expect=len(good))
    assert len(raw) == len(good)
    fkey = raw[0]["headers"][H.EVENT_ID].rsplit("-", 1)[0]
    by_id = {m["headers"][H.EVENT_ID]: m for m in raw}
    assert set(by_id) == {f"{fkey}-{n}" for n in good}
    for n, line in good.items():
        m = by_id[f"{fkey}-{n}"]
        rec = json.loads(line)
        assert m["value"] == line and m["key"] == rec["cur"].encode()
        assert m["headers"][H.EVENT_TIME] == str(rec["ts"])
        assert m["headers"][H.SCHEMA] == "pay" and m["headers"][H.SCHEMA_VERSION] == "1"
        assert m["headers"][H.COMPONENT] == "ingest.file"

    dlq = drain(settings, settings.topic("dlq"), expect=len(bad_lines))
    assert len(dlq) == len(bad_lines)
    for m in dlq:
        h = m["headers"]
        file, line_no = h[H.SOURCE].rsplit(":", 1)
        assert file == str(path.resolve()) and h["sm.stream"] == "pay" and h[H.COMPONENT] == "ingest.file"
        assert h[H.REASON].startswith(bad_lines[int(line_no)])
        original = lines[int(line_no) - 1]
        if "too large" in h[H.REASON]:
            assert len(m["value"]) <= 64 * 1024 and original.startswith(m["value"])
            assert h["sm.original_size"] == str(len(original))
        else:
            assert m["value"] == original


def test_csv_and_parquet_with_keys_times_and_resume(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rows = [_row(i) for i in range(500)]
    csv_lines = ["id,amount,cur,ts"] + [f"{r['id']},{r['amount']},{r['cur']},{r['ts']}" for r in rows[:300]]
    csv_lines.insert(50, "1,2")                             # a malformed CSV line
    (folder / "a.csv").write_text("\n".join(csv_lines) + "\n")
    pq.write_table(pa.Table.from_pylist(rows[300:]), folder / "b.parquet")
    (folder / "ignored.txt").write_text("not data")

    report = ingest_files(settings, folder, "mix", schema=SCHEMA, key="id", time_column="ts")
    c = report.counts
    assert (c.records_in, c.accepted, c.dead_lettered) == (501, 500, 1) and len(report.files) == 2
    raw = drain(settings, settings.topic("raw", "mix"), expect=500)
    got = sorted((json.loads(m["value"]) for m in raw), key=lambda r: r["id"])
    assert got == rows
    assert all(m["key"] == str(json.loads(m["value"])["id"]).encode() for m in raw)
    assert all(m["headers"][H.EVENT_TIME] == str(json.loads(m["value"])["ts"]) for m in raw)

    again = ingest_files(settings, folder, "mix", schema=SCHEMA, key="id", time_column="ts")
    assert again.resumed and again.counts.records_in == 0 and again.total.accepted == 500
    (folder / "c.jsonl").write_text(json.dumps(_row(900)) + "\n")          # a new file sorts after the others
    more = ingest_files(settings, folder, "mix", schema=SCHEMA, key="id", time_column="ts")
    assert more.counts.accepted == 1 and more.total.accepted == 501
    assert len(drain(settings, settings.topic("raw", "mix"), expect=501)) == 501


def test_avro_wire_format_names_its_schema(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(_row(i)) + "\n" for i in range(50)))
    ingest_files(settings, path, "av", schema=SCHEMA, wire_format="avro")
    raw = drain(settings, settings.topic("raw", "av"), expect=50)
    h = raw[0]["headers"]
    assert (h["sm.format"], h[H.SCHEMA], h[H.SCHEMA_VERSION]) == ("avro", "pay", "1")
    writer_schema = SchemaRegistry.for_settings(settings).get("av", int(h[H.SCHEMA_VERSION]))
    codec = codec_for("avro", writer_schema)
    assert sorted((codec.decode(m["value"]) for m in raw), key=lambda r: r["id"]) == [_row(i) for i in range(50)]


def test_incompatible_schema_change_is_refused(settings: Settings, tmp_path: Path) -> None:
    from streamml.errors import SchemaError

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(_row(1)) + "\n")
    ingest_files(settings, path, "evo", schema=SCHEMA)
    wider = Schema("pay", [*SCHEMA.fields, Field("note", str, required=False)])
    assert ingest_files(settings, path, "evo", schema=wider, restart=True).counts.accepted == 1
    narrower = Schema("pay", [Field("id", str), Field("amount", float)])
    with pytest.raises(SchemaError, match="not compatible with v2: field 'id' changes type from int to string"):
        ingest_files(settings, path, "evo", schema=narrower)


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "STREAMML_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
            "STREAMML_NAMESPACE": settings.namespace, "STREAMML_HOME": str(settings.home), "COLUMNS": "250"}


def test_sigkill_mid_file_then_rerun_has_no_duplicates_and_no_gaps(settings: Settings, tmp_path: Path) -> None:
    n = 30_000
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(_row(i)) + "\n" for i in range(n)))
    cmd = SM + ["ingest", "file", str(path), "--stream", "crash", "--key", "cur", "--no-progress", "--format", "json"]
    proc = subprocess.Popen(cmd + ["--rate", "4000"], env=_env(settings), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    topic = settings.topic("raw", "crash")
    c = clients.consumer(settings, f"watch-{time.time_ns()}")
    c.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 3000 and time.monotonic() < deadline and proc.poll() is None:
        seen += sum(1 for m in c.consume(1000, timeout=0.2) if not m.error())
    c.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()          # killed mid-file, not finished
    before = drain(settings, topic, timeout=10)
    assert 3000 <= len(before) < n

    done = subprocess.run(cmd, env=_env(settings), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resumed"] and report["records_in"] == n - len(before)
    assert report["total"]["accepted"] == n and report["total"]["records_in"] == n

    after = drain(settings, topic, expect=n)
    ids = [m["headers"][H.EVENT_ID] for m in after]
    assert len(ids) == len(set(ids)) == n                                   # no duplicates
    assert {json.loads(m["value"])["id"] for m in after} == set(range(n))    # nothing missing


def test_cli_user_mistakes_are_one_clean_line(settings: Settings, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from streamml.cli.main import main

    for key, value in _env(settings).items():
        if key.startswith("STREAMML_"):
            monkeypatch.setenv(key, value)
    bad_schema = tmp_path / "bad.avsc"
    bad_schema.write_text("{nope")
    data = tmp_path / "d.jsonl"
    data.write_text('{"a": 1}\n')
    cases = [
        (["ingest", "file", str(tmp_path / "missing.csv"), "--stream", "s"], "does not exist"),
        (["ingest", "file", str(data), "--stream", "s", "--schema", str(bad_schema)], "is not valid JSON"),
        (["ingest", "file", str(data), "--stream", "bad name"], "invalid topic name part"),
        (["ingest", "file", str(data), "--stream", "s", "--wire-format", "xml"],
         "Invalid value for '--wire-format': 'xml' is not one of"),
        (["ingest", "file", str(data), "--stream", "s", "--rate", "-5"], "--rate must be positive"),
        (["ingest", "http"], "no bearer token"),
        (["generate", "transactions"], "give --max-records or --duration"),
        (["generate", "sensors", "--max-records", "0"], "--max-records must be at least 1"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as info:
            main(args)
        err = " ".join(capsys.readouterr().err.split())
        assert info.value.code == EXIT_USAGE, (args, err)
        assert err.startswith("error:") and message in err and "Traceback" not in err, (args, err)
    r = subprocess.run(SM + ["ingest", "file", str(tmp_path / "nope.jsonl"), "--stream", "s"], env=_env(settings),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_USAGE and r.stderr.startswith("error:") and "Traceback" not in r.stderr
