"""Datasets held in memory as tensors and batched by index: one index_select per tensor and
batch, no per-sample Python work. DataLoader samplers still choose the indices, so Lightning's
DistributedSampler gives each DDP rank a disjoint shard; a batch sampler hands each batch's
indices over as one tensor.

Training order is resumable: the shuffle is a function of (run seed, epoch) and a checkpoint
records how many batches of the epoch were handed out, so a fit resumed mid-epoch continues
with the next batch the uninterrupted fit would have drawn."""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from typing import Any

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from datamodules.seeding import run_seed
from registry import ConfigurationError


class TensorBatches(Dataset):
    """Equal-length tensors fetched a whole batch at a time through ``__getitems__``."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatches needs one or more tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        # index_select, not t[index]: on CPU, advanced indexing of a uint8 image tensor by a
        # batch of 256 indices takes ~450 us here against ~20 us for index_select.
        index = torch.as_tensor(indices)
        return tuple(t.index_select(0, index) for t in self.tensors)


class EpochShuffle(RandomSampler):
    """A random order that is a function of (seed, epoch) alone: the permutation a one-replica
    DistributedSampler draws. Lightning calls ``set_epoch`` at every epoch start, and under DDP
    replaces this sampler by a DistributedSampler seeded the same way (from the run seed), so
    shuffling has no state to checkpoint. A RandomSampler, so Lightning knows it shuffles."""

    def __init__(self, data_source: Sized, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


class TensorIndexBatches(BatchSampler):
    """A batch sampler that yields each batch of indices as one tensor sliced from the epoch's
    order (not a list built one Python int at a time), and that a checkpoint can stop and
    resume mid-epoch.

    An epoch's batches are a function of its sampler's order alone (an EpochShuffle or a
    DistributedSampler, whose ``epoch`` Lightning sets), so the state is just (epoch, batches
    handed out); after ``load_state_dict`` the next pass over the same epoch skips those.
    Subclasses change how an epoch's order is cut into batches by
    overriding ``epoch_batches`` (and ``__len__``), e.g. to group sequences of similar length;
    they keep ``BatchSampler``'s ``(sampler, batch_size, drop_last)`` arguments, with which
    Lightning rebuilds them around a DistributedSampler under DDP."""

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self._epoch: int | None = None  # of the pass in progress (None: the sampler has no epoch)
        self._handed_out = 0  # batches of that pass given to the loader so far
        self._resume_from: tuple[int | None, int] | None = None  # (epoch, batches) to skip

    def epoch_batches(self, order: torch.Tensor) -> list[torch.Tensor]:
        """The epoch's batches, in order, from the sampler's index order."""
        batches = list(order.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        epoch = getattr(self.sampler, "epoch", None)
        batches = self.epoch_batches(torch.as_tensor(list(self.sampler), dtype=torch.long))
        start = 0
        if self._resume_from is not None:
            saved_epoch, handed_out = self._resume_from
            self._resume_from = None
            # A sampler without epochs cannot tell a finished pass from the next one.
            if saved_epoch == epoch and (epoch is not None or handed_out < len(batches)):
                start = handed_out
        self._epoch, self._handed_out = epoch, start
        for i in range(start, len(batches)):
            self._handed_out = i + 1
            yield batches[i]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_from = (state["epoch"], state["batches"])


class ResumableLoader(DataLoader):
    """A DataLoader whose position Lightning saves in checkpoints and restores on resume (it has
    ``state_dict`` and ``load_state_dict``): the position of its TensorIndexBatches."""

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)


def keep_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """collate_fn for TensorBatches: the batch is already stacked."""
    return batch


def random_split_indices(n: int, sizes: Sequence[int], seed: int) -> list[torch.Tensor]:
    """Disjoint index sets of the given sizes, fixed by `seed`."""
    if sum(sizes) > n:
        raise ConfigurationError(
            f"splits of sizes {list(sizes)} need {sum(sizes)} samples, only {n} exist"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.split(order[: sum(sizes)], list(sizes)))


class InMemoryDataModule(L.LightningDataModule):
    """Base for datamodules whose splits fit in memory: subclasses fill ``self.splits``."""

    def __init__(self, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.splits: dict[str, TensorBatches] = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.splits:
            raise RuntimeError(f"{type(self).__name__} has no {split!r} split; call setup() first")
        data = self.splits[split]
        if not shuffle:
            batches = self.batch_sampler(data, SequentialSampler(data))
            return DataLoader(data, batch_sampler=batches, collate_fn=keep_batch)
        batches = self.batch_sampler(data, EpochShuffle(data, run_seed()))
        return ResumableLoader(data, batch_sampler=batches, collate_fn=keep_batch)

    def batch_sampler(self, data: Dataset, sampler: Any) -> TensorIndexBatches:
        """How a split's `sampler` order is cut into batches; subclasses may group them
        differently (by length, say) with another TensorIndexBatches."""
        return TensorIndexBatches(sampler, self.batch_size, drop_last=False)

    def transfer_batch_to_device(
        self, batch: tuple[torch.Tensor, ...], device: torch.device, dataloader_idx: int
    ) -> tuple[torch.Tensor, ...]:
        """Batches (and models' example inputs) are flat tuples of tensors, named or not: moved
        directly, keeping their type, instead of through Lightning's generic collection walk,
        which costs more than a small model's step."""
        moved = [t.to(device, non_blocking=True) for t in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The `predict` split when a subclass provides one (e.g. user images), else test."""
        return self._loader("predict" if "predict" in self.splits else "test", shuffle=False)
