"""Shared bases: optimizer and schedule from hyperparameters, checkpoints that know which class
wrote them, and a classifier base that makes a new image classifier a few lines."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parameter import is_lazy
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

OptimizerName = Literal["sgd", "adam", "adamw"]
SchedulerName = Literal["constant", "cosine", "onecycle", "inverse_sqrt"]


class HyperparameterError(ValueError):
    """A hyperparameter outside its valid range; the message names it and the range."""


def check_positive(**values: float) -> None:
    """Raise a HyperparameterError naming the first hyperparameter that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise HyperparameterError(f"{name} must be > 0, got {value}")


def check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise HyperparameterError(f"{name} must be >= 0, got {value}")


def check_dropout(**values: float) -> None:
    """Raise a HyperparameterError naming the first dropout probability outside [0, 1)."""
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise HyperparameterError(f"{name} must be in [0, 1), got {value}")


def mean_metric() -> MeanMetric:
    """A (weighted) mean metric for losses that turns NaN when a batch's value is NaN:
    MeanMetric's default drops NaN values, which would hide a diverged model."""
    return MeanMetric(nan_strategy=float("nan"))


class CheckpointMismatchError(ValueError):
    """A checkpoint written by a different model class than the one loading it."""


class ZooModule(L.LightningModule):
    """Base of every litzoo model: typed hyperparameters saved with the checkpoint, the
    optimizer and LR schedule chosen by them, and a guard against loading another model's
    checkpoint."""

    def __init__(
        self,
        lr: float = 0.1,
        optimizer: OptimizerName = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        scheduler: SchedulerName = "constant",
        warmup_steps: int = 4000,
    ) -> None:
        """
        Args:
            lr: learning rate (the peak rate for the onecycle schedule).
            optimizer: sgd, adam or adamw.
            momentum: SGD momentum (ignored by adam/adamw).
            weight_decay: L2 penalty (decoupled for adamw).
            scheduler: constant, cosine (annealed to 0 per step), onecycle, or inverse_sqrt (the
                Transformer paper's: a linear warm-up to lr over warmup_steps, then lr times
                sqrt(warmup_steps / step); it needs no planned length, so a run stopped at any
                time has followed the same schedule).
            warmup_steps: inverse_sqrt's warm-up length in optimizer steps.
        """
        super().__init__()
        check_positive(lr=lr, warmup_steps=warmup_steps)
        check_non_negative(momentum=momentum, weight_decay=weight_decay)
        self.save_hyperparameters()
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

    def __setattr__(self, name: str, value: Any) -> None:
        """Lightning sets `_current_fx_name` before and after every hook call, about forty
        times a training step; nn.Module's __setattr__ searches parameters, buffers and
        submodules each time, which costs more than a small model's whole step. That plain
        string attribute is stored directly."""
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "constant":
            return opt
        if hp.scheduler == "inverse_sqrt":
            warmup = hp.warmup_steps
            schedule = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda step: min((step + 1) / warmup, (warmup / (step + 1)) ** 0.5)
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
        steps = int(self.trainer.estimated_stepping_batches)
        if hp.scheduler == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        else:
            schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def is_logging_step(self, step: int) -> bool:
        """Whether training batch `step` (counted from 0) logs: the batches the logger writes
        (every `log_every_n_steps`-th) and the first, so the progress bar has values at once.
        Lightning's per-call logging machinery costs more than a small model's whole step, so
        modules log only on these batches."""
        every = self.trainer.log_every_n_steps
        return step == 0 or (bool(every) and (step + 1) % every == 0)

    def log_train_loss(self, loss: torch.Tensor) -> None:
        """Log `train/loss` on the logging steps (see `is_logging_step`)."""
        if self.is_logging_step(self.global_step):
            self.log("train/loss", loss)

    @classmethod
    def class_path(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["litzoo_class_path"] = self.class_path()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("litzoo_class_path")
        if saved is not None and saved != self.class_path():
            raise CheckpointMismatchError(
                f"this checkpoint was written by {saved}, not {self.class_path()}: load it with "
                f"that model (the CLI picks it when --model is left out)."
            )
        self._check_weights_fit(checkpoint)

    def _check_weights_fit(self, checkpoint: dict[str, Any]) -> None:
        """Name the hyperparameters behind weights that are missing, extra or of the wrong
        shape (a different dataset, vocabulary or architecture setting, say) instead of leaving
        torch's key and size-mismatch lists to decode."""
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
