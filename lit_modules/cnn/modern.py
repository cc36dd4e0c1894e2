"""The modern CNNs of d2l chapter 8: GoogLeNet, ResNet, ResNeXt, DenseNet and RegNetX."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lit_modules.base import HyperparameterError, check_positive
from lit_modules.cnn.blocks import Residual, ResNeXtBlock, classifier_head, conv_bn_relu, stem
from lit_modules.cnn.classic import CNN_ENTRY, CNNClassifier
from registry import register_model

SMALL = {"small_input": True}


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


# d2l's GoogLeNet stages 3 to 5: (c1, c2, c3, c4) per Inception block; "pool" closes a stage.
GOOGLENET_INCEPTIONS = [
    (64, (96, 128), (16, 32), 32),
    (128, (128, 192), (32, 96), 64),
    "pool",
    (192, (96, 208), (16, 48), 64),
    (160, (112, 224), (24, 64), 64),
    (128, (128, 256), (24, 64), 64),
    (112, (144, 288), (32, 64), 64),
    (256, (160, 320), (32, 128), 128),
    "pool",
    (256, (160, 320), (32, 128), 128),
    (384, (192, 384), (48, 128), 128),
]


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

        def scaled(channels: int) -> int:
            return max(1, round(channels * width))

        relu, pool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, scaled(64), 7, 2, 3),
            relu,
            pool,
            nn.Conv2d(scaled(64), scaled(64), 1),
            relu,
            nn.Conv2d(scaled(64), scaled(192), 3, padding=1),
            relu,
            pool,
        ]
        channels = scaled(192)
        for spec in GOOGLENET_INCEPTIONS:
            if spec == "pool":
                layers.append(pool)
                continue
            c1, c2, c3, c4 = spec
            block = Inception(
                channels,
                scaled(c1),
                (scaled(c2[0]), scaled(c2[1])),
                (scaled(c3[0]), scaled(c3[1])),
                scaled(c4),
            )
            layers.append(block)
            channels = block.out_channels
        self.build(nn.Sequential(*layers), classifier_head(channels, num_classes))


def residual_stages(
    arch: list[list[int]], in_channels: int, make_block: Callable[[int, int, int], nn.Module]
) -> tuple[nn.Sequential, int]:
    """Stages of (number of blocks, channels); every stage after the first starts with a
    stride-2 block, as d2l's ResNet does. Returns the stages and their output channels."""
    blocks: list[nn.Module] = []
    for stage, (num_blocks, channels) in enumerate(arch):
        for i in range(num_blocks):
            stride = 2 if i == 0 and stage > 0 else 1
            blocks.append(make_block(in_channels, channels, stride))
            in_channels = channels
    return nn.Sequential(*blocks), in_channels


class ResNet(CNNClassifier):
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
            arch: (residual blocks, channels) per stage; None means the named network's.
            small_input: 3x3 stride-1 stem for 28 px images instead of d2l's 7x7 stride-2 stem and max-pool.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        arch = arch or self.default_arch
        stem_channels = arch[0][1]
        stages, channels = residual_stages(arch, stem_channels, Residual)
        self.build(
            nn.Sequential(stem(in_channels, stem_channels, small_input), stages),
            classifier_head(channels, num_classes),
        )


@register_model("resnet18", **CNN_ENTRY, test_kwargs={"arch": [[1, 8], [1, 16]], **SMALL})
class ResNet18(ResNet):
    """ResNet-18 (d2l 8.6): stages of 2 residual blocks with 64, 128, 256 and 512 channels."""

    default_arch = [[2, 64], [2, 128], [2, 256], [2, 512]]


@register_model("resnet34", **CNN_ENTRY, test_kwargs={"arch": [[2, 8], [1, 16]]})
class ResNet34(ResNet):
    """ResNet-34: stages of 3, 4, 6 and 3 residual blocks with 64 to 512 channels."""

    default_arch = [[3, 64], [4, 128], [6, 256], [3, 512]]


