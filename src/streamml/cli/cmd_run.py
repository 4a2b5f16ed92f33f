"""``streamml run app.py --workers N``: run the stream pipelines an app module defines.

The module defines pipelines at module level (``features = stream("payments")...to("x")``)
or an ``app`` attribute holding one pipeline or a list of them. With ``--workers N`` the
command supervises N worker processes (:class:`streamml.runtime.supervisor.Supervisor`: a
worker killed by a signal or crashed is restarted with a capped back-off; a configuration
error stops the app); each worker runs every selected pipeline on the shared runtime, and
the consumer group spreads the partitions over the workers and over the hosts that run the
same command. A worker keeps its instance id (``<instance>-<i>``) across restarts, which
fences its predecessor's transactions (the running is :mod:`streamml.cli.workers`, shared with
``streamml sql --deploy``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from streamml.cli.common import connected, console
from streamml.cli.options import (
    Guarantee,
    guarantee_option,
    idle_option,
    instance_option,
    max_batch_option,
    max_restarts_option,
    stuck_after_option,
    worker_index_option,
    workers_option,
)
from streamml.cli.workers import WorkerArgs, run_pipelines
from streamml.errors import ConfigError, PipelineError

__all__ = ["register", "load_pipelines"]


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)


def load_pipelines(path: Path, names: list[str] | None = None) -> list[Any]:
    """The pipelines (with a sink) that the module at ``path`` defines."""
    from streamml.stream.pipeline import Pipeline

    if not path.is_file():
        raise ConfigError(f"app file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"streamml_app_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if isinstance(app, Pipeline):
        found = [app]
    elif isinstance(app, (list, tuple)):
        found = [p for p in app if isinstance(p, Pipeline)]
    else:
        found = [v for v in vars(module).values() if isinstance(v, Pipeline) and v.sink_name is not None]
    seen: dict[str, Any] = {}
    for p in found:
        seen.setdefault(p.name, p)
    pipelines = list(seen.values())
    if names:
        missing = set(names) - set(seen)
        if missing:
            raise ConfigError(f"no pipeline named {', '.join(sorted(missing))} in {path}",
                              hint="pipelines: " + ", ".join(seen))
        pipelines = [seen[n] for n in names]
    if not pipelines:
        raise PipelineError(f"{path} defines no pipeline with a sink",
                            hint="define e.g. features = stream('payments')....to('features') at module level")
    return pipelines


def run_cmd(
    ctx: typer.Context,
    app_file: Path = typer.Argument(..., help="Python module that defines pipelines."),
    workers: int = workers_option(),
    instance: Optional[str] = instance_option(),
    pipeline: Optional[list[str]] = typer.Option(None, "--pipeline", "-p", help="Run only these pipelines."),
    guarantee: Guarantee = guarantee_option(),
    max_batch: int = max_batch_option(),
    idle_exit: Optional[float] = idle_option(),
    stuck_after: float = stuck_after_option(),
    max_restarts: Optional[int] = max_restarts_option(),
    worker_index: Optional[int] = worker_index_option(),
    describe: bool = typer.Option(False, "--describe", help="Print the topologies and exit."),
) -> None:
    """Run the stream pipelines defined in APP_FILE (exactly-once by default).

    Run the same command on several hosts (or several times with distinct --instance) to
    share the partitions in one consumer group; a restarted instance fences its predecessor.
    """
    pipelines = load_pipelines(app_file, pipeline)
    if describe:
        for p in pipelines:
            console.print(p.describe(), highlight=False, markup=False)
            console.print(f"  fingerprint {p.fingerprint()}", highlight=False, markup=False)
        return
    settings = connected(ctx)
    args = WorkerArgs(workers=workers, instance=instance, worker_index=worker_index, guarantee=guarantee.value,
                      max_batch=max_batch, stuck_after=stuck_after, idle_exit=idle_exit, max_restarts=max_restarts)
    selected = [a for name in pipeline or [] for a in ("--pipeline", name)]
    run_pipelines(settings, pipelines, args, lambda member: ["run", str(app_file), "--instance", member, *selected],
                  str(app_file))
