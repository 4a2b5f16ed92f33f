"""ksqlDB statements compiled onto the stream engine: a catalog of sources and one pipeline per query.

``CREATE STREAM|TABLE name (...) WITH (kafka_topic=..., value_format='JSON', timestamp=...)``
declares a source in the :class:`Catalog`; ``CREATE STREAM|TABLE x AS SELECT ...`` becomes a
:class:`~streamml.stream.Pipeline` (decode and upper-case the columns, WHERE as a filter, the
window step with its aggregates, HAVING, the projection, the ksqlDB key), which
:func:`preview` replays over what the topics hold now and :class:`~streamml.query.deploy`
runs on the runtime: the same pipeline, so the same rows.

ksqlDB defaults kept: the output topic is the query's name upper-cased (unless KAFKA_TOPIC);
values are JSON objects of the non-key columns, upper-cased; the key is the GROUP BY column in
ksqlDB's KAFKA format (VARCHAR: UTF-8; BIGINT: 8 bytes big-endian; INT: 4 bytes), followed for
a windowed table by the window start as 8 bytes big-endian, and for a SESSION window by the
session end after it (:mod:`.ksql_keys`); a session that a record extends or merges is
deleted by a tombstone on its old key before the new row (EMIT CHANGES); rows that fail HAVING are
tombstones; the grace period is 24 hours unless given. Event times before ``SIZE`` ms after
the epoch are not supported (ksqlDB drops negative window starts).

>>> cat = Catalog()
>>> _ = cat.execute("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT) "
...                 "WITH (kafka_topic='payments', value_format='JSON', timestamp='ts')")
>>> q = cat.compile("CREATE TABLE per_card AS SELECT card, COUNT(*) AS n, SUM(amount) AS total FROM pay "
...                 "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT FINAL")
>>> q.sink, q.key_type
('PER_CARD', 'VARCHAR')
>>> print(q.pipeline.describe().splitlines()[3])
  2 window   key=CARD time=TS tumbling(size=60000ms, grace=0ms) emit=close late=count
>>> cat.compile("CREATE TABLE t AS SELECT card, COLLECT_SET(amount) FROM pay GROUP BY card EMIT CHANGES")
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: aggregate COLLECT_SET is not supported yet, at position 31 near ... (hint: ...)
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import polars as pl

from streamml.errors import QueryError
from streamml.query.ksql import Column, CreateAs, CreateSource, InsertInto, Select, Token, parse_ksql, split_statements
from streamml.query.ksql_base import _KEYWORDS, Query, _columns, _expr_text, _sql_expr
from streamml.query.ksql_formats import check_props, registered_columns, source_format
from streamml.query.ksql_keys import decode_key, decode_window_key, encode_key
from streamml.query.ksql_rekey import partition_by, with_formats
from streamml.query.ksql_repartition import needs_repartition, repartition
from streamml.query.ksql_sjoin import stream_join
from streamml.query.ksql_table import Source, SqlTable, derived_source
from streamml.query.ksql_table import dtype as _dtype
from streamml.stream import Pipeline, stream
from streamml.stream.windows import Agg, WindowSpec

__all__ = ["Catalog", "Query", "Source", "encode_key", "decode_key"]

_AGGS = {"COUNT": "count", "SUM": "sum", "AVG": "mean", "MIN": "min", "MAX": "max",
         "COUNT_DISTINCT": "count_distinct", "STDDEV_SAMP": "std", "LATEST_BY_OFFSET": "latest",
         "EARLIEST_BY_OFFSET": "earliest", "TOPK": "topk", "COLLECT_LIST": "collect_list"}
_FOREVER = 1 << 61  # the one window of an unwindowed aggregation


class Catalog:
    """The streams and tables a session declared, and the queries compiled over them."""

    def __init__(self, resolve: Callable[[str], str] | None = None, registry: str | None = None,
                 partitions: Callable[[str], int] | None = None, namespace: str | None = None) -> None:
        self.registry = registry  # the schema registry's URL (value_format AVRO)
        self._partitions = partitions  # a topic's partition count (GROUP BY a non-key column: repartition)
        self.namespace = namespace  # of the internal (repartition) topics
        self.sources: dict[str, Source] = {}
        self.queries: dict[str, Query] = {}  # the CREATE ... AS SELECT of the session, by name
        self.properties: dict[str, str] = {}  # SET 'name' = 'value' of the session (upper-cased names)
        self.running: dict[str, Any] = {}  # query id -> its Deployment (query.deploy registers them)
        self._inserts = 0
        self._started = 0
        self._resolve = resolve or (lambda topic: topic)

    def execute(self, text: str) -> list[Source | Query]:
        """Run every statement of ``text``: declare sources, compile queries (nothing runs)."""
        out: list[Source | Query] = []
        for piece in split_statements(text):
            st = parse_ksql(piece)
            if isinstance(st, CreateSource):
                out.append(self._declare(st))
            elif isinstance(st, InsertInto):  # a query into an existing stream: no new source
                out.append(self._insert(st))
            else:
                q = self._compile(st)
                self.queries[q.name] = q
                if q.derived is not None:  # later statements read it, as in ksqlDB
                    self.sources[q.name] = q.derived
                out.append(q)
        return out

    def fork(self) -> "Catalog":
        """A copy to compile a file into: nothing it declares enters this catalog until :meth:`adopt`."""
        c = copy.copy(self)
        c.sources, c.queries, c.properties = dict(self.sources), dict(self.queries), dict(self.properties)
        return c

    def adopt(self, fork: "Catalog") -> None:
        """Take over what ``fork`` (of this catalog) declared and compiled."""
        self.__dict__.update({k: v for k, v in vars(fork).items() if k != "running"})

    def compile(self, text: str) -> Query:
        """The query of the one ``CREATE ... AS SELECT`` in ``text`` (declarations before it run)."""
        done = self.execute(text)
        queries = [q for q in done if isinstance(q, Query)]
        if len(queries) != 1:
            raise QueryError(f"expected one CREATE ... AS SELECT, got {len(queries)}",
                             hint="deploy several with streamml.query.deploy_file(text)")
        return queries[0]

    def _insert(self, st: InsertInto) -> Query:
        """``INSERT INTO s SELECT ...``: a stream query whose sink is the topic of stream ``s``,
        whose columns must be ``s``'s value columns (ksqlDB refuses a schema that differs)."""
        if st.target in self.queries:
            target_q = self.queries[st.target]
            kind, topic, want = target_q.kind, target_q.sink, set(target_q.columns)
            sf = target_q.pipeline.sink_format
            fmt = {"VALUE_FORMAT": sf.name.upper()} if sf is not None else {}
        else:
            src = self.source(st.target)
            kind, topic, want = src.kind, src.topic, {c.name for c in src.columns if not c.key}
            fmt = {"VALUE_FORMAT": src.value_format}
        if fmt.get("VALUE_FORMAT") == "DELIMITED":
            fmt["VALUE_DELIMITER"] = getattr(sf, "delimiter", ",") if st.target in self.queries else src.delimiter
        if kind != "STREAM":
            raise QueryError(f"INSERT INTO {st.target}: {st.target} is a table; INSERT INTO writes into streams",
                             hint="insert into a stream, or CREATE TABLE ... AS SELECT a new table")
        if st.select.source == st.target:
            raise QueryError(f"INSERT INTO {st.target} cannot read from {st.target}",
                             hint="select FROM another stream")
        self._inserts += 1
        q = self._compile(CreateAs("STREAM", f"INSERTQUERY_{self._inserts}", {"KAFKA_TOPIC": topic, **fmt}, st.select,
                                   st.text))
        if set(q.columns) != want:
            raise QueryError(f"INSERT INTO {st.target}: the SELECT writes {', '.join(q.columns) or 'no columns'} "
                             f"but {st.target} has {', '.join(sorted(want)) or 'no value columns'}",
                             hint="select exactly the stream's value columns (rename with AS)")
        return q

    def start(self, query: Query, deployment: Any) -> str:
        """Register ``deployment`` (running ``query``) under a ksqlDB-style query id; returns the id."""
        self._started += 1
        qid = query.name if query.name.startswith("INSERTQUERY_") else \
            f"{'CTAS' if query.kind == 'TABLE' else 'CSAS'}_{query.name}_{self._started}"
        self.running[qid] = deployment
        return qid

    def compile_unregistered(self, st: CreateAs) -> Query:
        """``st`` compiled without entering the session's queries (a push query's pipeline)."""
        return self._compile(st)

    # -- sources --------------------------------------------------------------------------
    def _declare(self, st: CreateSource) -> Source:
        props = {k.upper(): v for k, v in st.props.items()}
        topic = props.get("KAFKA_TOPIC")
        if not topic:
            raise QueryError(f"CREATE {st.kind} {st.name} needs WITH (kafka_topic='...')",
                             hint="name the topic that holds the records")
        fmt, delim = check_props(props)
        for k in props:
            if k not in ("KAFKA_TOPIC", "VALUE_FORMAT", "VALUE_DELIMITER", "TIMESTAMP", "KEY_FORMAT", "PARTITIONS"):
                raise QueryError(f"property {k} is not supported yet",
                                 hint="supported: kafka_topic, value_format, value_delimiter, timestamp, key_format")
        if props.get("KEY_FORMAT", "KAFKA").upper() != "KAFKA":
            raise QueryError("key_format other than KAFKA is not supported yet", hint="use key_format='KAFKA'")
        cols = list(st.columns)
        if not any(not c.key for c in cols):
            if fmt != "AVRO" and not cols:
                raise QueryError(f"CREATE {st.kind} {st.name} declares no columns",
                                 hint="declare them: (col TYPE, ...); only value_format='AVRO' takes the value "
                                      "columns from the schema registry")
            if fmt == "AVRO":
                topic = self._resolve(topic)
                cols += [c for c in registered_columns(self.registry, topic, f"{st.kind} {st.name}")
                         if c.name not in {k.name for k in cols}]
        for c in cols:
            _dtype(c.type, f"column {c.name}")
        if st.kind == "TABLE" and not any(c.key for c in cols):
            raise QueryError(f"table {st.name} needs a PRIMARY KEY column", hint="e.g. (id VARCHAR PRIMARY KEY)")
        if len([c for c in cols if c.key]) > 1:
            raise QueryError("more than one key column needs key_format JSON, not supported yet",
                             hint="declare one KEY column")
        ts = props.get("TIMESTAMP")
        ts = ts.upper() if ts else None
        if ts is not None and ts not in {c.name for c in cols}:
            raise QueryError(f"timestamp column {ts} is not a column of {st.name}")
        src = Source(st.kind, st.name, self._resolve(topic), tuple(cols), ts, value_format=fmt, delimiter=delim)
        source_format(src, self.registry)  # AVRO without a registry is refused here
        self.sources[st.name] = src
        return src

    def source(self, name: str) -> Source:
        if name not in self.sources:
            known = ", ".join(sorted(self.sources)) or "none declared"
            raise QueryError(f"{name} is not a declared stream or table (known: {known})",
                             hint=f"declare it first: CREATE STREAM {name} (...) WITH (kafka_topic='...')")
        return self.sources[name]

    # -- queries --------------------------------------------------------------------------
    def _compile(self, st: CreateAs) -> Query:
        q = self._compile_body(st)
        if self._partitions is not None and needs_repartition(q, self._partitions):  # GROUP BY a non-key column
            return repartition(st, q, self._over, self.namespace, self.registry)
        return with_formats(q, self.source(st.select.source), {k.upper(): v for k, v in st.props.items()},
                            self.registry)

    def _over(self, src: Source, st: CreateAs) -> Query:
        """``st`` compiled with ``src`` in place of the source of the same name (not registered)."""
        fork = self.fork()
        fork.sources[src.name] = src
        return fork.compile_unregistered(st)

    def _compile_body(self, st: CreateAs) -> Query:
        sel = st.select
        src = self.source(sel.source)
        if src.kind != "STREAM":
            raise QueryError(f"{src.name} is a table: queries over tables are not supported yet",
                             hint="select FROM a stream")
        props = {k.upper(): v for k, v in st.props.items()}
        sink = props.get("KAFKA_TOPIC") or st.name
        p = stream(src.topic, name=f"ksql-{st.name.lower()}").exact(record_key=src.key is not None)
        p = p.map_batch(_decoder(src), name=f"columns of {src.name}")
        if sel.join is not None and sel.join.within is not None:
            return stream_join(st, src, self.source(sel.join.source), sink, _decoder, self._partitions)
        if sel.join is not None:
            return self._join(st, src, p, sink)
        names = {c.name: c.name for c in src.columns}
        if sel.where is not None:
            p = p.filter(_sql_expr(_expr_text(sel.where, names), "WHERE clause"))
        if sel.group_by:
            return self._aggregate(st, src, p, sink)
        if sel.having is not None:
            raise QueryError("HAVING needs GROUP BY")
        proj = self._projection(sel, src, names)
        if sel.partition_by is not None:
            return partition_by(st, src, p, sink, proj)
        exprs = [e for e, _ in proj]
        keyname = src.key.name if src.key else None
        value_cols = [n for _, n in proj if n != keyname]
        p = p.map_batch(lambda df: df.select(["__row", *exprs]).select(["__row", *value_cols]),
                        name="select " + ", ".join(n for _, n in proj))
        schema = {c.name: _dtype(c.type, c.name) for c in src.columns}
        der = derived_source(st.name, sink, src.key, schema, proj, src.timestamp) if st.kind == "STREAM" else None
        return Query(st.name, st.kind, sink, src, p.to(sink), src.key.type if src.key else None, False, st.text,
                     tuple(value_cols), der)

    def _projection(self, sel: Select, src: Source, names: dict[str, str]) -> list[tuple[pl.Expr, str]]:
        out: list[tuple[pl.Expr, str]] = []
        for i, item in enumerate(sel.items):
            if len(item.tokens) == 1 and item.tokens[0].text == "*":
                out += [(pl.col(c.name), c.name) for c in src.columns]
                continue
            t = item.tokens
            if any(tok.kind == "id" and tok.upper in _AGGS and j + 1 < len(t) and t[j + 1].text == "("
                   for j, tok in enumerate(t)):
                raise QueryError("an aggregate needs GROUP BY", hint="add GROUP BY and CREATE TABLE ... AS SELECT")
            simple = len(t) == 1 and t[0].kind in ("id", "qid")
            name = item.alias or (t[0].ident if simple else t[-1].ident if len(t) == 3 and t[1].text == "."
                                  else f"KSQL_COL_{i}")
            out.append((_sql_expr(_expr_text(t, names), "expression").alias(name), name))
        return out

    def _aggregate(self, st: CreateAs, src: Source, p: Pipeline, sink: str) -> Query:
        sel = st.select
        if len(sel.group_by) != 1:
            raise QueryError("GROUP BY more than one column needs key_format JSON, not supported yet",
                             hint="GROUP BY one column (combine columns in a first statement)")
        key = sel.group_by[0]
        cols = {c.name: c for c in src.columns}
        if key not in cols:
            raise QueryError(f"GROUP BY column {key} is not a column of {src.name}")
        aggs: dict[str, Agg] = {}
        pre: list[pl.Expr] = []
        # aggregate calls become hidden columns __a<i>; their arguments, if expressions, __x<i>
        items: list[tuple[tuple[Token, ...], str]] = []
        for i, item in enumerate(sel.items):
            toks = self._lift(item.tokens, aggs, pre, cols)
            t = item.tokens
            simple = len(t) == 1 and t[0].kind in ("id", "qid")
            items.append((toks, item.alias or (t[0].ident if simple else f"KSQL_COL_{i}")))
        having = self._lift(sel.having, aggs, pre, cols) if sel.having is not None else None
        allowed = {key, "WINDOWSTART", "WINDOWEND"} | set(aggs)
        for toks, _name in items:
            bad = _columns(toks) - allowed
            if bad:
                raise QueryError(f"non-aggregate SELECT expression(s) not part of GROUP BY: {', '.join(sorted(bad))}",
                                 hint=f"add them to GROUP BY or aggregate them, e.g. MAX({sorted(bad)[0]})")
        if not any(name == key or (len(t) == 1 and t[0].ident == key) for t, name in items):
            raise QueryError(f"the key column {key} must be in the SELECT list (ksqlDB puts it in the key)",
                             hint=f"SELECT {key}, ...")
        if sel.window is None and sel.emit == "FINAL":
            raise QueryError("EMIT FINAL needs a WINDOW clause")
        w = sel.window
        if w is not None and src.derived and src.timestamp is None:
            raise QueryError(f"{src.name} does not carry an event time: its records hold the time they were written",
                             hint=f"SELECT the timestamp column of its input, unchanged, in {src.name}; or declare "
                                  "a stream over its topic WITH (timestamp='<column>')")
        spec = WindowSpec("tumbling" if w is None else w.kind.lower(),
                          w.size if w else _FOREVER, w.advance if w else _FOREVER, w.grace if w else 0)
        if pre:
            p = p.with_columns(*pre)
        p = p.window(key=key, size=spec, time=src.timestamp or None,
                     emit="changes" if sel.emit == "CHANGES" else "close").agg(**aggs)
        ktype = cols[key].type
        windowed, session = w is not None, w is not None and w.kind == "SESSION"
        names = {"WINDOWSTART": "window_start", "WINDOWEND": "window_end"}
        out = [(_sql_expr(_expr_text(toks, names), "expression").alias(name), name) for toks, name in items]
        value_names = [n for (toks, n) in items if not (len(toks) == 1 and toks[0].ident == key)]
        having_expr = _sql_expr(_expr_text(having, names), "HAVING clause") if having is not None else None

        def finish(df: pl.DataFrame) -> pl.DataFrame:
            if df.height == 0:
                return df
            keys = encode_key(df[key], ktype, df["window_start"] if windowed else None,
                              df["window_end"] if session else None)
            res = df.select([*(e for e, _ in out if _ in value_names), *([c for c in ("__row",) if c in df.columns])])
            res = res.with_columns(pl.Series("__ksql_key", keys, dtype=pl.Binary))
            dead = df["__tombstone"] if "__tombstone" in df.columns else None  # a replaced session
            if having_expr is not None:
                fails = df.select(having_expr.fill_null(False).not_()).to_series()
                dead = fails if dead is None else dead | fails
            return res.with_columns(dead.alias("__tombstone")) if dead is not None else res

        p = p.map_batch(finish, name="select " + ", ".join(n for _, n in out)).to(sink, key="__ksql_key")
        return Query(st.name, st.kind, sink, src, p, ktype, windowed, st.text, tuple(value_names))

    def _join(self, st: CreateAs, src: Source, p: Pipeline, sink: str) -> Query:
        """A stream-table join (INNER/LEFT) onto the engine's table join, then WHERE and SELECT."""
        sel = st.select
        j = sel.join
        assert j is not None
        if sel.partition_by is not None:
            raise QueryError("PARTITION BY over a join is not supported yet",
                             hint="write the join as CREATE STREAM ... AS SELECT, then re-key that stream")
        table = self.source(j.source)
        if table.value_format != "JSON":
            raise QueryError(f"joining table {table.name} of value_format {table.value_format} is not supported yet",
                             hint="join a table of value_format JSON (copy it with CREATE STREAM ... AS SELECT "
                                  "WITH (value_format='JSON') into a topic, then declare the table over that)")
        if table.kind != "TABLE" or j.how == "full":
            raise QueryError(f"{table.name} is a stream: a stream-stream join needs WITHIN" if table.kind != "TABLE"
                             else "FULL OUTER JOIN of a stream and a table is not supported (nor by ksqlDB)",
                             hint=f"... JOIN {table.name} WITHIN 1 HOUR ON ... (a stream), or [LEFT] JOIN a TABLE")
        if sel.group_by or sel.window is not None:
            raise QueryError("aggregating a join in the same statement is not supported yet",
                             hint="write the join as CREATE STREAM ... AS SELECT, then aggregate that stream")
        pk = table.key
        assert pk is not None
        sides = {tuple(t.ident for t in side if t.kind in ("id", "qid")) for side in (j.left, j.right)}
        tcol = (j.alias, pk.name)
        if tcol not in sides and (table.name, pk.name) not in sides:
            raise QueryError(f"a stream-table join is ON the table's PRIMARY KEY {j.alias}.{pk.name}",
                             hint=f"ON {sel.alias}.<column> = {j.alias}.{pk.name}")
        other = next((s for s in sides if s not in (tcol, (table.name, pk.name))), None)
        scol = other[-1] if other else pk.name
        if scol not in {c.name for c in src.columns}:
            raise QueryError(f"{scol} is not a column of {src.name} (in the join condition)")
        tables = frozenset({j.alias})
        names = {c.name: c.name for c in src.columns}
        p = p.join(SqlTable(table, j.alias), on=scol, how=j.how)
        if sel.where is not None:
            p = p.filter(_sql_expr(_expr_text(sel.where, names, tables), "WHERE clause"))
        proj: list[tuple[pl.Expr, str]] = []
        for i, item in enumerate(sel.items):
            t = item.tokens
            if len(t) == 1 and t[0].text == "*" or any(x.text == "*" and k + 1 == len(t) for k, x in enumerate(t)):
                raise QueryError("SELECT * over a join is not supported yet", hint="list the columns you need")
            simple = len(t) == 1 and t[0].kind in ("id", "qid")
            qual = len(t) == 3 and t[1].text == "."
            name = item.alias or (t[0].ident if simple else t[2].ident if qual else f"KSQL_COL_{i}")
            proj.append((_sql_expr(_expr_text(t, names, tables), "expression").alias(name), name))
        exprs = [e for e, _ in proj]
        ktype = dict((c.name, c.type) for c in src.columns)[scol]
        keyname = scol

        def finish(df: pl.DataFrame) -> pl.DataFrame:
            if df.height == 0:
                return df
            out = df.select(["__row", *exprs])
            keys = encode_key(df[scol], ktype)
            return out.select(["__row", *[n for _, n in proj if n != keyname]]).with_columns(
                pl.Series("__ksql_key", keys, dtype=pl.Binary))

        p = p.map_batch(finish, name="select " + ", ".join(n for _, n in proj)).to(sink, key="__ksql_key")
        keysrc = Source(src.kind, src.name, src.topic, tuple(
            Column(c.name, c.type, c.name == scol) for c in src.columns), src.timestamp)
        schema = {**{c.name: _dtype(c.type, c.name) for c in src.columns},
                  **{f"{j.alias}.{c.name}": _dtype(c.type, c.name) for c in table.columns}}
        der = derived_source(st.name, sink, Column(scol, ktype, True), schema, proj, src.timestamp) \
            if st.kind == "STREAM" else None
        return Query(st.name, st.kind, sink, keysrc, p, ktype, False, st.text,
                     tuple(n for _, n in proj if n != keyname), der)

    def _lift(self, tokens: tuple[Token, ...], aggs: dict[str, Agg], pre: list[pl.Expr],
              cols: dict[str, Column]) -> tuple[Token, ...]:
        """``tokens`` with each aggregate call replaced by its hidden column's name."""
        out: list[Token] = []
        i = 0
        toks = list(tokens)
        while i < len(toks):
            t = toks[i]
            if t.kind == "id" and i + 1 < len(toks) and toks[i + 1].text == "(" and t.upper not in _KEYWORDS:
                depth, j = 0, i + 1
                while j < len(toks):
                    depth += toks[j].text == "("
                    depth -= toks[j].text == ")"
                    if depth == 0:
                        break
                    j += 1
                args = tuple(toks[i + 2:j])
                if t.upper in _AGGS:
                    name = f"__a{len(aggs)}"
                    first, param = _agg_args(t, args)
                    if len(first) == 1 and first[0].text == "*":
                        if t.upper != "COUNT":
                            raise QueryError(f"{t.upper}(*) is not valid", hint=f"{t.upper}(column)")
                        aggs[name] = Agg("count")
                    else:
                        if len(first) == 1 and first[0].kind in ("id", "qid"):
                            column = first[0].ident
                            if column not in cols:
                                raise QueryError(f"{column} is not a column of the source (in {t.upper}(...))")
                        else:
                            column = f"__x{len(pre)}"
                            pre.append(_sql_expr(_expr_text(first, {}), "aggregate argument").alias(column))
                        aggs[name] = Agg(_AGGS[t.upper], column, param)
                    out.append(Token("qid", f'"{name}"', t.pos))
                    i = j + 1
                    continue
                if t.upper in ("COLLECT_SET", "TOPKDISTINCT", "HISTOGRAM", "STDDEV_SAMPLE", "CORRELATION",
                               "AVG_DISTINCT", "STDDEV_POP", "VAR_SAMP", "VAR_POP"):
                    raise QueryError(f"aggregate {t.upper} is not supported yet, at position {t.pos} near "
                                     f"{t.text!r}", hint="supported: " + ", ".join(sorted(_AGGS)))
            out.append(t)
            i += 1
        return tuple(out)


