"""SIGTERM (a scheduler's preemption) and SIGINT (Ctrl+C) during fit: recorded instead of
killing the process, so the fit can stop at the next training batch boundary with its state
saved, and exit with the status a shell reports for that signal."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import lightning as L
import torch

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class FitInterrupted(SystemExit):
    """Ends a fit that a signal stopped after its state was saved. The exit status is 128 plus
    the signal's number, as for a process the signal killed: 143 for SIGTERM, 130 for SIGINT,
    so a scheduler or ``fit && test`` sees that the fit did not finish."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class SignalTrap:
    """Replaces the handlers of SIGTERM and SIGINT (Lightning's own SIGTERM handler included,
    which would end the fit with status 0) by one that records the signal. A second SIGINT
    interrupts at once, for a user who does not want to wait for the batch to finish."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    def install(self, trainer: L.Trainer) -> None:
        """Take over the signals (from the main thread only, as Python requires); idempotent."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self.received, self._trainer = None, trainer
        self._previous = {signum: signal.signal(signum, self._record) for signum in SIGNALS}

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        self._trainer = None

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None and signum == signal.SIGTERM and self._trainer is not None:
            # Processes Lightning launched itself (DDP on one machine) learn of it from here.
            launcher = self._trainer.strategy.launcher
            if launcher is not None:
                launcher.kill(signum)
        self.received = signum

    def agreed(self, trainer: L.Trainer) -> int | None:
        """The signal any rank received (all ranks must call this at the same point, so that
        they stop after the same batch), or None."""
        signum = self.received or 0
        if trainer.world_size > 1:
            flag = torch.tensor(signum, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(flag, reduce_op="max"))
        return signum or None
