"""Interactive work with topics: look at them, query them with SQL, follow them live.

>>> import streamml.query as q
>>> sorted(q.__all__)[:4]
['Deployment', 'Tail', 'Topic', 'changes']

Everything reads committed records only, and takes ``settings=`` (by default the session's:
``streamml.connect()`` from the environment, or what :func:`use` set):

- :func:`topics` — the topics of the namespace, with partitions and offsets;
- :func:`topic` — ``topic("payments").head(5)``, ``.range(start=..., end=...)``,
  ``.to_pandas()`` / ``.to_polars()`` / ``.to_arrow()`` over a snapshot pinned at call time;
- :func:`sql` — DuckDB SQL over snapshots of the topics a statement names (joins work);
- :func:`tail` — a generator of records committed from now on, filtered, per-partition order;
- :func:`deploy` — a continuous statement (``... EMIT CHANGES``) as a running stream pipeline;
  :func:`deploy_file` — every persistent query of a file (or text) of ksqlDB statements
  (:mod:`streamml.query.ksql_file`), checked whole before any runs;
  :func:`changes` — the same statement's live rows, in this process.
- ksqlDB statements (:mod:`streamml.query.ksql`, compiled by :mod:`streamml.query.ksql_compile`):
  ``sql("CREATE STREAM s (...) WITH (kafka_topic=...)")`` declares a source;
  ``sql("CREATE TABLE t AS SELECT ... WINDOW TUMBLING (...) GROUP BY ... EMIT FINAL")`` previews
  the rows the query writes, and ``deploy`` of the same statement (or of ``INSERT INTO s SELECT``)
  runs it on the stream engine;
  ``sql("SELECT * FROM t WHERE key = ...")`` is a pull query on a table's current state
  (:mod:`streamml.query.ksql_pull`), ``sql("SELECT ... FROM s EMIT CHANGES LIMIT n")`` a push
  query: a live :class:`Tail` of rows computed in this process (:mod:`streamml.query.ksql_push`);
  ``SHOW``, ``DESCRIBE``, ``DROP``, ``TERMINATE`` work on the session
  (:mod:`streamml.query.ksql_admin`); :mod:`streamml.query.ksql_http` serves ksqlDB's
  ``POST /ksql`` and ``POST /query``. A SELECT is a ksqlDB query when it reads a stream or table
  the session declared; otherwise it is DuckDB SQL over topics.

Short topic names resolve as described in :mod:`streamml.query.resolve`.
"""

from streamml.query.catalog import topics
from streamml.query.continuous import check
from streamml.query.deploy import Deployment, changes, deploy, pipeline_for
from streamml.query.ksql_file import deploy_file
from streamml.query.resolve import resolve_topic, use
from streamml.query.sql import parse, sql
from streamml.query.tail import Tail, tail
from streamml.query.topic import Topic, topic

__all__ = [
    "topic", "Topic", "topics", "sql", "tail", "Tail", "deploy", "deploy_file", "Deployment", "changes", "check",
    "parse",
    "pipeline_for", "resolve_topic", "use",
]
