"""Pipelines run by a command: in this process, or in N supervised worker processes.

``streamml run app.py`` and ``streamml sql --file f.sql --deploy`` share this: with
``--workers 1`` (or as a supervised worker) the command runs every pipeline in a thread of its
own on the runtime; with ``--workers N`` it runs N copies of itself under
:class:`streamml.runtime.supervisor.Supervisor` (a worker killed by a signal or crashed is
restarted with a capped back-off; a configuration error stops the app). A worker keeps its
instance id (``<instance>-<i>``) across restarts, which fences its predecessor's transactions,
and the consumer group spreads the partitions over the workers and the hosts.

>>> member_name(None, None, host="box.example.com"), member_name("a", None), member_name("a", 3)
('box-0', 'a', 'a-3')
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import typer

from streamml.cli.common import err_console
from streamml.config import Settings
from streamml.errors import AuthorizationError, ConfigError, PipelineError
from streamml.runtime.supervisor import EXIT_CONFIG, EXIT_STUCK, Supervisor

__all__ = ["WorkerArgs", "member_name", "env_for", "run_worker", "run_pipelines"]


@dataclass(frozen=True)
class WorkerArgs:
    """The options of a command that runs pipelines (``run``, ``sql --deploy``)."""

    workers: int = 1
    instance: Optional[str] = None
    worker_index: Optional[int] = None
    guarantee: str = "exactly-once"
    max_batch: int = 10_000
    stuck_after: float = 50.0
    idle_exit: Optional[float] = None
    max_restarts: Optional[int] = None

    def child_args(self) -> list[str]:
        """The options a supervised worker is started with (besides ``--instance``)."""
        args = ["--guarantee", self.guarantee, "--max-batch", str(self.max_batch), "--stuck-after",
                str(self.stuck_after)]
        if self.idle_exit is not None:
            args += ["--idle", str(self.idle_exit)]
        return args


def member_name(instance: Optional[str], worker_index: Optional[int], *, host: str | None = None) -> str:
    """This process's instance id: ``--instance`` as given, ``<instance>-<i>`` for supervised
    worker ``i``, else the host's default (``<short host name>-<i>``)."""
    from streamml.runtime import instance_id

    if instance and worker_index is not None:
        return f"{instance}-{worker_index}"
    return instance or instance_id(worker_index or 0, host=host)


def env_for(settings: Settings) -> dict[str, str]:
    """The environment of a worker process: the settings this process resolved."""
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


def run_worker(settings: Settings, pipelines: list[Any], options: Any, idle_exit: Optional[float]) -> None:
    """Run every pipeline in a thread of this process until SIGINT/SIGTERM (or idle).

    The pipelines' topics are created in their order before any runs, so a pipeline that reads
    what an earlier one writes (chained SQL queries) finds its input topic.
    """
    from streamml.stream.runner import Worker

    def on_event(name: str) -> Callable[[str, dict[str, Any]], None]:
        def report(kind: str, info: dict[str, Any]) -> None:
            # membership and recovery, one line each: who owns what, and when it changed
            if kind in ("started", "assigned", "revoked", "recovered", "aborted", "stopped"):
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
    try:
        for w in workers:
            w.start()
    except BaseException as failed:  # noqa: BLE001 - reported below, after the started ones close
        errors.append(failed)
        for w in workers:
            w.close(after_error=True)
        workers = []

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


def run_pipelines(settings: Settings, pipelines: list[Any], args: WorkerArgs,
                  child: Callable[[str], list[str]], what: str) -> None:
    """Run ``pipelines`` here (one worker, or as supervised worker ``--worker-index``), or
    supervise ``args.workers`` processes ``python -m streamml <child(instance)>``."""
    from streamml.runtime import LoopOptions, instance_id

    if args.workers == 1 or args.worker_index is not None:
        member = member_name(args.instance, args.worker_index)
        opts = LoopOptions(guarantee=args.guarantee, instance=member, max_batch=args.max_batch,
                           stuck_after_s=args.stuck_after)
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        run_worker(settings, pipelines, opts, args.idle_exit)
        return
    base = args.instance or instance_id(0).rsplit("-", 1)[0]
    LoopOptions(instance=f"{base}-0")  # checks the name before any worker starts

    def command(i: int) -> list[str]:
        return [sys.executable, "-m", "streamml", *child(f"{base}-{i}"), *args.child_args()]

    sup = Supervisor(command, args.workers, env=env_for(settings), max_restarts=args.max_restarts,
                     say=lambda line: err_console.print(line, markup=False, highlight=False))
    sup.install_signal_handlers()
    err_console.print(f"running {args.workers} worker(s) of {what} as {base}-0..{base}-{args.workers - 1}",
                      markup=False, highlight=False)
    code = sup.run()
    if code:
        raise typer.Exit(code)
