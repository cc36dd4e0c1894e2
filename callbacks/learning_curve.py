"""Write a learning-curve PNG beside the run's metrics CSV when fit ends."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger


def plot_metrics_csv(metrics_csv: Path, out_png: Path) -> Path:
    """Plot every `*/loss` curve against steps and every other val metric against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value and "/" in key:
                    x = row.get("epoch") if not key.startswith("train/") else row.get("step")
                    if x:
                        series[key].append((float(x), float(value)))
    losses = sorted(k for k in series if k.endswith("loss"))
    others = sorted(k for k in series if not k.endswith("loss"))
    fig, axes = plt.subplots(
        1, 2 if others else 1, figsize=(10 if others else 5, 3.5), squeeze=False
    )
    for key in losses:
        xs, ys = zip(*series[key], strict=True)
        axes[0][0].plot(xs, ys, label=key, marker="" if key.startswith("train/") else "o")
    # log scale only for positive losses (an energy-based model's loss is often negative)
    positive = all(y > 0 for key in losses for _, y in series[key])
    axes[0][0].set(
        title="loss", xlabel="step (train) / epoch (val)", yscale="log" if positive else "linear"
    )
    axes[0][0].legend()
    for key in others:
        xs, ys = zip(*series[key], strict=True)
        axes[0][1].plot(xs, ys, label=key, marker="o")
    if others:
        axes[0][1].set(title="metrics", xlabel="epoch")
        axes[0][1].legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


class LearningCurvePlot(L.Callback):
    """Saves ``learning_curve.png`` in the CSV logger's directory at the end of fit."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        if not trainer.is_global_zero or not isinstance(logger, CSVLogger):
            return
        logger.save()
        metrics_csv = Path(logger.log_dir) / "metrics.csv"
        if metrics_csv.is_file():
            plot_metrics_csv(metrics_csv, Path(logger.log_dir) / "learning_curve.png")
