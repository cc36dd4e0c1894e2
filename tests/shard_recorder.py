"""A callback for test_ddp.py: each rank saves the training inputs it saw and its final
weights to its own file."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class ShardRecorder(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.seen: list[torch.Tensor] = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        self.seen.append(batch[0].detach().cpu())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "world_size": trainer.world_size,
                "node_rank": trainer.node_rank,
                "inputs": torch.cat(self.seen),
                "weights": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )
