"""Layers shared by the CNN family (d2l chapters 7 and 8), each defined once."""

from __future__ import annotations

import torch
from torch import nn

from lit_modules.base import ConfigurationError, check_positive


def init_cnn(module: nn.Module) -> None:
    """d2l's `init_cnn`: Xavier-uniform weights for every convolution and linear layer."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Length of `features`' flattened output for one image, found by a dry run, so linear
    heads fit any input size without lazy modules."""
    training = features.training
    try:
        with torch.no_grad():
            out = features.eval()(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as err:  # a pooling or convolution window larger than its input
        out, cause = torch.empty(0), err
    else:
        cause = None
    finally:
        features.train(training)
    if out.numel() == 0:
        raise ConfigurationError(
            f"images of {image_size}x{image_size} shrink to nothing in this network; resize them up "
            f"(e.g. --data.resize 96)"
        ) from cause
    return out.numel()


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> nn.Sequential:
    """Convolution, batch norm, ReLU. The convolution keeps its bias, as d2l's do."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def mlp_head(
    in_features: int, hidden: int, num_classes: int, dropout: float = 0.5
) -> nn.Sequential:
    """AlexNet/VGG's classifier: two ReLU layers of `hidden` units with dropout."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def shortcut(in_channels: int, out_channels: int, stride: int, batch_norm: bool) -> nn.Module:
    """Identity when shapes match, else d2l's strided 1x1 convolution (`use_1x1conv`),
    followed by batch norm in the ResNeXt block (`batch_norm`) but not in the residual one."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    projection = nn.Conv2d(in_channels, out_channels, 1, stride)
    return nn.Sequential(projection, nn.BatchNorm2d(out_channels)) if batch_norm else projection


class Residual(nn.Module):
    """d2l 8.6's residual block: two 3x3 conv-BN layers plus an identity (or 1x1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, 3, stride, 1),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = shortcut(in_channels, out_channels, stride, batch_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNeXtBlock(nn.Module):
    """d2l 8.6.4's bottleneck block (also RegNet's): a 1x1 convolution to `bottleneck` times
    the output channels, a grouped 3x3 convolution whose groups are `group_width` channels
    wide (d2l's `groups` argument, which it passes as `groups=bot_channels//groups`), and a
    1x1 convolution back to the output channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group_width: int,
        bottleneck: float,
        stride: int = 1,
    ) -> None:
        super().__init__()
        check_positive(group_width=group_width, bottleneck=bottleneck)
        mid = round(out_channels * bottleneck)
        if mid < group_width or mid % group_width:
            raise ConfigurationError(
                f"group_width={group_width} must divide every bottleneck width: {out_channels} "
                f"channels x bottleneck {bottleneck} = {mid}"
            )
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, mid, 1),
            conv_bn_relu(mid, mid, 3, stride, 1, groups=mid // group_width),
            nn.Conv2d(mid, out_channels, 1),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = shortcut(in_channels, out_channels, stride, batch_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def stem(in_channels: int, out_channels: int, small_input: bool) -> nn.Sequential:
    """ResNet/DenseNet's input stem: d2l's 7x7 stride-2 conv and max-pool for 96-224 px
    images, or a 3x3 stride-1 conv for 28 px images, which the former shrinks too early."""
    if small_input:
        return conv_bn_relu(in_channels, out_channels, 3, 1, 1)
    return nn.Sequential(conv_bn_relu(in_channels, out_channels, 7, 2, 3), nn.MaxPool2d(3, 2, 1))


def classifier_head(in_channels: int, num_classes: int) -> nn.Sequential:
    """Global average pooling and one linear layer."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))
