"""The pipeline API without a broker: immutability, describe/fingerprint, operators, joins."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from streamml.config import Settings
from streamml.errors import PipelineError
from streamml.stream import Pipeline, Table, TestDriver, count, hopping, stream, tumbling
from streamml.stream.engine import Engine, RawBatch


def base() -> Pipeline:
    return stream("payments").filter(pl.col("amount") > 0)


def test_pipelines_are_immutable_and_fingerprints_stable() -> None:
    p = base()
    q = p.with_columns(x=pl.col("amount") * 2)
    assert len(p.ops) == 1 and len(q.ops) == 2
    assert base().to("f").fingerprint() == base().to("f").fingerprint()
    assert q.to("f").fingerprint() != p.to("f").fingerprint()
    w1 = p.window(key="c", size=tumbling("1m"), time="ts").agg(n=count()).to("f")
    w2 = p.window(key="c", size=tumbling("2m"), time="ts").agg(n=count()).to("f")
    assert w1.fingerprint() != w2.fingerprint()
    assert "tumbling(size=60000ms" in w1.describe()


def test_topic_resolution() -> None:
    s = Settings(bootstrap_servers="x:1", namespace="shop")
    p = stream("payments").to("card_feats")
    assert p.source_topic(s) == "shop.raw.payments" and p.sink_topic(s) == "shop.features.card_feats"
    assert stream("other.topic.name").to("a.b").sink_topic(s) == "a.b"
    assert p.name == "card_feats"
    assert p.window_op is None and not p.stateful


def test_operators_over_a_batch() -> None:
    def add_rank(df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(rank=pl.col("amount").rank("ordinal").cast(pl.Int64))

    p = (base().with_columns(cents=(pl.col("amount") * 100).cast(pl.Int64)).map_batch(add_rank)
         .sql("SELECT card, cents, rank FROM batch WHERE cents < 10000 ORDER BY rank").to("out"))
    d = TestDriver(p)
    out = d.send({"card": "a", "amount": 5.0}, {"card": "b", "amount": -1.0}, {"card": "c", "amount": 250.0},
                 {"card": "d", "amount": 1.5})
    assert out == [{"card": "d", "cents": 150, "rank": 1}, {"card": "a", "cents": 500, "rank": 2}]


def test_lineage_headers_carried_for_one_to_one_steps() -> None:
    p = base().with_columns(y=pl.col("amount") + 1).to("out")
    e = Engine(p)
    raw = RawBatch("t", [b'{"amount": 1}', b'{"amount": -1}', b'{"amount": 3}'], [b"k1", b"k2", b"k3"],
                   [0, 0, 0], [10, 11, 12], None,
                   [[("sm.event_id", b"e1")], None, [("sm.event_id", b"e3"), ("other", b"x")]])
    res = e.process(raw)
    assert res.keys == [b"k1", b"k3"]
    assert [dict(h).get("sm.event_id") for h in res.headers] == [b"e1", b"e3"]
    assert all(dict(h)["sm.component"] == b"stream.out" for h in res.headers)
    assert all("other" not in dict(h) for h in res.headers)


def test_table_join_in_the_driver() -> None:
    cards = Table("cards", key="card")
    cards.load({"a": {"limit": 10}, "b": {"limit": 100}})
    p = stream("tx").join(cards).with_columns(over=pl.col("amount") > pl.col("limit")).to("out")
    out = TestDriver(p).send({"card": "a", "amount": 50}, {"card": "b", "amount": 50}, {"card": "z", "amount": 1})
    assert [(r["card"], r["limit"], r["over"]) for r in out] == [("a", 10, True), ("b", 100, False), ("z", None, None)]


def test_window_on_record_timestamps_and_update_emission() -> None:
    p = stream("t").window(key="k", size=hopping(100, 50), emit="update").agg(n=count()).to("out")
    d = TestDriver(p)
    out = d.send({"k": "a"}, {"k": "a"}, timestamp=120)
    assert sorted((r["window_start"], r["n"]) for r in out) == [(50, 2), (100, 2)]


def test_mistakes_are_clear() -> None:
    with pytest.raises(PipelineError, match="at most one window"):
        (stream("t").window(key="k", size=tumbling(10)).agg(n=count())
         .window(key="k", size=tumbling(10)).agg(n=count()))
    with pytest.raises(PipelineError, match="FROM batch"):
        stream("t").sql("SELECT 1")
    with pytest.raises(PipelineError, match="after .to"):
        stream("t").to("x").filter(pl.col("a") > 1)
    with pytest.raises(PipelineError, match="not in the batch"):
        TestDriver(stream("t").window(key="nope", size=tumbling(10), time="ts").agg(n=count()).to("o")).send({"ts": 1})
    with pytest.raises(PipelineError, match="sql step failed"):
        TestDriver(stream("t").sql("SELECT missing FROM batch").to("o")).send({"a": 1})


def test_cli_loads_pipelines_from_an_app_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from streamml.cli.cmd_run import load_pipelines
    from streamml.cli.main import app

    f = tmp_path / "app.py"
    f.write_text("import polars as pl\nfrom streamml.stream import stream\n"
                 "a = stream('x').filter(pl.col('v') > 1).to('a_out')\nb = stream('y').to('b_out')\n"
                 "unfinished = stream('z')\n")
    assert [p.name for p in load_pipelines(f)] == ["a_out", "b_out"]
    assert [p.name for p in load_pipelines(f, ["b_out"])] == ["b_out"]
    res = CliRunner().invoke(app, ["run", str(f), "--describe"])
    assert res.exit_code == 0 and "pipeline a_out" in res.output and "fingerprint" in res.output
