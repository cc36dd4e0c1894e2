"""Print generated token ids as text and keep them in the run directory, so `cli.py predict`
with a language model shows its samples instead of discarding the predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class GeneratedTextWriter(BasePredictionWriter):
    """Decodes each predicted row of token ids with the datamodule's ``decode``, prints it and
    appends it to ``<run dir>/<filename>``."""

    def __init__(self, filename: str = "generated.txt") -> None:
        """
        Args:
            filename: file in the run directory (the logger's) that collects the samples.
        """
        super().__init__(write_interval="batch")
        self.filename = filename

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: torch.Tensor,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        decode = getattr(trainer.datamodule, "decode", None)
        if decode is None:
            raise TypeError(
                f"{type(trainer.datamodule).__name__} has no decode(ids); generated text needs "
                "a text datamodule such as time_machine"
            )
        texts = [decode(row) for row in prediction.tolist()]
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        run_dir = Path(log_dir or ".")
        run_dir.mkdir(parents=True, exist_ok=True)
        show = trainer.progress_bar_callback.print if trainer.progress_bar_callback else print
        with open(run_dir / self.filename, "a", encoding="utf-8") as f:
            for text in texts:
                show(text)  # through the progress bar, if any, so the two do not interleave
                f.write(text + "\n")
