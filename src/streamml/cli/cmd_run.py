"""``streamml run app.py --workers N``: run the stream pipelines an app module defines.

The module defines pipelines at module level (``features = stream("payments")...to("x")``)
or an ``app`` attribute holding one pipeline or a list of them. With ``--workers N`` the
command supervises N worker processes (:class:`streamml.runtime.supervisor.Supervisor`: a
worker killed by a signal or crashed is restarted with a capped back-off; a configuration
error stops the app); each worker runs every selected pipeline on the shared runtime, and
the consumer group spreads the partitions over the workers and over the hosts that run the
same command. A worker keeps its instance id (``<instance>-<i>``) across restarts, which
fences its predecessor's transactions.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from streamml.cli.common import connected, console, err_console
from streamml.cli.options import Guarantee, guarantee_option, idle_option
from streamml.config import Settings
from streamml.errors import AuthorizationError, ConfigError, PipelineError
from streamml.runtime.supervisor import EXIT_CONFIG, EXIT_STUCK, Supervisor

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


def _env_for(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    if settings.bootstrap_servers:
        env["STREAMML_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["STREAMML_NAMESPACE"] = settings.namespace
    env["STREAMML_HOME"] = str(settings.home)
    for k, v in settings.kafka.items():
        env["STREAMML_KAFKA__" + k.replace(".", "_").upper()] = v
    return env


def _exit_when_stuck(member: str) -> Any:
    """The watchdog's action in a command-line worker: print the stacks and exit, so that the
    supervisor (or the service manager) restarts it; its new producer fences the stuck
    transaction. A client call stuck past its own timeouts (a lost coordinator) would
    otherwise hold the worker's partitions."""

    def on_stuck(seconds: float, stacks: str) -> None:
        err_console.print(f"error: worker {member} made no progress for {seconds:.0f}s (--stuck-after); "
                          "stopping so that it is restarted. Stacks:", markup=False, highlight=False)
        sys.stderr.write(stacks + "\n")
        sys.stderr.flush()
        os._exit(EXIT_STUCK)

    return on_stuck


def _run_worker(settings: Settings, pipelines: list[Any], options: Any,
                idle_exit: Optional[float]) -> None:
    from streamml.stream.runner import Worker

    def on_event(name: str) -> Callable[[str, dict[str, Any]], None]:
        def report(kind: str, info: dict[str, Any]) -> None:
            # membership and recovery, one line each: who owns what, and when it changed
            if kind in ("started", "assigned", "revoked", "recovered", "aborted"):
                detail = " ".join(f"{k}={v}" for k, v in info.items())
                err_console.print(f"{time.strftime('%H:%M:%S')} worker {options.member} {name}: {kind} {detail}",
                                  markup=False, highlight=False)
        return report

    workers = [Worker(p, settings, options, on_event=on_event(p.name), on_stuck=_exit_when_stuck(options.member))
               for p in pipelines]

    def stop_all(*_: Any) -> None:
        for w in workers:
            w.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_all)
    errors: list[BaseException] = []

    def one(w: Any) -> None:
        try:
            w.run(idle_exit=idle_exit)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            for other in workers:
                other.stop()

    threads = [threading.Thread(target=one, args=(w,), name=f"stream-{w.pipeline.name}") for w in workers]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    if errors:
        exc = errors[0]
        if isinstance(exc, (ConfigError, PipelineError, AuthorizationError)):
            err_console.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(EXIT_CONFIG)  # a restart would fail the same way
        raise exc


def run_cmd(
    ctx: typer.Context,
    app_file: Path = typer.Argument(..., help="Python module that defines pipelines."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes to run (supervised)."),
    instance: Optional[str] = typer.Option(
        None, "--instance",
        help="This member's name in the group, stable across restarts and distinct per host "
             "(default: the host name). With --workers N the workers are <instance>-0 .. <instance>-N-1."),
    pipeline: Optional[list[str]] = typer.Option(None, "--pipeline", "-p", help="Run only these pipelines."),
    guarantee: Guarantee = guarantee_option(),
    max_batch: int = typer.Option(10_000, "--max-batch", min=1, help="Records per micro-batch at most."),
    idle_exit: Optional[float] = idle_option(),
    stuck_after: float = typer.Option(50.0, "--stuck-after",
                                      help="Restart a worker that makes no progress for this long "
                                           "(seconds; 0: never)."),
    max_restarts: Optional[int] = typer.Option(None, "--max-restarts",
                                               help="Stop the app when one worker was restarted more often."),
    worker_index: Optional[int] = typer.Option(None, "--worker-index", hidden=True,
                                               help="Internal: the index of a supervised worker."),
    describe: bool = typer.Option(False, "--describe", help="Print the topologies and exit."),
) -> None:
    """Run the stream pipelines defined in APP_FILE (exactly-once by default).

    Run the same command on several hosts (or several times with distinct --instance) to
    share the partitions in one consumer group; a restarted instance fences its predecessor.
    """
    from streamml.runtime import LoopOptions, instance_id

    pipelines = load_pipelines(app_file, pipeline)
    if describe:
        for p in pipelines:
            console.print(p.describe(), highlight=False, markup=False)
            console.print(f"  fingerprint {p.fingerprint()}", highlight=False, markup=False)
        return
    settings = connected(ctx)
    if workers == 1 or worker_index is not None:
        index = worker_index or 0
        member = instance if instance and worker_index is None else instance_id(index)
        if instance and worker_index is not None:
            member = f"{instance}-{worker_index}"
        opts = LoopOptions(guarantee=guarantee.value, instance=member, max_batch=max_batch, stuck_after_s=stuck_after)
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        _run_worker(settings, pipelines, opts, idle_exit)
        return
    base = instance or instance_id(0).rsplit("-", 1)[0]
    LoopOptions(instance=f"{base}-0")  # checks the name before any worker starts
    args = ["--guarantee", guarantee.value, "--max-batch", str(max_batch), "--stuck-after", str(stuck_after)]
    for name in pipeline or []:
        args += ["--pipeline", name]
    if idle_exit is not None:
        args += ["--idle", str(idle_exit)]
    env = _env_for(settings)

    def command(i: int) -> list[str]:
        return [sys.executable, "-m", "streamml", "run", str(app_file), "--instance", f"{base}-{i}", *args]

    sup = Supervisor(command, workers, env=env, max_restarts=max_restarts,
                     say=lambda line: err_console.print(line, markup=False, highlight=False))
    sup.install_signal_handlers()
    console.print(f"running {workers} worker(s) of {app_file} as {base}-0..{base}-{workers - 1}",
                  markup=False, highlight=False)
    code = sup.run()
    if code:
        raise typer.Exit(code)
