"""The modern CNNs of d2l chapter 8: GoogLeNet, ResNet, ResNeXt, DenseNet and RegNetX."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from lit_modules.base import check_positive
from lit_modules.cnn.base import CNN_ENTRY, CNNClassifier, Stage, build_stages, check_arch
from lit_modules.cnn.blocks import Residual, ResNeXtBlock, classifier_head, conv_bn_relu, stem
from registry import register_model

SMALL = {"small_input": True}
GROUP_WIDTH = "group_width (the channels of each group, d2l's meaning; `groups` counted groups)"


class Inception(nn.Module):
    """GoogLeNet's block (d2l 8.4): four parallel paths concatenated along channels."""

    def __init__(
        self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int
    ) -> None:
        super().__init__()
        relu = nn.ReLU(inplace=True)
        self.p1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1), relu)
        self.p2 = nn.Sequential(
            nn.Conv2d(in_channels, c2[0], 1), relu, nn.Conv2d(c2[0], c2[1], 3, padding=1), relu
        )
        self.p3 = nn.Sequential(
            nn.Conv2d(in_channels, c3[0], 1), relu, nn.Conv2d(c3[0], c3[1], 5, padding=2), relu
        )
        self.p4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(in_channels, c4, 1), relu)
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], dim=1)


# d2l's GoogLeNet stages b3, b4 and b5: (c1, c2, c3, c4) per Inception block.
GOOGLENET_STAGES = [
    [(64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)],
    [
        (192, (96, 208), (16, 48), 64),
        (160, (112, 224), (24, 64), 64),
        (128, (128, 256), (24, 64), 64),
        (112, (144, 288), (32, 64), 64),
        (256, (160, 320), (32, 128), 128),
    ],
    [(256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)],
]
InceptionSpec = tuple[int, tuple[int, int], tuple[int, int], int]


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def inception_stage(
    index: int, in_channels: int, row: list[InceptionSpec], width: float = 1.0
) -> Stage:
    """A GoogLeNet stage: its Inception blocks with every channel count times `width`; every
    stage after the first starts with the 3x3 stride-2 max-pool that closes d2l's b3 and b4."""
    layers: list[nn.Module] = [nn.MaxPool2d(3, 2, 1)] if index > 0 else []
    for c1, c2, c3, c4 in row:
        block = Inception(
            in_channels,
            scaled(c1, width),
            (scaled(c2[0], width), scaled(c2[1], width)),
            (scaled(c3[0], width), scaled(c3[1], width)),
            scaled(c4, width),
        )
        layers.append(block)
        in_channels = block.out_channels
    return Stage(*layers, out_channels=in_channels)


