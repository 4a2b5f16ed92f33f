"""Order-sensitive and collection aggregates of the window step, and per-record values of all of them.

Each aggregate is kept as partial columns in the window state (:func:`partials`), merged with
a batch's partials (:func:`merge`, state columns unsuffixed, batch ones suffixed ``_b``) and
finished into its value (:func:`final`). "By offset" means in arrival order within the
partition (``__row`` within a batch, later batches after earlier ones):

- ``latest`` / ``earliest`` (``param`` 1: ignore nulls, 0: keep them): the value of the last /
  first record; ``__n`` counts the records considered, so that merging knows which side has one;
- ``topk`` (``param`` = k): the k largest non-null values, largest first;
- ``collect_list``: every value (nulls included) in arrival order.

:func:`cumulative` gives, for each record, the partials of its window right after that record
within the batch (for ``emit="changes"``: one row per record); for ``std`` and
``count_distinct`` too. List-valued prefixes cost O(n²) in the records of one window within
one batch; batches are bounded.

>>> from streamml.stream.windows import Agg
>>> df = pl.DataFrame({"k": [1, 1, 1], "v": [3, None, 7], "__row": [0, 1, 2]})
>>> aggs = {"t": Agg("topk", "v", 2), "l": Agg("latest", "v", 0), "e": Agg("earliest", "v", 1)}
>>> part = df.group_by("k").agg([e for n, a in aggs.items() for e in partials(n, a)])
>>> part.select([final(n, a) for n, a in aggs.items()]).to_dicts()
[{'t': [7, 3], 'l': 7, 'e': 3}]
>>> df.select([e for n, a in aggs.items() for e in cumulative(n, a, ["k"])])["t_b"].to_list()
[[3], [3], [7, 3]]
"""

from __future__ import annotations

from typing import Protocol

import polars as pl

from streamml.errors import PipelineError


class Agg(Protocol):
    """What this module reads of :class:`streamml.stream.windows.Agg`."""

    @property
    def fn(self) -> str: ...
    @property
    def column(self) -> str | None: ...
    @property
    def param(self) -> int | None: ...


__all__ = ["MORE", "partials", "cumulative", "merge", "final"]

#: The aggregates of this module.
MORE = frozenset({"latest", "earliest", "topk", "collect_list"})


def _col(agg: Agg) -> pl.Expr:
    if agg.column is None:
        raise PipelineError(f"aggregate {agg.fn}() needs a column")
    return pl.col(agg.column)


def _k(agg: Agg) -> int:
    if agg.param is None or agg.param <= 0:
        raise PipelineError(f"aggregate {agg.fn}() needs a positive k")
    return agg.param


def partials(name: str, agg: Agg) -> list[pl.Expr]:
    """The state columns of one batch's group (rows of a group in any order; ``__row`` orders them)."""
    c = _col(agg).sort_by("__row")
    ignore = agg.param != 0
    if agg.fn in ("latest", "earliest"):
        vals = c.drop_nulls() if ignore else c
        pick = vals.last() if agg.fn == "latest" else vals.first()
        return [pick.alias(name), vals.len().cast(pl.Int64).alias(f"{name}__n")]
    if agg.fn == "topk":
        return [_col(agg).drop_nulls().sort(descending=True).head(_k(agg)).alias(name)]
    if agg.fn == "collect_list":
        return [c.alias(name)]
    raise PipelineError(f"unknown aggregate {agg.fn!r}")


def _prefix(c: pl.Expr, over: list[str]) -> pl.Expr:
    """Each row's list of its group's values up to and including it (rows in arrival order)."""
    return c.implode().over(over).list.head(pl.int_range(pl.len()).over(over) + 1)


def cumulative(name: str, agg: Agg, over: list[str]) -> list[pl.Expr]:
    """The partials after each row of its group (rows sorted by ``__row``), suffixed ``_b``."""
    if agg.fn == "std":
        cf = _col(agg).cast(pl.Float64)
        n = cf.is_not_null().cast(pl.Int64).cum_sum().over(over)
        s = cf.fill_null(0.0).cum_sum().over(over)
        ss = (cf * cf).fill_null(0.0).cum_sum().over(over)
        safe = pl.when(n > 0).then(n).otherwise(1)
        return [n.alias(f"{name}__n_b"), pl.when(n > 0).then(s / safe).otherwise(None).alias(f"{name}__m_b"),
                pl.max_horizontal(ss - s * s / safe, pl.lit(0.0)).alias(f"{name}__q_b")]
    if agg.fn == "count_distinct":
        return [_prefix(_col(agg), over).list.drop_nulls().list.unique().list.sort().alias(f"{name}__set_b")]
    c = _col(agg)
    ignore = agg.param != 0
    if agg.fn in ("latest", "earliest"):
        seen = (c.is_not_null() if ignore else pl.lit(True)).cast(pl.Int64).cum_sum().over(over)
        if agg.fn == "latest":
            value = c.forward_fill().over(over) if ignore else c
        else:
            value = _prefix(c, over).list.drop_nulls().list.first() if ignore else c.first().over(over)
        return [value.alias(f"{name}_b"), seen.alias(f"{name}__n_b")]
    if agg.fn == "topk":
        return [_prefix(c, over).list.drop_nulls().list.sort(descending=True).list.head(_k(agg)).alias(f"{name}_b")]
    if agg.fn == "collect_list":
        return [_prefix(c, over).alias(f"{name}_b")]
    raise PipelineError(f"unknown aggregate {agg.fn!r}")


def merge(name: str, agg: Agg) -> list[pl.Expr]:
    """State partials (unsuffixed) merged with the batch's (``_b``), the state holding earlier records."""
    a, b = pl.col(name), pl.col(f"{name}_b")
    if agg.fn in ("latest", "earliest"):
        na, nb = pl.col(f"{name}__n").fill_null(0), pl.col(f"{name}__n_b").fill_null(0)
        value = pl.when(nb > 0).then(b).otherwise(a) if agg.fn == "latest" else \
            pl.when(na > 0).then(a).otherwise(b)
        return [value.alias(name), (na + nb).alias(f"{name}__n")]
    both = pl.concat_list([a.fill_null([]), b.fill_null([])])
    if agg.fn == "topk":
        return [both.list.sort(descending=True).list.head(_k(agg)).alias(name)]
    if agg.fn == "collect_list":
        return [both.alias(name)]
    raise PipelineError(f"unknown aggregate {agg.fn!r}")


def final(name: str, agg: Agg) -> pl.Expr:
    """The aggregate's value from its state columns."""
    if agg.fn in MORE:
        return pl.col(name)
    raise PipelineError(f"unknown aggregate {agg.fn!r}")
