"""The callbacks litzoo adds to a run, left out where a Trainer flag turns their feature off
(`--trainer.enable_checkpointing false`, `--trainer.logger false`, ...), and only those the
subcommand uses: every callback's hooks run on every step."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.callbacks.progress import ProgressBar

from callbacks.checkpoints import LatestCheckpoint
from callbacks.finite import StopOnNonFinite
from callbacks.learning_curve import LearningCurvePlot
from callbacks.predictions import PredictionWriter
from callbacks.progress import MetricsProgressBar
from callbacks.resume import ExactResume


def default_callbacks(
    subcommand: str | None,
    trainer: dict[str, Any],
    best: ModelCheckpoint,
    latest: LatestCheckpoint,
    patience: int | None = None,
) -> list[L.Callback]:
    """The callbacks for `subcommand` given the Trainer's arguments `trainer`: `best` keeps
    best.ckpt on its monitor (which early stopping after `patience` validations follows too),
    `latest` keeps last.ckpt; a fit also resumes exactly and stops on NaN or infinity."""
    callbacks: list[L.Callback] = []
    given = trainer.get("callbacks") or []
    if trainer.get("enable_progress_bar") is not False and not any(
        isinstance(c, ProgressBar) for c in given
    ):
        callbacks.append(MetricsProgressBar(keys=("train/loss", best.monitor)))
    if subcommand == "predict":
        callbacks.append(PredictionWriter())
    if subcommand not in ("fit", None):
        return callbacks
    if trainer.get("enable_checkpointing") is not False:
        # LatestCheckpoint after the best-checkpoint callback: last.ckpt holds its state too.
        callbacks += [best, latest]
    if patience is not None:
        callbacks.append(EarlyStopping(monitor=best.monitor, mode=best.mode, patience=patience))
    if trainer.get("logger"):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    return [*callbacks, LearningCurvePlot(), ExactResume(), StopOnNonFinite()]