@register_model("googlenet", **CNN_ENTRY, test_kwargs={"width": 0.0625})
class GoogLeNet(CNNClassifier):
    """GoogLeNet (d2l 8.4): a stem, nine Inception blocks and global average pooling; 96 px input."""

    def __init__(
        self,
        width: float = 1.0,
        lr: float = 0.1,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            width: multiplier on every channel count (1 is d2l's network).
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        check_positive(width=width)
        c64, c192 = scaled(64, width), scaled(192, width)
        stem_layers = nn.Sequential(  # d2l's b1 and b2
            nn.Conv2d(in_channels, c64, 7, 2, 3), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(c64, c64, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c64, c192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        )  # fmt: skip
        stages = build_stages(GOOGLENET_STAGES, c192, partial(inception_stage, width=width))
        self.build(
            nn.Sequential(stem_layers, stages), classifier_head(stages.out_channels, num_classes)
        )


class ResidualNetwork(CNNClassifier):
    """A stem, stages of residual blocks and global average pooling (d2l's ResNet and AnyNet).
    Each stage is `depth` blocks of `width` channels, and its first block halves the resolution,
    except in a ResNet's first stage, whose input the stem's max-pool has just halved.
    Subclasses say which `block`, and call `build_network` at the end of `__init__`."""

    downsample_first_stage = False

    def block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        raise NotImplementedError

    def residual_stage(self, index: int, in_channels: int, row: list[int]) -> Stage:
        depth, width = row
        stride = 2 if index > 0 or self.downsample_first_stage else 1
        blocks = [self.block(in_channels, width, stride)]
        blocks += [self.block(width, width, 1) for _ in range(depth - 1)]
        return Stage(*blocks, out_channels=width)

    def build_network(self, stem: nn.Module, stem_channels: int, arch: list[list[int]]) -> None:
        stages = build_stages(arch, stem_channels, self.residual_stage)
        head = classifier_head(stages.out_channels, self.hparams.num_classes)
        self.build(nn.Sequential(stem, stages), head)


class ResNet(ResidualNetwork):
    """ResNet (d2l 8.6): a stem, stages of residual blocks, global average pooling."""

    default_arch: list[list[int]] = []

    def __init__(
        self,
        arch: list[list[int]] | None = None,
        small_input: bool = False,
        lr: float = 0.01,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            arch: [blocks, channels] per stage; None means the named network's. The stem has
                the first stage's channels.
            small_input: 3x3 stride-1 stem for 28 px images instead of d2l's 7x7 stride-2 stem and max-pool.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        arch = check_arch(self.default_arch if arch is None else arch)
        stem_channels = arch[0][1]
        self.build_network(
            stem(self.hparams.in_channels, stem_channels, small_input), stem_channels, arch
        )

    def block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        return Residual(in_channels, out_channels, stride)


@register_model("resnet18", **CNN_ENTRY, test_kwargs={"arch": [[1, 8], [1, 16]], **SMALL})
class ResNet18(ResNet):
    """ResNet-18 (d2l 8.6): stages of 2 residual blocks with 64, 128, 256 and 512 channels."""

    default_arch = [[2, 64], [2, 128], [2, 256], [2, 512]]


@register_model("resnet34", **CNN_ENTRY, test_kwargs={"arch": [[2, 8], [1, 16]]})
class ResNet34(ResNet):
    """ResNet-34: stages of 3, 4, 6 and 3 residual blocks with 64 to 512 channels."""

    default_arch = [[3, 64], [4, 128], [6, 256], [3, 512]]


@register_model(
    "resnext", **CNN_ENTRY, test_kwargs={"arch": [[1, 16], [1, 32]], "group_width": 4, **SMALL}
)
class ResNeXt(ResNet):
    """A trainable ResNeXt: ResNet-18's stages built from d2l 8.6.4's grouped-convolution bottleneck blocks."""

    default_arch = [[2, 64], [2, 128], [2, 256], [2, 512]]
    retired_hyperparameters = {"groups": GROUP_WIDTH}

    def __init__(
        self,
        group_width: int = 16,
        bottleneck: float = 0.5,
        lr: float = 0.05,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            group_width: channels per group of the grouped 3x3 convolution (d2l's `groups`
                argument: 16 in its examples); must divide every bottleneck width.
            bottleneck: bottleneck width as a fraction of the stage's channels (d2l's `bot_mul`).
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)  # ResNet builds the stages; `block` reads hparams

    def block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        hp = self.hparams
        return ResNeXtBlock(in_channels, out_channels, hp.group_width, hp.bottleneck, stride)


class DenseBlock(nn.Module):
    """d2l 8.7: each BN-ReLU-conv layer sees the concatenation of all earlier outputs."""

    def __init__(self, num_convs: int, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(in_channels + i * growth_rate),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels + i * growth_rate, growth_rate, 3, padding=1),
            )
            for i in range(num_convs)
        )
        self.out_channels = in_channels + num_convs * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


def dense_stage(index: int, in_channels: int, row: list[int]) -> Stage:
    """A DenseNet stage: after the first, d2l's transition block (BN, ReLU, a 1x1 convolution
    to half the channels, 2x2 average pooling), then a dense block."""
    num_convs, growth_rate = row
    layers: list[nn.Module] = []
    if index > 0:
        layers += [
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, in_channels // 2, 1),
            nn.AvgPool2d(2, 2),
        ]
        in_channels //= 2
    dense = DenseBlock(num_convs, in_channels, growth_rate)
    return Stage(*layers, dense, out_channels=dense.out_channels)


@register_model(
    "densenet",
    **CNN_ENTRY,
    test_kwargs={"arch": [[2, 4], [2, 4]], "stem_channels": 8, **SMALL},
)
class DenseNet(CNNClassifier):
    """DenseNet (d2l 8.7): dense blocks joined by transition layers that halve channels and size."""

    retired_hyperparameters = {"blocks": "arch", "growth_rate": "arch"}

    def __init__(
        self,
        arch: list[list[int]] | None = None,
        stem_channels: int = 64,
        small_input: bool = False,
        lr: float = 0.1,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            arch: [convolutions, growth rate] per dense block; None means d2l's four blocks of
                4 convolutions that add 32 channels each.
            stem_channels: channels of the stem.
            small_input: 3x3 stride-1 stem for 28 px images instead of the 7x7 stride-2 stem.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        check_positive(stem_channels=stem_channels)
        arch = check_arch([[4, 32]] * 4 if arch is None else arch)
        stages = build_stages(arch, stem_channels, dense_stage)
        channels = stages.out_channels
        features = nn.Sequential(
            stem(in_channels, stem_channels, small_input),
            stages,
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.build(features, classifier_head(channels, num_classes))


@register_model(
    "regnetx32",
    **CNN_ENTRY,
    test_kwargs={"arch": [[1, 8], [1, 16]], "group_width": 4, "stem_channels": 8},
)
class RegNetX32(ResidualNetwork):
    """RegNetX-32 (d2l 8.8's AnyNet design space): a stride-2 stem, then stages of grouped
    bottleneck blocks, each stage starting with a stride-2 block."""

    downsample_first_stage = True
    retired_hyperparameters = {"groups": GROUP_WIDTH, "depths": "arch", "channels": "arch"}

    def __init__(
        self,
        arch: list[list[int]] | None = None,
        group_width: int = 16,
        bottleneck: float = 1.0,
        stem_channels: int = 32,
        lr: float = 0.05,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            arch: [blocks, channels] per stage; None means d2l's [[4, 32], [6, 80]].
            group_width: channels per group of each grouped 3x3 convolution (d2l: 16).
            bottleneck: bottleneck width as a fraction of the stage's channels (d2l: 1).
            stem_channels: channels of the stem (d2l: 32).
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        check_positive(stem_channels=stem_channels)
        arch = check_arch([[4, 32], [6, 80]] if arch is None else arch)
        stem_layers = conv_bn_relu(self.hparams.in_channels, stem_channels, 3, 2, 1)
        self.build_network(stem_layers, stem_channels, arch)

    def block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        hp = self.hparams
        return ResNeXtBlock(in_channels, out_channels, hp.group_width, hp.bottleneck, stride)
