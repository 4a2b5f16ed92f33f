"""The stream engine: vectorised micro-batch pipelines with state, windows, joins and SQL.

Build a pipeline with :func:`stream`, run it with :func:`run` (or ``streamml run app.py``),
recompute it over history with :func:`replay`, unit-test it with :class:`TestDriver`.
"""

from streamml.stream.pipeline import Pipeline, stream
from streamml.stream.replay import replay
from streamml.stream.runner import RunOptions, Worker, run
from streamml.stream.sessions import session
from streamml.stream.table import Table
from streamml.stream.testing import TestDriver
from streamml.stream.windows import (
    Agg,
    WindowSpec,
    count,
    count_distinct,
    hopping,
    last,
    max,
    mean,
    min,
    sliding,
    std,
    sum,
    tumbling,
)

__all__ = [
    "stream", "Pipeline", "Table", "TestDriver", "RunOptions", "Worker", "run", "replay", "WindowSpec", "Agg",
    "tumbling", "hopping", "sliding", "session",
    "count", "sum", "mean", "min", "max", "std", "count_distinct", "last",
]
