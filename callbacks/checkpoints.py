"""Checkpoint files a run can trust: `last.ckpt` is always the latest completed state, and
every checkpoint file is replaced in one rename, so a kill never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from registry import ConfigurationError


class LatestCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` after every training epoch, whatever the monitored metric did.

    Lightning's own ``save_last`` (since 2.6) rewrites last.ckpt only when a top-k checkpoint
    is written in the same step, so with a monitor it lags behind the run whenever the metric
    does not improve. This callback has no monitor and keeps exactly one file. It must come
    after the best-checkpoint callback in the trainer's list, so the file holds that
    callback's updated state too."""

    def __init__(self) -> None:
        super().__init__(
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,
        )


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
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                torch.save(checkpoint, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from others
            os.replace(tmp_name, target)
        except OSError as err:  # a full disk says nothing of where: name the checkpoint
            raise OSError(err.errno, err.strerror or str(err), str(target)) from err
        finally:
            Path(tmp_name).unlink(missing_ok=True)


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
