"""Checkpoint files a run can trust: `last.ckpt` is always the latest state (every epoch, every
N training steps if asked, and when SIGTERM or SIGINT stops the fit), and every checkpoint file
is replaced in one rename, so a kill never leaves half a file."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from callbacks.interrupts import FitInterrupted, SignalTrap
from datamodules.download import atomic_file
from registry import ConfigurationError


class LatestCheckpoint(ModelCheckpoint):
    """Keeps ``last.ckpt`` at the latest state of the fit: after every training epoch whatever
    the monitored metric did, every `every_n_train_steps` optimizer steps if set, and when
    SIGTERM or SIGINT arrives. A signal stops the fit at the end of the training batch in
    progress, once its state is saved, and the process exits with status 143 (SIGTERM) or 130
    (SIGINT); ``--ckpt_path last`` resumes it.

    Lightning's own ``save_last`` (since 2.6) rewrites last.ckpt only when a top-k checkpoint
    is written in the same step, so with a monitor it lags behind the run whenever the metric
    does not improve. This callback has no monitor and keeps exactly one file. It must come
    after the best-checkpoint callback in the trainer's list, so the file holds that
    callback's updated state too."""

    def __init__(self, every_n_train_steps: int | None = None) -> None:
        """
        Args:
            every_n_train_steps: also save last.ckpt every this many optimizer steps, in the
                middle of epochs (a resumed fit continues mid-epoch exactly); None saves it
                after every epoch only.
        """
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ConfigurationError(
                f"every_n_train_steps must be >= 1 or None (epochs only), got {every_n_train_steps}"
            )
        super().__init__(
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,
        )
        self.every_n_steps = every_n_train_steps
        self._signals = SignalTrap()
        self._saved_step_block = 0  # global_step // every_n_steps at the last step save

    @property
    def path(self) -> Path:
        return Path(self.format_checkpoint_name({}))

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signals.install(trainer)  # after Lightning installed its own SIGTERM handler

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._signals.install(trainer)
        if self.every_n_steps:
            self._saved_step_block = trainer.global_step // self.every_n_steps

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        signum = self._signals.agreed(trainer)
        step_block = trainer.global_step // self.every_n_steps if self.every_n_steps else 0
        if signum or step_block > self._saved_step_block:
            # Not through ModelCheckpoint's bookkeeping, which would skip the end-of-epoch
            # save of the same step (a different state: validation and epoch end follow).
            trainer.save_checkpoint(self.path, weights_only=False)
            self._saved_step_block = step_block
        if signum:
            self._stop(trainer, signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        signum = self._signals.agreed(trainer)
        self._signals.restore()
        if signum:  # arrived after the last batch: the final state is saved already
            self._stop(trainer, signum)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._signals.restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._signals.restore()

    def _stop(self, trainer: L.Trainer, signum: int) -> None:
        if trainer.is_global_zero:
            print(
                f"litzoo: {signal.Signals(signum).name} received: the fit stopped at epoch {trainer.current_epoch}, "
                f"step {trainer.global_step}, with its state saved in {self.path}. Resume it "
                f"with --ckpt_path last (or --ckpt_path {self.path}).",
                file=sys.stderr,
                flush=True,
            )
        raise FitInterrupted(signum)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each local checkpoint to a temporary file in the target's own directory and
    renames it into place. Lightning's default stages the bytes in the system temp directory
    and moves them, which is a copy, not a rename, when that is another filesystem (a node's
    /tmp against a shared runs/ directory), so a kill could leave a truncated file."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local_file_protocol(str(path)):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        try:
            with atomic_file(target, suffix=".tmp") as out:
                torch.save(checkpoint, out)
        except OSError as err:  # a full disk says nothing of where: name the checkpoint
            raise OSError(err.errno, err.strerror or str(err), str(target)) from err


def read_checkpoint_record(path: Path) -> dict[str, dict[str, Any]]:
    """A checkpoint's model and datamodule hyperparameters (with LightningCLI's
    `_class_path`), memory-mapped so its weights are not read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise ConfigurationError(f"{path} is not a readable Lightning checkpoint: {err}") from err
    return {k: checkpoint.get(k) or {} for k in ("hyper_parameters", "datamodule_hyper_parameters")}


def newest_checkpoint(run_dirs: Path, which: str, data: str | None = None) -> Path | None:
    """The newest ``<which>.ckpt`` (last or best) of the runs under `run_dirs`
    (``runs/<model>``), among those trained on the datamodule class `data` if given."""
    found = sorted(
        [
            *run_dirs.glob(f"version_*/checkpoints/{which}.ckpt"),
            *run_dirs.glob(f"checkpoints/{which}.ckpt"),
        ],
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in found:
        if data in (
            None,
            read_checkpoint_record(path)["datamodule_hyper_parameters"].get("_class_path"),
        ):
            return path
    return None
