"""``streamml sql [STATEMENT | --file F] [--deploy]``: preview a file of ksqlDB statements, or
deploy its persistent queries (or one continuous DuckDB SELECT) as supervised pipelines.

The statements are checked whole first (:func:`streamml.query.ksql_file.plan`): one that fails
is named by its number and line, and nothing starts (exit code 2). Deployed, every persistent
query of the file is one pipeline on the runtime; all run in this process (a thread each), or,
with ``--workers N``, in N supervised worker processes sharing the partitions, exactly as
``streamml run --workers N`` runs an app's pipelines (:mod:`streamml.cli.workers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from streamml.cli.common import err_console
from streamml.cli.workers import WorkerArgs, run_pipelines
from streamml.config import Settings
from streamml.errors import ConfigError

__all__ = ["preview_file", "deploy_statements"]


def _say(line: str) -> None:
    err_console.print(line, markup=False, highlight=False)


def preview_file(settings: Settings, file: Path, emit: Any, max_rows: int) -> None:
    """Run the file's declarations and print each persistent query's preview (``emit(df, title,
    max_rows)``); a query over the output of another query of the file is previewed once that
    query is deployed (its topic holds rows)."""
    from streamml.kafka.admin import list_topics
    from streamml.query.ksql_file import plan, read_statements
    from streamml.query.ksql_run import catalog, preview

    text, origin = read_statements(file)
    p = plan(text, catalog(settings), origin)
    for st, src in p.declared:
        _say(f"statement {st.number} (line {st.line}): {src.kind} {src.name} declared over {src.topic}")
    existing = list_topics(settings)
    for st, q in p.queries:
        title = f"statement {st.number} (line {st.line}): {q.kind} {q.name} -> {q.sink}"
        source = q.pipelines[0].source_topic(settings)  # a repartitioned query's input, not its internal topic
        if source not in existing:
            _say(f"{title}: no preview, its input {source} does not exist yet "
                 f"(it is written by an earlier query of the file: deploy with --deploy)")
            continue
        emit(preview(q, settings), title, max_rows)


def _child_statement(text: str, file: Optional[Path]) -> list[str]:
    return ["sql", "--file", str(file.resolve())] if file is not None else ["sql", text]


def deploy_statements(settings: Settings, statement: Optional[str], file: Optional[Path], *, name: Optional[str],
                      to: Optional[str], args: WorkerArgs) -> None:
    """Deploy the persistent queries of ``file`` (or of ``statement``), or the one continuous
    DuckDB ``SELECT ... EMIT CHANGES`` of ``statement``, until Ctrl-C / SIGTERM (or ``--idle``)."""
    from streamml.query.ksql import is_ksql
    from streamml.query.ksql_file import plan, read_statements

    text, origin = read_statements(file) if file is not None else (statement or "", "STATEMENT")
    pipelines: list[Any]
    if file is None and not is_ksql(text):
        from streamml.query.deploy import pipeline_for

        if to is None and name is None:
            raise ConfigError("deploying a SELECT ... EMIT CHANGES needs its output topic",
                              hint="add --to TOPIC (e.g. --to big: topic <namespace>.features.big)")
        pipelines = [pipeline_for(text, to or name or "", name=name, settings=settings)]
    else:
        from streamml.query.ksql_run import catalog

        if to is not None:
            raise ConfigError("--to is for a DuckDB SELECT ... EMIT CHANGES; a ksqlDB query names its own topic",
                              hint="drop --to; set WITH (kafka_topic='...') in the statement")
        p = plan(text, catalog(settings), origin)
        if not p.queries:
            raise ConfigError(f"{origin} has no persistent query to deploy",
                              hint="add a CREATE STREAM|TABLE ... AS SELECT or an INSERT INTO ... SELECT")
        if name is not None and len(p.queries) > 1:
            raise ConfigError(f"--name names one pipeline; {origin} has {len(p.queries)} persistent queries",
                              hint="drop --name: each query's pipeline is named after the query")
        pipelines = []
        for st, q in p.queries:  # a repartitioned query runs its re-key stage first, beside it
            stages = [pipe.named(f"{name}{pipe.name[len(q.pipeline.name):]}") if name else pipe
                      for pipe in q.pipelines]
            pipelines += stages
            via = f" via {q.source.topic}" if q.repartition is not None else ""
            _say(f"statement {st.number} (line {st.line}): {q.kind} {q.name} as pipeline "
                 f"{' + '.join(pipe.name for pipe in stages)}: {q.pipelines[0].source_topic(settings)}{via} "
                 f"-> {q.sink}")
    if args.workers == 1 and args.instance is None:  # not a supervised worker: show what runs
        for pipe in pipelines:
            _say(pipe.describe())
    _say("deploying (Ctrl-C stops)")
    child = _child_statement(text, file) + ["--deploy"]
    child += (["--to", to] if to else []) + (["--name", name] if name else [])
    run_pipelines(settings, pipelines, args, lambda member: [*child, "--instance", member],
                  str(file) if file is not None else "the statement")
