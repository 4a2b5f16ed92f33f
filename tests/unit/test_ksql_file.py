"""A file of ksqlDB statements (``streamml sql --file F``, ``streamml.query.deploy_file``) without a
broker: cut into statements with their numbers and lines, compiled whole, and a statement that
fails is named by number and line (and the error's own line and column) before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamml.cli.deprecated import translate
from streamml.errors import EXIT_USAGE, ConfigError
from streamml.query.ksql_compile import Catalog
from streamml.query.ksql_file import check, plan, read_statements, split_located

DDL = ("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT)\n"
       "  WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');\n")
CHAIN = ("CREATE STREAM big AS SELECT card, amount * 2 AS a2, ts FROM pay WHERE amount > 1 EMIT CHANGES;\n"
         "CREATE TABLE w AS SELECT card, COUNT(*) AS n, SUM(a2) AS total FROM big\n"
         "  WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT FINAL;\n")


def test_statements_are_cut_at_top_level_semicolons_with_their_lines() -> None:
    text = ("-- a comment; with a semicolon\n\n"
            "CREATE STREAM a (x VARCHAR) WITH (kafka_topic='t;u');  -- trailing\n"
            ";;\n"
            "  INSERT INTO a\n  SELECT x FROM b EMIT CHANGES\n"
            "-- the end, no semicolon after a comment\n")
    got = split_located(text)
    assert [(s.number, s.line) for s in got] == [(1, 3), (2, 5)]
    assert got[0].text == "CREATE STREAM a (x VARCHAR) WITH (kafka_topic='t;u')"
    assert got[1].text.startswith("INSERT INTO a\n  SELECT x FROM b EMIT CHANGES")
    assert got[1].head == "INSERT INTO a"
    assert text[got[1].offset:].startswith("INSERT")
    assert split_located("-- only a comment\n ; \n") == []


def test_a_file_compiles_in_order_and_the_catalog_takes_it_over() -> None:
    cat = Catalog()
    p = plan(DDL + "SET 'auto.offset.reset' = 'earliest';\n" + CHAIN, cat, "f.sql")
    assert [(st.number, st.line, src.name) for st, src in p.declared] == [(1, 1, "PAY")]
    assert [(st.number, st.line, q.name, q.kind, q.sink) for st, q in p.queries] == [
        (3, 4, "BIG", "STREAM", "BIG"), (4, 5, "W", "TABLE", "W")]
    assert p.queries[1][1].source.topic == "BIG"  # the table reads what the CSAS writes
    assert set(cat.sources) == {"PAY", "BIG"} and set(cat.queries) == {"BIG", "W"}
    assert cat.properties == {"AUTO.OFFSET.RESET": "earliest"}


@pytest.mark.parametrize("bad, where, what", [
    ("CREATE TABLE t AS SELECT card, COLLECT_SET(amount) AS s\n FROM pay GROUP BY card EMIT CHANGES;",
     "f.sql:6: statement 4 (CREATE TABLE t AS SELECT card, COLLECT_SET(amount) AS s)",
     "aggregate COLLECT_SET is not supported yet, at line 6, column 32 near 'COLLECT_SET'"),
    ("\n\nCREATE TABLE t AS SELECT card, COUNT(*) FROM nope GROUP BY card EMIT CHANGES;",
     "f.sql:8: statement 4 (CREATE TABLE t AS SELECT card, COUNT(*) FROM nope GROUP BY…)",
     "NOPE is not a declared stream or table"),
    ("SELECT * FROM w WHERE card = 'a';", "f.sql:6: statement 4 (SELECT * FROM w WHERE card = 'a')",
     "a SELECT writes nothing"),
    ("SHOW QUERIES;", "f.sql:6: statement 4 (SHOW QUERIES)", "SHOW is a session statement"),
    ("CREATE STREAM big AS SELECT card, ts FROM pay EMIT CHANGES;", "f.sql:6: statement 4",
     "BIG is created twice (statement 2 creates it too)"),
])
def test_a_bad_statement_is_named_by_number_and_line_and_nothing_is_kept(bad: str, where: str, what: str) -> None:
    cat = Catalog()
    text = DDL + CHAIN + bad
    with pytest.raises(ConfigError) as err:
        plan(text, cat, "f.sql")
    assert err.value.message.startswith(where), err.value.message
    assert what in err.value.message and err.value.hint
    assert err.value.exit_code == EXIT_USAGE
    assert cat.sources == {} and cat.queries == {}  # the session's catalog is unchanged


def test_a_character_no_statement_holds_is_located_in_the_file() -> None:
    with pytest.raises(ConfigError) as err:
        check("CREATE STREAM a (x INT) WITH (kafka_topic='t');\n\nSELECT a#b FROM a;", "f.sql")
    assert err.value.message == "f.sql:3:9: unexpected character '#'" and err.value.hint
    with pytest.raises(ConfigError, match="holds no statement"):
        check("-- nothing\n", "f.sql")


def test_a_path_is_read_and_text_is_taken_as_is(tmp_path: Path) -> None:
    f = tmp_path / "features.sql"
    f.write_text(DDL)
    assert read_statements(f) == (DDL, str(f))
    assert read_statements(str(f)) == (DDL, str(f))
    assert read_statements(DDL) == (DDL, "<text>")
    with pytest.raises(ConfigError, match="cannot read the statements file"):
        read_statements(str(tmp_path / "missing.sql"))


def test_the_old_deploy_name_spelling_becomes_deploy_name() -> None:
    import typer

    from streamml.cli.main import app

    root = typer.main.get_command(app)
    warned: list[tuple[str, str]] = []
    argv = ["sql", "--deploy", "big", "SELECT a FROM p EMIT CHANGES", "--idle", "2"]
    assert translate(argv, root, warn=lambda o, n: warned.append((o, n))) == [
        "sql", "--deploy", "--name", "big", "SELECT a FROM p EMIT CHANGES", "--idle", "2"]
    assert warned == [("'streamml sql --deploy big'", "'--deploy --name big'")]
    for new in (["sql", "CREATE TABLE t AS SELECT x FROM s EMIT CHANGES", "--deploy"],
                ["sql", "--file", "f.sql", "--deploy", "--workers", "2"],
                ["sql", "--deploy", "CREATE TABLE t AS SELECT x FROM s EMIT CHANGES"]):
        assert translate(new, root, warn=lambda o, n: warned.append((o, n))) == new
    assert len(warned) == 1


def test_the_command_refuses_a_bad_file_before_it_connects(tmp_path: Path) -> None:
    f = tmp_path / "features.sql"
    f.write_text(DDL + CHAIN + "\nCREATE TABLE t AS SELECT card, COUNT(*) FROM pay\n  WINDOW TUMBLING (SIZE 1 WEEK)"
                 " GROUP BY card EMIT CHANGES;\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "streamml", "-b", "127.0.0.1:1", "sql", "--file", str(f), "--deploy",
                        "--workers", "2"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == EXIT_USAGE, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"error: {f}:7: statement 4 (CREATE TABLE t AS SELECT card, COUNT(*) FROM pay): ")
    assert lines[1].startswith("hint: ")