@register_model(
    "resnext", **CNN_ENTRY, test_kwargs={"arch": [[1, 16], [1, 32]], "groups": 4, **SMALL}
)
class ResNeXt(CNNClassifier):
    """A trainable ResNeXt: ResNet's stages built from d2l 8.6.4's grouped-convolution bottleneck blocks."""

    def __init__(
        self,
        arch: list[list[int]] | None = None,
        groups: int = 32,
        bottleneck: float = 0.5,
        small_input: bool = False,
        lr: float = 0.05,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            arch: (blocks, channels) per stage; None means (2, 64), (2, 128), (2, 256), (2, 512).
            groups: groups of the 3x3 convolution; must divide every bottleneck width.
            bottleneck: bottleneck width as a fraction of the stage's channels.
            small_input: 3x3 stride-1 stem for 28 px images instead of the 7x7 stride-2 stem.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        arch = arch or [[2, 64], [2, 128], [2, 256], [2, 512]]
        for _, channels in arch:
            if round(channels * bottleneck) % groups:
                raise HyperparameterError(
                    f"groups={groups} must divide every bottleneck width; {channels} channels x {bottleneck} "
                    f"= {round(channels * bottleneck)}"
                )
        stages, channels = residual_stages(
            arch,
            arch[0][1],
            lambda cin, cout, stride: ResNeXtBlock(cin, cout, groups, bottleneck, stride),
        )
        self.build(
            nn.Sequential(stem(in_channels, arch[0][1], small_input), stages),
            classifier_head(channels, num_classes),
        )


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


@register_model(
    "densenet",
    **CNN_ENTRY,
    test_kwargs={"blocks": [2, 2], "growth_rate": 4, "stem_channels": 8, **SMALL},
)
class DenseNet(CNNClassifier):
    """DenseNet (d2l 8.7): dense blocks joined by transition layers that halve channels and size."""

    def __init__(
        self,
        blocks: list[int] | None = None,
        growth_rate: int = 32,
        stem_channels: int = 64,
        small_input: bool = False,
        lr: float = 0.1,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            blocks: convolutions per dense block; None means d2l's (4, 4, 4, 4).
            growth_rate: channels each convolution adds.
            stem_channels: channels of the stem.
            small_input: 3x3 stride-1 stem for 28 px images instead of the 7x7 stride-2 stem.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        blocks = blocks or [4, 4, 4, 4]
        layers: list[nn.Module] = [stem(in_channels, stem_channels, small_input)]
        channels = stem_channels
        for i, num_convs in enumerate(blocks):
            dense = DenseBlock(num_convs, channels, growth_rate)
            layers.append(dense)
            channels = dense.out_channels
            if i < len(blocks) - 1:
                layers += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channels, channels // 2, 1),
                    nn.AvgPool2d(2, 2),
                ]
                channels //= 2
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.build(nn.Sequential(*layers), classifier_head(channels, num_classes))


@register_model(
    "regnetx32",
    **CNN_ENTRY,
    test_kwargs={"depths": [1, 1], "channels": [8, 16], "groups": 4, "stem_channels": 8},
)
class RegNetX32(CNNClassifier):
    """RegNetX-32 (d2l 8.8's AnyNet design space): a stride-2 stem, then stages of grouped
    bottleneck blocks, each stage starting with a stride-2 block."""

    def __init__(
        self,
        depths: list[int] | None = None,
        channels: list[int] | None = None,
        groups: int = 16,
        bottleneck: float = 1.0,
        stem_channels: int = 32,
        lr: float = 0.05,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            depths: blocks per stage; None means d2l's (4, 6).
            channels: channels per stage; None means d2l's (32, 80).
            groups: groups of each 3x3 convolution (d2l: 16).
            bottleneck: bottleneck width as a fraction of the stage's channels (d2l: 1).
            stem_channels: channels of the stem (d2l: 32).
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        depths, channels = depths or [4, 6], channels or [32, 80]
        if len(depths) != len(channels):
            raise HyperparameterError(
                f"depths {depths} and channels {channels} must have one entry per stage"
            )
        layers: list[nn.Module] = [conv_bn_relu(in_channels, stem_channels, 3, 2, 1)]
        width = stem_channels
        for depth, out_channels in zip(depths, channels, strict=True):
            for i in range(depth):
                layers.append(
                    ResNeXtBlock(width, out_channels, groups, bottleneck, stride=2 if i == 0 else 1)
                )
                width = out_channels
        self.build(nn.Sequential(*layers), classifier_head(width, num_classes))
