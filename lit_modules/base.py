"""Shared bases. Each thing a model inherits is a small class of its own, so a reader sees what
it gets and why:

- `EvaluationMetrics`: torchmetrics declared once, accumulated over the whole validation or
  test set and logged once per epoch;
- `LoggingCadence`: training values logged only on the steps the logger writes;
- `CheckpointGuard`: a checkpoint of another model, or whose weights do not fit, is refused
  with the reason;
- `CheapHookNames`: a speed fix for Lightning's per-hook bookkeeping;
- `ZooBase` puts the four together and saves the hyperparameters (PPO, which runs its own
  optimization, builds on it);
- `ZooModule` adds the optimizer and schedule chosen by arguments (`lit_modules.optimization`);
- `ClassifierModule` adds cross-entropy and accuracy, so a new image classifier is a few lines.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parameter import is_lazy
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from lit_modules.optimization import (
    LRSchedulerCallable,
    OptimizerFactory,
    OptimizerSpec,
    build_lr_scheduler,
    build_optimizer,
    checked_optimizer,
)
from registry.checks import (
    ConfigurationError,
    check_non_negative,
    check_positive,
    check_probability,
)

__all__ = [
    "CheapHookNames",
    "CheckpointGuard",
    "CheckpointMismatchError",
    "ClassifierModule",
    "ConfigurationError",
    "EvaluationMetrics",
    "LoggingCadence",
    "ZooBase",
    "ZooModule",
    "check_non_negative",
    "check_positive",
    "check_probability",
    "mean_metric",
]


def mean_metric() -> MeanMetric:
    """A (weighted) mean metric for losses that turns NaN when a batch's value is NaN:
    MeanMetric's default drops NaN values, which would hide a diverged model."""
    return MeanMetric(nan_strategy=float("nan"))


class CheckpointMismatchError(ConfigurationError):
    """A checkpoint written by another model class, or whose weights do not fit this model."""


class EvaluationMetrics(L.LightningModule):
    """Validation and test metrics declared once, logged once per epoch over the whole set."""

    def __init__(self) -> None:
        super().__init__()
        # Per stage ("val", "test"), the metrics that `set_evaluation_metrics` declared.
        self.evaluation_metrics = nn.ModuleDict()

    def set_evaluation_metrics(self, **metrics: Metric) -> None:
        """Evaluate with these torchmetrics (e.g. ``loss=mean_metric()``): validation and test
        each get their own copies, which `*_step` updates through
        ``self.evaluation_metrics[stage][name]`` and which are logged once per epoch as
        `<stage>/<name>`. One log call per epoch, not per batch: each costs about a millisecond."""
        self.evaluation_metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict({name: metric.clone() for name, metric in metrics.items()})
                for stage in ("val", "test")
            }
        )

    def _log_evaluation_metrics(self, stage: str) -> None:
        if stage in self.evaluation_metrics:
            for name, metric in self.evaluation_metrics[stage].items():
                self.log(f"{stage}/{name}", metric)  # Lightning computes, syncs and resets it

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation_metrics("test")


class LoggingCadence(L.LightningModule):
    """Training values logged only on the batches the logger writes: Lightning's per-call
    logging machinery costs more than a small model's whole step."""

    def is_logging_step(self, step: int) -> bool:
        """Whether training batch `step` (counted from 0) logs: every `log_every_n_steps`-th
        and the first, so the progress bar has values at once."""
        every = self.trainer.log_every_n_steps
        return step == 0 or (bool(every) and (step + 1) % every == 0)

    def log_train_loss(self, loss: torch.Tensor) -> None:
        """Log `train/loss` on the logging steps."""
        if self.is_logging_step(self.global_step):
            self.log("train/loss", loss)


