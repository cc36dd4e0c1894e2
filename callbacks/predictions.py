"""Write a classifier's `predict` output to a CSV: predicted class name and the probability of
every class, one row per input."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class ClassPredictionWriter(BasePredictionWriter):
    """Saves ``predictions.csv`` in the run directory when predict returns class probabilities
    (N x classes tensors) and the datamodule names its classes; other outputs are left alone."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        class_names = getattr(trainer.datamodule, "class_names", None)
        if (
            not class_names
            or not predictions
            or not all(
                isinstance(p, torch.Tensor) and p.ndim == 2 and p.shape[1] == len(class_names)
                for p in predictions
            )
        ):
            return
        probabilities = torch.cat(predictions).float().cpu()
        out_dir = Path(trainer.logger.log_dir if trainer.logger else trainer.default_root_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rank = f"_rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        path = out_dir / f"predictions{rank}.csv"
        predicted = probabilities.argmax(dim=1).tolist()
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "predicted", *(f"p_{name}" for name in class_names)])
            for i, (label, row) in enumerate(zip(predicted, probabilities.tolist(), strict=True)):
                writer.writerow([i, class_names[label], *(f"{p:.6f}" for p in row)])
        print(f"wrote {len(probabilities)} predictions to {path}")
