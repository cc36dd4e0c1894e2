"""Draw a learning-curve PNG in the run directory when fit ends, from the metrics the callback
itself kept during the fit, so it is written whatever the logger (CSV, TensorBoard or none)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import lightning as L

History = dict[str, list[tuple[int, float]]]  # metric key -> (optimizer step, value)


def _panel_name(key: str) -> tuple[str, str]:
    """(panel, series) for a metric key: `val/loss` and `train/loss` share the panel `loss`."""
    stage, slash, name = key.partition("/")
    return (name, stage) if slash else (key, key)


def plot_learning_curve(history: History, out_png: Path) -> Path:
    """One panel per metric, every series against the optimizer step, training as a line and
    evaluations as dots joined by a line; a metric spanning decades gets a log axis with plain
    tick labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panels: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(dict)
    for key, points in sorted(history.items()):
        if points:
            panel, series = _panel_name(key)
            panels[panel][series] = points
    names = sorted(panels, key=lambda name: (name != "loss", name))
    columns = 1 if len(names) <= 2 else 2 if len(names) <= 6 else 3
    rows = math.ceil(len(names) / columns) or 1
    fig, axes = plt.subplots(
        rows, columns, figsize=(5.5 * columns, 2.6 * rows), sharex=True, squeeze=False
    )
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax, name in zip(axes.flat, names, strict=False):
        values = []
        for series, points in sorted(panels[name].items()):
            steps, ys = zip(*points, strict=True)
            values += [y for y in ys if math.isfinite(y)]
            dots = series.startswith("val") and len(points) < 200
            ax.plot(steps, ys, label=series, marker="o" if dots else "", markersize=3)
        if values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if len(panels[name]) > 1:
            ax.legend(fontsize="small")
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for column in axes.T:  # step labels under the lowest panel of each column
        shown = [ax for ax in column if ax.get_visible()]
        shown[-1].set_xlabel("optimizer step")
        shown[-1].xaxis.set_tick_params(labelbottom=True)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


class LearningCurvePlot(L.Callback):
    """Records the training metrics on the logger's cadence (every `log_every_n_steps`
    batches) and the validation metrics after each validation, and saves
    ``learning_curve.png`` in the trainer's log directory when fit ends."""

    def __init__(self, filename: str = "learning_curve.png") -> None:
        """
        Args:
            filename: the picture's name in the run directory.
        """
        self.filename = filename
        self.history: History = defaultdict(list)
        self._train_batches = 0

    def _record(self, trainer: L.Trainer, evaluation: bool) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("val", "test")) == evaluation and value.numel() == 1:
                self.history[key].append((trainer.global_step, float(value)))

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self._train_batches += 1
        every = trainer.log_every_n_steps
        if self._train_batches == 1 or (every and self._train_batches % every == 0):
            self._record(trainer, evaluation=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, evaluation=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if trainer.is_global_zero and any(self.history.values()):
            directory = Path(log_dir or trainer.default_root_dir)
            directory.mkdir(parents=True, exist_ok=True)
            plot_learning_curve(self.history, directory / self.filename)