def _agg_args(fn: Token, args: tuple[Token, ...]) -> tuple[tuple[Token, ...], int | None]:
    """The first argument of aggregate ``fn`` and its parameter (TOPK's k; 1/0: ignoreNulls)."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for a in args:
        depth += a.text == "("
        depth -= a.text == ")"
        if a.text == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(a)
    first, rest = tuple(parts[0]), parts[1:]
    name = fn.upper
    if not first:
        raise QueryError(f"{name}() needs a column, at position {fn.pos}", hint=f"{name}(column)")
    if name == "TOPK":
        if len(rest) != 1 or len(rest[0]) != 1 or rest[0][0].kind != "num" or not rest[0][0].text.isdigit() \
                or int(rest[0][0].text) <= 0:
            raise QueryError(f"TOPK takes a column and a positive whole k, at position {fn.pos}",
                             hint="e.g. TOPK(amount, 3)")
        return first, int(rest[0][0].text)
    if name in ("LATEST_BY_OFFSET", "EARLIEST_BY_OFFSET"):
        if not rest:
            return first, 1  # ksqlDB ignores nulls by default
        flag = rest[0][0].upper if len(rest) == 1 and len(rest[0]) == 1 else ""
        if flag in ("TRUE", "FALSE"):
            return first, int(flag == "TRUE")
        raise QueryError(f"{name} with an N (the latest/earliest N values) is not supported yet, at position "
                         f"{fn.pos}", hint=f"{name}(column) or {name}(column, ignoreNulls): TRUE or FALSE")
    if rest:
        raise QueryError(f"{name} takes one argument, at position {fn.pos}", hint=f"{name}(column)")
    return first, None


def _decoder(src: Source) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """Batch columns as the source declares them: upper-cased names (JSON fields match without
    regard to case), declared types, missing ones null, the KEY column from the record key."""
    value_cols = [c for c in src.columns if not c.key]
    key = src.key

    def decode(df: pl.DataFrame) -> pl.DataFrame:
        same: dict[str, list[str]] = {}  # JSON fields differing only in case are one column
        for c in df.columns:
            if not c.startswith("__"):
                same.setdefault(c.upper(), []).append(c)
        wanted = {v.name for v in value_cols}
        keep = [(pl.coalesce(cs) if len(cs) > 1 else pl.col(cs[0])).alias(u) for u, cs in same.items()
                if u in wanted]
        hidden = [c for c in df.columns if c.startswith("__") and c != "__record_key"]
        out = df.select([*hidden, *keep]) if keep or hidden else df
        missing = [pl.lit(None).cast(_dtype(c.type, c.name)).alias(c.name) for c in value_cols
                   if c.name not in out.columns]
        out = out.with_columns(missing) if missing else out
        out = out.with_columns([pl.col(c.name).cast(_dtype(c.type, c.name), strict=False) for c in value_cols])
        if key is not None:
            raw = df["__record_key"] if "__record_key" in df.columns else pl.Series([None] * df.height)
            vals = [decode_key(b, key.type, False)[0] if b is not None else None for b in raw.to_list()]
            out = out.with_columns(pl.Series(key.name, vals, dtype=_dtype(key.type, key.name), strict=False))
        return out

    return decode


def decode_record(q: Query, key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """One output record of ``q`` as a row: key column (and WINDOWSTART/WINDOWEND when windowed),
    then the value's columns (``None`` for a tombstone) and ``_tombstone``."""
    import orjson

    row: dict[str, Any] = {}
    keyname = q.pipeline.window_op.key if q.pipeline.window_op is not None else (
        q.source.key.name if q.source.key else None)
    if keyname is not None and q.key_type is not None:
        kind = q.window_kind
        k, ws, we = decode_window_key(key, q.key_type, kind)
        row[keyname] = k
        if kind is not None:  # a session's key holds its end; a time window's end is start + size
            op = q.pipeline.window_op
            row["WINDOWSTART"] = ws
            row["WINDOWEND"] = we if kind == "session" else None if ws is None or op is None else ws + op.spec.size
    fmt = q.pipeline.sink_format
    if value is not None and fmt is not None:
        df, bad = fmt.decode([value])
        if bad:
            raise QueryError(f"an output record of {q.name} is not {fmt.name}: {bad[0]}")
        row.update(df.row(0, named=True))
    else:
        row.update(orjson.loads(value) if value is not None else {})
    row["_tombstone"] = value is None
    return row


def rows(q: Query, records: list[tuple[bytes | None, bytes | None]]) -> pl.DataFrame:
    """Output records of ``q`` decoded by :func:`decode_record`, as one frame."""
    return pl.DataFrame([decode_record(q, k, v) for k, v in records], infer_schema_length=None)
