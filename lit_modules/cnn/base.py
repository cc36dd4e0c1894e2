"""What every CNN of the family shares: the registry entry, the classifier base, and the one
way a staged network is written down and built (`arch`, one [depth, width] row per stage)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from lit_modules.base import ClassifierModule, ConfigurationError, check_positive
from lit_modules.cnn.blocks import init_cnn

CNN_ENTRY = {"family": "cnn", "data": "fashion_mnist", "monitor": "val/acc", "mode": "max"}


class CNNClassifier(ClassifierModule):
    """Image classifier whose `features` feed a `head`; weights initialized as d2l's init_cnn.

    A subclass builds its layers in `__init__` after `super().__init__(...)` and hands them to
    `build`; `self.hparams` then holds every hyperparameter, its own included."""

    # Hyperparameters that an earlier version of the model had, with what replaced them: a
    # checkpoint that still holds one was trained with an architecture this version does not
    # build, and loading it should say so rather than fail on an unknown argument.
    retired_hyperparameters: dict[str, str] = {}

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            in_channels: image channels (linked from the data).
            num_classes: classes (linked from the data).
            channels_last: keep convolution weights and activations in NHWC layout, which
                oneDNN's CPU convolutions run faster (ResNet-18 at 28 px: ~1.15x, bench/flops.py).
        """
        retired = [key for key in kwargs if key in self.retired_hyperparameters]
        if retired:
            raise ConfigurationError(
                f"hyperparameter {', '.join(retired)} belongs to an earlier version of this "
                f"model, replaced by {'; '.join(self.retired_hyperparameters[k] for k in retired)}"
                ". A checkpoint that has it holds that version's weights, which this version "
                "cannot load: train the model again."
            )
        super().__init__(num_classes=num_classes, **kwargs)
        check_positive(in_channels=in_channels)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def build(self, features: nn.Module, head: nn.Module) -> None:
        self.net = nn.Sequential(features, head)
        init_cnn(self.net)
        self.net.to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))


class Stage(nn.Sequential):
    """One stage's layers, and the channels they output (what the next stage takes in)."""

    def __init__(self, *layers: nn.Module, out_channels: int) -> None:
        super().__init__(*layers)
        self.out_channels = out_channels


def check_arch(arch: list[list[int]]) -> list[list[int]]:
    """`arch` itself if every row is a [depth, width] pair of positive integers."""
    if not arch or any(len(row) != 2 or min(row) < 1 for row in arch):
        raise ConfigurationError(
            f"arch must be a non-empty list of [depth, width] rows of positive integers, one per "
            f"stage (e.g. [[2, 64], [2, 128]]); got {arch}"
        )
    return arch


Row = TypeVar("Row")


def build_stages(
    arch: Sequence[Row], in_channels: int, make_stage: Callable[[int, int, Row], Stage]
) -> Stage:
    """Chain the stages of `arch`: `make_stage(index, in_channels, row)` builds stage `index`
    from its row on the channels the stage before it outputs (`in_channels` for the first).

    Every CNN with an `arch` hyperparameter writes it as d2l does, one [depth, width] row per
    stage (VGG: convolutions and channels; ResNet, ResNeXt, RegNetX: blocks and channels;
    DenseNet: convolutions and growth rate); GoogLeNet's rows are its stages' Inception blocks."""
    stages: list[Stage] = []
    for index, row in enumerate(arch):
        stages.append(make_stage(index, in_channels, row))
        in_channels = stages[-1].out_channels
    return Stage(*stages, out_channels=in_channels)
