"""``streamml serve``: score a features topic with the registry's models, swapping them live.

    streamml serve --model fraud --input payments                 # <ns>.features.payments
    streamml serve --model fraud --input payments --strategy canary --canary-share 0.1
    streamml serve --model fraud --also fraud-forest --strategy speculative --deadline-ms 20 --input payments
    streamml serve --model fraud --input payments --port 8080     # plus POST /v1/models/fraud/predict
    streamml serve --model fraud --port 8080                      # request/response only

Several ``streamml serve`` processes with the same ``--model`` (and group) share the input
partitions; give each a distinct, stable ``--instance`` so a restarted one fences its
predecessor's open transaction at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Callable, Optional, TypeVar

import typer

from streamml.cli.common import connected, console, err_console
from streamml.cli.common import settings as cli_settings
from streamml.cli.options import Guarantee, guarantee_option, host_option, idle_option, max_records_option, port_option
from streamml.errors import ConfigError

__all__ = ["register", "build_strategy"]

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def build_strategy(kind: str, model: str, also: list[str], *, candidate_stage: str | None = None,
                   canary_share: float = 0.1, deadline_ms: float = 50.0, fallback_score: float = 0.0,
                   weights: list[float] | None = None, quality: Any = None, min_labels: int = 50) -> Any:
    """The strategy object for the command-line options (looked up by name in the strategy registry)."""
    from streamml.serve import Constant
    from streamml.serve.strategies import StrategyOptions, roles_for
    from streamml.serve.strategies import build_strategy as build

    roles = roles_for(kind, model, also, candidate_stage=candidate_stage)
    options = StrategyOptions(canary_share=canary_share, deadline_s=deadline_ms / 1000.0,
                              fallback=Constant("fallback", score=fallback_score, label=int(fallback_score >= 0.5)),
                              weights=weights, quality=quality, min_labels=min_labels)
    return build(kind, roles, options)


def _weights(text: str | None) -> list[float] | None:
    """``--weights 2,1`` -> ``[2.0, 1.0]``."""
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights {text!r} must be comma-separated numbers", hint="e.g. --weights 2,1") from None


def _while_unavailable(fn: Callable[[], T], what: str, seconds: float) -> T:
    """``fn()``, tried again while Kafka is unavailable (a broker restarting, no leader elected
    yet) for up to ``seconds``; any other error, or the last one, is raised."""
    from streamml.kafka.errors import retry_unavailable

    return retry_unavailable(lambda _: fn(), timeout=seconds, pause=2.0,
                             on_retry=lambda exc: err_console.print(f"{what}: {exc}; trying again", style="yellow",
                                                                   markup=False, highlight=False))


def serve(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="Model name (its production version is served)."),
    input: Optional[str] = typer.Option(None, "--input", "-i",
                                        help="Features topic: a name (<ns>.features.NAME) or a full topic."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Predictions topic [<ns>.predictions.MODEL]."),
    guarantee: Guarantee = guarantee_option(),
    strategy: str = typer.Option("single", help="single, shadow, canary, speculative, consensus, quality."),
    also: list[str] = typer.Option([], "--also", help="Other models for shadow/canary/speculative/consensus/quality."),
    candidate_stage: Optional[str] = typer.Option(None, help="Stage of the candidate (shadow/canary) [the strategy]."),
    canary_share: float = typer.Option(0.1, min=0.0, max=1.0, help="Share of keys routed to the canary."),
    deadline_ms: float = typer.Option(50.0, help="Speculative: answer deadline per batch."),
    fallback_score: float = typer.Option(0.0, help="Speculative: the score given when no model is in time."),
    weights: Optional[str] = typer.Option(None, help="Consensus: comma-separated weights, one per model."),
    labels: Optional[str] = typer.Option(None, help="Quality: labels topic, a name (<ns>.labels.NAME) or full."),
    batch_size: int = typer.Option(5000, min=1, help="Records per micro-batch."),
    group: Optional[str] = typer.Option(None, help="Consumer group [<ns>.serve.MODEL]."),
    instance: Optional[str] = typer.Option(None, envvar="STREAMML_INSTANCE",
                                           help="Stable id of this process in the group [host-pid]."),
    keep: list[str] = typer.Option([], "--keep", help="Input columns to copy into each prediction."),
    port: Optional[int] = port_option(None, "Also answer POST /v1/models/MODEL/predict on this port."),
    host: str = host_option("Address of the --port listener."),
    wait: float = typer.Option(60.0, help="Seconds to wait for Kafka and for a servable model at start."),
    follow_rollback: bool = typer.Option(False, help="Swap back to an older version when the stage is rolled back."),
    max_records: Optional[int] = max_records_option(),
    idle_exit: Optional[float] = idle_option(),
) -> None:
    """Score a features topic; follow the models topic and swap new versions in without restarting."""
    from streamml.kafka.names import resolve_topic
    from streamml.serve import LiveQuality, ModelHost, Scorer, ServeOptions
    from streamml.serve.registry_source import RegistrySource
    from streamml.serve.strategies import roles_for, strategy_class

    # every option is checked before anything connects: an unknown strategy, a wrong
    # number of models, bad weights, a bad topic name or instance id
    strategy_class(strategy).check_models(len(roles_for(strategy, model, list(also), candidate_stage=candidate_stage)))
    w = _weights(weights)
    mode = guarantee.value
    namespace = cli_settings(ctx).namespace
    opts = None
    if input is not None:
        opts = ServeOptions(resolve_topic(input, namespace, kind="features"), output_topic=output, mode=mode,
                            group=group, instance=instance, batch_size=batch_size, keep=tuple(keep),
                            wait_for_model_s=wait, follow_rollback=follow_rollback)
    elif port is None:
        raise ConfigError("nothing to serve", hint="give --input TOPIC, --port PORT, or both")
    if strategy == "quality" and not labels:
        raise ConfigError("the quality strategy needs --labels TOPIC")
    if strategy != "quality":  # the quality strategy is built once its labels are followed
        build_strategy(strategy, model, list(also), candidate_stage=candidate_stage, canary_share=canary_share,
                       deadline_ms=deadline_ms, fallback_score=fallback_score, weights=w)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = connected(ctx, wait=wait)
    quality = None
    if strategy == "quality":
        quality = LiveQuality().follow(settings, resolve_topic(labels or "", settings.namespace, kind="labels"))
    strat = build_strategy(strategy, model, list(also), candidate_stage=candidate_stage, canary_share=canary_share,
                           deadline_ms=deadline_ms, fallback_score=fallback_score, weights=w, quality=quality)
    source = _while_unavailable(lambda: RegistrySource(settings), "reading the models topic", wait)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if opts is None:
        assert port is not None
        models = ModelHost(source, strat.roles, follow_rollback=follow_rollback)
        # HTTP first: /livez answers and /readyz says 503 while the model loads
        from streamml.serve.http import serve_http  # the http extra, only when asked for

        server, _ = serve_http(models, port, host)
        try:
            models.start(wait_for=strat.primary, timeout=wait)
        except BaseException:
            server.should_exit = True
            raise
        current = models.get(model)
        console.print(f"serving {model} v{current.version if current else '?'} on "
                      f"http://{host}:{port}/v1/models/{model}/predict", markup=False, highlight=False)
        stop.wait()
        server.should_exit = True
        models.stop()
        return

    topic = opts.input_topic
    scorer = Scorer(settings, strat, source, opts)
    scorer.stop_event = stop
    server = None
    if port is not None:  # HTTP first: /livez answers and /readyz says 503 while the model loads
        from streamml.serve.http import serve_http  # the http extra, only when asked for

        server, _ = serve_http(scorer.host, port, host)
        err_console.print(f"HTTP: http://{host}:{port}/v1/models/{model}/predict", style="dim", markup=False,
                          highlight=False)
    try:
        _while_unavailable(scorer.start, "starting the scorer", wait)
    except BaseException:
        if server is not None:
            server.should_exit = True
        raise
    err_console.print(f"scoring {topic} -> {scorer.output_topic} with {strategy} ({mode}); "
                      f"serving {', '.join(f'{r} v{m.version}' for r, m in scorer.host.snapshot().items() if m)}",
                      markup=False, highlight=False)
    try:
        stats = scorer.run(max_records=max_records, idle_exit_s=idle_exit)
    finally:
        if server is not None:
            server.should_exit = True
        if quality is not None:
            quality.stop()
    console.print(stats.as_dict())
