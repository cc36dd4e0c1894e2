"""Stop a fit whose loss, logged metrics or weights turn NaN or infinite, before a checkpoint
of that state is written."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch


class NonFiniteError(RuntimeError):
    """A fit's loss, a logged metric or a weight became NaN or infinite."""


class StopOnNonFinite(L.Callback):
    """Raises NonFiniteError, naming what diverged and when, as soon as the training loss, a
    logged metric or (before a checkpoint is written) a weight is NaN or infinite. The
    checkpoint callbacks run after this one, so the checkpoints keep the last good state.

    The training loss is checked every step, on its device; the host looks at the result (and
    at the logged metrics) after every step when the loss is on the CPU, where that costs
    nothing, and otherwise on the logging steps, at validation and epoch ends and before every
    checkpoint, so that an accelerator is not made to wait every step."""

    def __init__(self) -> None:
        self._loss_ok: torch.Tensor | None = None  # every training loss since fit start finite
        self._checked_step = 0  # the last step at which the host saw everything finite

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        on_cpu = False
        if isinstance(loss, torch.Tensor):
            finite = torch.isfinite(loss.detach()).all()
            self._loss_ok = finite if self._loss_ok is None else self._loss_ok & finite
            on_cpu = loss.device.type == "cpu"  # where looking costs nothing
        every = trainer.log_every_n_steps
        if on_cpu or (every and (batch_idx + 1) % every == 0):
            self._check(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check(trainer)
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if self._agreed(trainer, bool(bad)):
            self._fail(trainer, f"the weights {', '.join(bad[:3]) or 'of another rank'}")

    def _check(self, trainer: L.Trainer) -> None:
        """Raise if a training loss since the last check or a logged metric is not finite."""
        metrics = {
            name: value
            for name, value in trainer.callback_metrics.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
        }
        bad = [name for name, value in metrics.items() if not torch.isfinite(value).all()]
        if self._loss_ok is not None and not bool(self._loss_ok):
            bad.insert(0, "the training loss")
        if self._agreed(trainer, bool(bad)):
            self._fail(trainer, ", ".join(bad) or "a value on another rank")
        self._checked_step = trainer.global_step

    @staticmethod
    def _agreed(trainer: L.Trainer, bad: bool) -> bool:
        """Whether any rank saw a bad value (all ranks check at the same points)."""
        if trainer.world_size == 1:
            return bad
        flag = torch.tensor(int(bad), device=trainer.strategy.root_device)
        return bool(trainer.strategy.reduce(flag, reduce_op="max"))

    def _fail(self, trainer: L.Trainer, what: str) -> None:
        written = sorted(
            str(path)
            for callback in trainer.checkpoint_callbacks
            if callback.dirpath
            for path in Path(callback.dirpath).glob("*.ckpt")
        )
        kept = (
            f"{', '.join(written)} hold the last good state"
            if written
            else "no checkpoint had been written yet"
        )
        step = trainer.global_step
        when = (
            f"step {step}"
            if step - self._checked_step <= 1
            else f"steps {self._checked_step}-{step}"
        )
        raise NonFiniteError(
            f"{what} became NaN or infinite at epoch {trainer.current_epoch}, {when}: the fit "
            f"diverged and was stopped; "
            f"{kept}. A lower learning rate (--model.lr), gradient clipping "
            "(--trainer.gradient_clip_val) or another optimizer usually helps."
        )
