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
    the first validation batch after it starts. SIGKILL kills at once; SIGTERM and SIGINT let
    the fit react."""

    def __init__(
        self,
        at_batch: int,
        signal_name: str = "SIGKILL",
        during: Literal["train", "validation"] = "train",
    ) -> None:
        self.at_batch = at_batch
        self.signum = signal.Signals[signal_name]
        self.during = during
        self.batches = 0
        self.sent = False

    def _send(self) -> None:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches == self.at_batch and self.during == "train":
            self._send()
        self.batches += 1

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if (
            self.batches > self.at_batch
            and self.during == "validation"
            and not trainer.sanity_checking
        ):
            self._send()


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
