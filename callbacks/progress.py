"""A progress bar that shows what a person watches a fit for: the training loss and the metric
the checkpoints follow, besides anything the model puts on the bar itself."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class MetricsProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar plus the latest values of `keys` (e.g. ``train/loss`` and the
    monitored ``val/acc``), without the version number."""

    def __init__(self, keys: tuple[str, ...] = ("train/loss",), **kwargs: Any) -> None:
        """
        Args:
            keys: metrics to show whenever the model has logged them.
        """
        super().__init__(**kwargs)
        self.keys = keys

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        for key in self.keys:
            value = trainer.callback_metrics.get(key)
            if key not in metrics and value is not None and value.numel() == 1:
                metrics[key] = f"{float(value):.4g}"
        return metrics
