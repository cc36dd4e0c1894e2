"""Pictures of a generative image model: a grid of samples and one Langevin chain's snapshots
every few epochs while it trains, and the samples `predict` generates as a PNG grid and a
.npy array. The model provides ``generate(num_samples, steps, seed, snapshot_every)``
(returning samples and snapshots) and ``hparams.value_range`` and ``hparams.sample_steps``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from callbacks.plotting import pyplot
from registry import ConfigurationError


def to_unit_interval(images: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """Images in `value_range` mapped linearly to [0, 1] (clamped), on the CPU as float32."""
    low, high = value_range
    return ((images.detach().float().cpu() - low) / (high - low)).clamp_(0.0, 1.0)


def save_image_grid(
    images: torch.Tensor, path: Path, ncols: int | None = None, scale: int = 2, gap: int = 2
) -> Path:
    """Write (N, C, H, W) images in [0, 1] as one PNG: a near-square grid (or `ncols` wide),
    each image enlarged `scale` times, separated by `gap` grey pixels."""
    from PIL import Image  # Pillow comes with matplotlib

    n, channels, height, width = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    cell_h, cell_w = height * scale + gap, width * scale + gap
    canvas = np.full((nrows * cell_h + gap, ncols * cell_w + gap, channels), 128, np.uint8)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, image in enumerate(pixels):
        row, col = divmod(i, ncols)
        enlarged = image.repeat(scale, axis=0).repeat(scale, axis=1)
        top, left = gap + row * cell_h, gap + col * cell_w
        canvas[top : top + height * scale, left : left + width * scale] = enlarged
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas[..., 0] if channels == 1 else canvas).save(path)
    return path


def save_chain(snapshots: Sequence[torch.Tensor], steps: Sequence[int], path: Path) -> Path:
    """One chain's snapshots ((C, H, W) images in [0, 1]) in a row, each titled by its step:
    Generative Deep Learning's figure 7-8."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(snapshots), figsize=(1.3 * len(snapshots), 1.6), squeeze=False)
    for ax, image, step in zip(axes[0], snapshots, steps, strict=True):
        ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"step {step}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _run_dir(trainer: L.Trainer) -> Path:
    return Path(trainer.log_dir or trainer.default_root_dir)


class LangevinPictures(L.Callback):
    """Every `every_n_epochs` training epochs, writes ``samples/epoch_<E>.png`` (a grid of
    `num_samples` samples generated from uniform noise by Langevin dynamics) and
    ``chains/epoch_<E>.png`` (the first chain at `snapshots` evenly spaced steps) to the run
    directory. The starting noise is the same every time (`seed`), so the pictures show what
    training changed."""

    def __init__(
        self,
        every_n_epochs: int = 5,
        num_samples: int = 64,
        steps: int | None = None,
        snapshots: int = 9,
        seed: int = 0,
    ) -> None:
        """
        Args:
            every_n_epochs: epochs between pictures.
            num_samples: samples in the grid.
            steps: Langevin steps from noise to sample; None takes the model's `sample_steps`.
            snapshots: pictures of the first chain, from its noise to its last step (>= 2).
            seed: draws the starting noise and the Langevin noise.
        """
        if min(every_n_epochs, num_samples, 1 if steps is None else steps) < 1 or snapshots < 2:
            raise ConfigurationError(
                "every_n_epochs, num_samples and steps must be >= 1 and snapshots >= 2, got "
                f"{every_n_epochs}, {num_samples}, {steps} and {snapshots}"
            )
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.steps = steps
        self.snapshots = snapshots
        self.seed = seed

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        steps = self.steps or pl_module.hparams.sample_steps
        snapshot_every = max(1, steps // (self.snapshots - 1))
        samples, chain = pl_module.generate(self.num_samples, steps, self.seed, snapshot_every)
        value_range = pl_module.hparams.value_range
        run_dir = _run_dir(trainer)
        grid = save_image_grid(
            to_unit_interval(samples, value_range), run_dir / "samples" / f"epoch_{epoch}.png"
        )
        first_chain = [to_unit_interval(snapshot[0], value_range) for snapshot in chain]
        taken = [i * snapshot_every for i in range(len(chain) - 1)] + [steps]
        save_chain(first_chain, taken, run_dir / "chains" / f"epoch_{epoch}.png")
        rank_zero_info(f"epoch {epoch}: wrote {grid} and its chain")


class SampleWriter(BasePredictionWriter):
    """Collects the images `predict` returns (N x C x H x W in the model's value range) and
    writes them to the run directory as ``samples.png`` (a grid) and ``samples.npy``
    ((N, C, H, W) float32 in [0, 1])."""

    def __init__(self, filename: str = "samples") -> None:
        """
        Args:
            filename: stem of the .png and .npy files in the run directory.
        """
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        samples = to_unit_interval(torch.cat(predictions), pl_module.hparams.value_range)
        rank = f"_rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        stem = _run_dir(trainer) / f"{self.filename}{rank}"
        grid = save_image_grid(samples, stem.with_suffix(".png"))
        np.save(stem.with_suffix(".npy"), samples.numpy())
        rank_zero_info(f"wrote {len(samples)} samples to {grid} and {stem.with_suffix('.npy')}")
