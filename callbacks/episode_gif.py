"""Report the episodes that `predict` runs and save rendered ones as animated GIFs, so a person
can watch a policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from registry import ConfigurationError


class EpisodeGif(L.Callback):
    """Prints each predicted episode's return and, when the environments render (for the gym
    datamodule ``--data.render true``; classic control needs pygame), writes its RGB frames to
    ``<dirpath>/episode_<batch>.gif``. Reads ``returns``, ``lengths`` and ``frames`` from the
    predict output."""

    def __init__(self, dirpath: str | None = None, fps: int = 25, every: int = 2) -> None:
        """
        Args:
            dirpath: folder for the GIFs; None means ``episodes/`` in the run's log directory.
            fps: frames per second of the GIF.
            every: keep every n-th frame (2 halves the file and plays CartPole in real time).
        """
        if fps < 1 or every < 1:
            raise ConfigurationError(f"fps and every must be >= 1, got {fps} and {every}")
        self.dirpath = dirpath
        self.fps = fps
        self.every = every

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        from PIL import Image  # Pillow comes with matplotlib

        returns, lengths = outputs["returns"].tolist(), outputs["lengths"].tolist()
        summary = f"episode {batch_idx}: return {returns[0]:.1f}, length {lengths[0]}"
        frames = outputs["frames"]
        if not frames:
            rank_zero_info(summary)
            return
        directory = Path(self.dirpath or Path(trainer.log_dir or ".") / "episodes")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"episode_{batch_idx}.gif"
        images = [Image.fromarray(frame) for frame in frames[:: self.every]]
        images[0].save(
            path, save_all=True, append_images=images[1:], duration=1000 / self.fps, loop=0
        )
        rank_zero_info(f"{summary}; wrote {path} ({len(images)} frames)")
