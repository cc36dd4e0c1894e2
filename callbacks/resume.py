"""What a fit needs besides Lightning's checkpoint to continue, when resumed, exactly as if it
had never stopped: the same random draws, and the train loader's place in its epoch."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.seeding import derive_seed, run_seed


class ExactResume(L.Callback):
    """Makes a fit resumed from a checkpoint draw and see what the uninterrupted fit did.

    - Before every training batch, the global generators (torch's on the CPU and on the rank's
      device, NumPy's, Python's ``random``) are reseeded from (run seed, epoch, batch of the epoch, rank), so
      dropout, PPO's action sampling and anything else drawn from them in a training step
      depends only on the step's place in the fit, not on what ran before it.
    - The run seed goes into the checkpoint, and a resumed fit takes it back through
      ``seed_everything``: the samplers' per-epoch shuffles and the augmentation derive their
      seeds from it, whatever seed the resuming command drew.
    - Lightning 2.6 restores a resumable train loader's place in its epoch only when it builds
      the loader after the checkpoint's loop state is loaded, but a module whose
      ``configure_optimizers`` reads ``estimated_stepping_batches`` (a schedule over the whole
      fit) makes it build the loader earlier. The place is then handed over at train start,
      before the first batch is drawn.

    Randomness kept elsewhere (a model's own generator or replay buffer) is the model's to save
    in ``on_save_checkpoint``; a model that draws from the global generators in its training
    step needs nothing more."""

    def state_dict(self) -> dict[str, Any]:
        return {"seed": run_seed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != run_seed():
            rank_zero_info(f"Resuming a fit seeded with {state['seed']}: the run takes that seed.")
            L.seed_everything(state["seed"], workers=True, verbose=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.fit_loop._load_combined_loader_states()  # no-op unless Lightning skipped it

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        seed = derive_seed(
            run_seed(), "step", trainer.current_epoch, batch_idx, trainer.global_rank
        )
        # The CPU's and this rank's device's generators: torch.manual_seed would visit every
        # device type, which costs ~0.4 ms a step.
        torch.default_generator.manual_seed(seed)
        device = trainer.strategy.root_device
        if device.type != "cpu":
            torch.get_device_module(device).manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