class CheckpointGuard(L.LightningModule):
    """Refuses a checkpoint that another model class wrote (LightningCLI records the class in
    the hyperparameters as `_class_path`) or whose weights do not fit, naming the reason,
    instead of torch's key and size-mismatch lists."""

    @classmethod
    def class_path(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {}).get("_class_path")
        if saved is not None and saved != self.class_path():
            raise CheckpointMismatchError(
                f"this checkpoint was written by {saved}, not {self.class_path()}: load it with "
                f"that model (the CLI picks it when --model is left out)."
            )
        self._check_weights_fit(checkpoint)

    def _check_weights_fit(self, checkpoint: dict[str, Any]) -> None:
        own, saved_weights = self.state_dict(), checkpoint.get("state_dict", {})
        wrong = sorted(set(own) ^ set(saved_weights)) + [
            key
            for key, value in saved_weights.items()
            if key in own and not is_lazy(own[key]) and own[key].shape != value.shape
        ]
        if not wrong:
            return
        saved = checkpoint.get("hyper_parameters", {})
        differ = [
            f"{key}={saved[key]!r} (now {self.hparams[key]!r})"
            for key in saved
            if not key.startswith("_") and key in self.hparams and saved[key] != self.hparams[key]
        ]
        raise CheckpointMismatchError(
            f"the checkpoint's weights do not fit this model ({', '.join(wrong[:3])} missing, "
            f"extra or of another shape); the checkpoint was trained with "
            f"{', '.join(differ) or 'other data or another version of this model'}. Pass the "
            "settings it was trained with (its run directory's config.yaml has them)."
        )


class CheapHookNames(L.LightningModule):
    """Lightning sets `_current_fx_name` before and after every hook call, about forty times a
    training step; nn.Module's __setattr__ searches parameters, buffers and submodules each
    time, which costs more than a small model's whole step. That plain string attribute is
    stored directly."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class ZooBase(EvaluationMetrics, LoggingCadence, CheckpointGuard, CheapHookNames):
    """What every litzoo model inherits (the classes above); its typed `__init__` arguments
    are saved as hyperparameters."""

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()

    def record_hyperparameter(self, name: str, value: Any) -> None:
        """Record `value` as hyperparameter `name` in place of what was passed: an equal record
        of a lambda default, which neither pickles (ddp_spawn) nor loads from a checkpoint."""
        if name in self.hparams:
            self.hparams[name] = self._hparams_initial[name] = value


class ZooModule(ZooBase):
    """A model trained by one optimizer, chosen with its schedule by `__init__` arguments
    (see `lit_modules.optimization`)."""

    def __init__(
        self,
        lr: float = 0.1,
        optimizer: OptimizerFactory = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """
        Args:
            lr: learning rate (the peak rate of a one-cycle schedule).
            optimizer: a torch optimizer, called with the parameters and lr; its other
                arguments are options: --model.optimizer AdamW --model.optimizer.weight_decay 0.05.
            lr_scheduler: a learning-rate schedule, called with the optimizer; None keeps lr
                constant. lit_modules.optimization.OneCycle and CosineAnnealing span the fit,
                InverseSqrt warms up and decays.
        """
        super().__init__()
        self.optimizer_factory = checked_optimizer(optimizer, lr, lr_scheduler)
        # Recorded as plain values (a class or lambda would make the checkpoint need
        # torch.load(weights_only=False)), as LightningCLI records it.
        if isinstance(self.optimizer_factory, OptimizerSpec):
            self.record_hyperparameter("optimizer", self.optimizer_factory.record())
        elif isinstance(self.optimizer_factory, type):
            self.record_hyperparameter("optimizer", OptimizerSpec(optimizer, {}).record())
        self.lr_scheduler_factory = lr_scheduler

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer_factory, self.parameters(), self.hparams.lr)
        if self.lr_scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_lr_scheduler(
                self.lr_scheduler_factory,
                optimizer,
                total_steps=lambda: int(self.trainer.estimated_stepping_batches),
            ),
        }


class ClassifierModule(ZooModule):
    """Cross-entropy classifier with torchmetrics accuracy. Subclasses build ``self.net``
    (logits from a batch of inputs); everything else is here."""

    net: nn.Module

    def __init__(self, num_classes: int = 10, **kwargs: Any) -> None:
        """
        Args:
            num_classes: number of output classes (the CLI takes it from the data).
        """
        super().__init__(**kwargs)
        check_positive(num_classes=num_classes)
        self.set_evaluation_metrics(
            loss=mean_metric(), acc=MulticlassAccuracy(num_classes, average="micro")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log_train_loss(loss)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        metrics = self.evaluation_metrics[stage]
        metrics["loss"].update(F.cross_entropy(logits, y), len(y))
        metrics["acc"].update(logits, y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Class probabilities for the batch's inputs."""
        return self(batch[0]).softmax(dim=-1)
