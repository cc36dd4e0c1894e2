"""Write `predict`'s tensor output to a CSV, one row per input, indexed by the input's position
in the predicted set: a classifier's predicted class name and every class probability, any
other model's output columns."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info


class PredictionWriter(BasePredictionWriter):
    """Saves ``predictions.csv`` (``predictions_rank<N>.csv`` per DDP rank) in the run
    directory when predict returns tensors with one row per input. When the datamodule names
    its classes and the rows are that long, they are read as class probabilities (columns
    `predicted`, `p_<class>`); otherwise the columns are `output_<i>`. Other outputs (generated
    text, episodes) are left to the callbacks that handle them."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        if not predictions or not all(
            isinstance(p, torch.Tensor) and p.ndim in (1, 2) for p in predictions
        ):
            return
        outputs = torch.cat([p.reshape(len(p), -1) for p in predictions]).float().cpu()
        # The input's position in the predicted set (global under DDP, where each rank
        # predicts a shard), not the row's position in this rank's output.
        indices = [int(i) for batch in batch_indices[0] for i in batch] if batch_indices else []
        if len(indices) != len(outputs):
            indices = list(range(len(outputs)))
        out_dir = Path(trainer.log_dir or trainer.default_root_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rank = f"_rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        path = out_dir / f"predictions{rank}.csv"
        class_names = getattr(trainer.datamodule, "class_names", None) or ()
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            if class_names and outputs.shape[1] == len(class_names):
                writer.writerow(["index", "predicted", *(f"p_{name}" for name in class_names)])
                for i, row in zip(indices, outputs.tolist(), strict=True):
                    label = class_names[max(range(len(row)), key=row.__getitem__)]
                    writer.writerow([i, label, *(f"{p:.6f}" for p in row)])
            else:
                writer.writerow(["index", *(f"output_{j}" for j in range(outputs.shape[1]))])
                for i, row in zip(indices, outputs.tolist(), strict=True):
                    writer.writerow([i, *(f"{v:.6g}" for v in row)])
        rank_zero_info(f"wrote {len(outputs)} predictions to {path}")
