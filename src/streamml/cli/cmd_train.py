"""``streamml train``: train a model from topics now, ask a retrainer to, or run one."""

from __future__ import annotations

from typing import Optional

import typer

from streamml.cli.common import connected, console
from streamml.errors import ConfigError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command(name="train")(train_cmd)


def train_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name in the registry."),
    features: Optional[str] = typer.Option(None, "--features",
                                           help="Features topic or stream name (default: the model name)."),
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Labels topic or stream name."),
    trainer: str = typer.Option("sklearn", "--trainer",
                                help="sklearn, isolation_forest, autoencoder, torch_autoencoder, torch_classifier "
                                     "or keras_autoencoder."),
    columns: Optional[str] = typer.Option(None, "--columns", "-c", help="Feature columns, comma-separated."),
    metric: str = typer.Option("roc_auc", "--metric",
                               help="Evaluation metric: roc_auc, average_precision, accuracy, f1, neg_log_loss "
                                    "or neg_mse."),
    margin: float = typer.Option(0.0, "--margin", help="Promote only when better than production by more."),
    holdout: float = typer.Option(0.2, "--holdout", help="Newest fraction held out for evaluation."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the split and the trainer."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Publish as a candidate whatever the scores."),
    warm_start: bool = typer.Option(False, "--warm-start",
                                    help="Continue training the production version on the data that arrived after it "
                                         "(torch_* and keras_* trainers)."),
    request: bool = typer.Option(False, "--request",
                                 help="Only send a retrain command on <ns>.control (a running retrainer acts)."),
    watch: bool = typer.Option(False, "--watch", help="Keep running: retrain on control commands and triggers."),
    every: Optional[float] = typer.Option(None, "--every", min=0.001, help="With --watch: retrain every N seconds."),
    new_labels: Optional[int] = typer.Option(None, "--new-labels", min=1,
                                             help="With --watch: retrain after N new labelled records."),
) -> None:
    """Train NAME from its features (and labels) topics, evaluate against production on the
    same held-out window, publish to the registry, promote if better by --margin."""
    from streamml.registry.descriptor import check_name
    from streamml.train import BUILTIN_TRAINERS, METRICS, Retrainer, TrainingJob, request_retrain

    check_name(name)  # every option is checked before anything connects
    if trainer not in BUILTIN_TRAINERS:
        raise ConfigError(f"--trainer {trainer!r} is not one of {', '.join(BUILTIN_TRAINERS)}",
                          hint="e.g. --trainer sklearn")
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r} is not one of {', '.join(METRICS)}", hint="e.g. --metric roc_auc")
    if not 0 < holdout < 1:
        raise ConfigError(f"--holdout must be between 0 and 1 (a fraction), got {holdout}", hint="e.g. --holdout 0.2")
    if (every is not None or new_labels is not None) and not watch:
        raise ConfigError("--every and --new-labels need --watch")
    made = BUILTIN_TRAINERS[trainer]()
    if warm_start and not hasattr(made, "warm_start"):
        raise ConfigError(f"--trainer {trainer} cannot --warm-start",
                          hint="use torch_autoencoder, torch_classifier or keras_autoencoder")
    settings = connected(ctx)
    if request:
        request_retrain(settings, name, reason="streamml train --request")
        console.print(f"retrain of [bold]{name}[/bold] requested on {settings.topic('control')}")
        return
    job = TrainingJob(name, features or name, made, labels_topic=labels,
                      features=[c.strip() for c in columns.split(",")] if columns else None, metric=metric,
                      margin=margin, holdout=holdout, seed=seed, promote=not no_promote,
                      dataset_options={"progress": True}, warm_start=warm_start)
    if watch:
        r = Retrainer(settings, job, every_s=every, new_labels=new_labels,
                      on_result=lambda res: _show(res))
        console.print(f"retrainer for [bold]{name}[/bold] waiting on {settings.topic('control')} (Ctrl-C stops)")
        try:
            r.run()
        except KeyboardInterrupt:
            pass
        finally:
            r.close()
        return
    _show(job.run(settings, reason="streamml train"))


def _show(res: object) -> None:
    r = res  # TrainingResult
    d = r.descriptor  # type: ignore[attr-defined]
    prod = "none" if r.production_score is None else f"{r.production_score:.4f} (v{r.production_version})"  # type: ignore[attr-defined]
    verdict = "[green]promoted to production[/green]" if r.promoted else "[yellow]kept as candidate[/yellow]"  # type: ignore[attr-defined]
    console.print(f"{d.ref}: {d.decision['metric']} candidate={r.candidate_score:.4f} vs production={prod} -> "  # type: ignore[attr-defined]
                  f"{verdict} ({d.format}, {d.size:,} bytes, sha256 {d.sha256[:12]})")
