"""Seeds derived from the run's seed and from where a draw happens (epoch, batch, rank), not
from what was drawn before. A fit resumed from a checkpoint then draws exactly what the
uninterrupted fit drew, with no generator state to save, and every DDP rank draws its own."""

from __future__ import annotations

import os
import zlib

import numpy as np

SEED_ENV = "PL_GLOBAL_SEED"  # set by Lightning's seed_everything (LightningCLI's --seed_everything)


def run_seed() -> int:
    """The seed `seed_everything` set for this run, as Lightning's DistributedSampler reads it;
    0 when none was set."""
    return int(os.environ.get(SEED_ENV, 0))


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed that mixes `keys` (non-negative integers and names) through NumPy's
    SeedSequence, so that neighbouring keys (epoch 3 and 4, rank 0 and 1) give unrelated streams."""
    entropy = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
