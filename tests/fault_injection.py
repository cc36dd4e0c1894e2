"""Callbacks that tests pass to a fit (``--trainer.callbacks+=fault_injection.X``) to hurt it
at a chosen moment, as a preempted node or a diverging run would."""

from __future__ import annotations

import os
import signal
from typing import Literal

import lightning as L
import torch


class SignalAt(L.Callback):
    """Sends `signal_name` to this process when the fit's `at_batch`-th training batch (counted
    from 0 over the whole fit, this process only) starts, or, with during="validation", when
    the first validation batch after it starts; with `only_rank`, in that DDP rank only.
    SIGKILL kills at once; SIGTERM and SIGINT let the fit react."""

    def __init__(
        self,
        at_batch: int,
        signal_name: str = "SIGKILL",
        during: Literal["train", "validation"] = "train",
        only_rank: int | None = None,
    ) -> None:
        self.at_batch = at_batch
        self.signum = signal.Signals[signal_name]
        self.during = during
        self.only_rank = only_rank
        self.batches = 0
        self.sent = False

    def _send(self, trainer) -> None:
        if not self.sent and self.only_rank in (None, trainer.global_rank):
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches == self.at_batch and self.during == "train":
            self._send(trainer)
        self.batches += 1

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if (
            self.batches > self.at_batch
            and self.during == "validation"
            and not trainer.sanity_checking
        ):
            self._send(trainer)


class PoisonWeightsAt(L.Callback):
    """Sets the model's first parameter to NaN when the `at_batch`-th training batch starts."""

    def __init__(self, at_batch: int) -> None:
        self.at_batch = at_batch
        self.batches = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches == self.at_batch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
        self.batches += 1
