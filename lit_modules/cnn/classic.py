"""The classic CNNs of d2l chapters 7 and 8: LeNet (with and without batch norm), AlexNet,
VGG and NiN."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from lit_modules.cnn.base import CNN_ENTRY, CNNClassifier, Stage, build_stages, check_arch
from lit_modules.cnn.blocks import flat_features, mlp_head
from registry import register_model


@register_model("lenet", **CNN_ENTRY)
class LeNet(CNNClassifier):
    """LeNet-5 as d2l 7.6 writes it: sigmoid activations and average pooling (ReLU and max
    pooling as options, for the faster recipe)."""

    def __init__(
        self,
        image_size: int = 28,
        activation: Literal["sigmoid", "relu"] = "sigmoid",
        pooling: Literal["avg", "max"] = "avg",
        lr: float = 0.1,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            image_size: side of the input images (linked from the data).
            activation: sigmoid (d2l) or relu.
            pooling: avg (d2l) or max.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}[activation]
        pool = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[pooling]
        features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), act(), pool(2, 2),
            nn.Conv2d(6, 16, 5), act(), pool(2, 2), nn.Flatten(),
        )  # fmt: skip
        head = nn.Sequential(
            nn.Linear(flat_features(features, in_channels, image_size), 120), act(),
            nn.Linear(120, 84), act(), nn.Linear(84, num_classes),
        )  # fmt: skip
        self.build(features, head)


@register_model("lenet_bn", **CNN_ENTRY)
class LeNetBN(CNNClassifier):
    """LeNet with batch normalization after every convolution and hidden layer (d2l 8.5)."""

    def __init__(
        self,
        image_size: int = 28,
        lr: float = 0.1,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            image_size: side of the input images (linked from the data).
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.BatchNorm2d(6),
            nn.Sigmoid(),
            nn.AvgPool2d(2, 2),
            nn.Conv2d(6, 16, 5),
            nn.BatchNorm2d(16),
            nn.Sigmoid(),
            nn.AvgPool2d(2, 2),
            nn.Flatten(),
        )
        head = nn.Sequential(
            nn.Linear(flat_features(features, in_channels, image_size), 120),
            nn.BatchNorm1d(120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.BatchNorm1d(84),
            nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )
        self.build(features, head)


@register_model(
    "alexnet",
    **CNN_ENTRY,
    test_kwargs={"channels": [8, 8, 8, 8, 8], "hidden": 16, "image_size": 96},
    test_data_kwargs={"resize": 96},
)
class AlexNet(CNNClassifier):
    """AlexNet (d2l 8.1): five ReLU convolutions, max pooling and a dropout MLP head; 224 px input."""

    def __init__(
        self,
        image_size: int = 224,
        channels: list[int] | None = None,
        hidden: int = 4096,
        dropout: float = 0.5,
        lr: float = 0.01,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            image_size: side of the input images (linked from the data); at least 63.
            channels: widths of the five convolutions; None means d2l's (96, 256, 384, 384, 256).
            hidden: width of the two hidden layers of the head.
            dropout: dropout probability in the head.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        c1, c2, c3, c4, c5 = channels or (96, 256, 384, 384, 256)
        features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 11, 4, 1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.build(
            features,
            mlp_head(
                flat_features(features, in_channels, image_size), hidden, num_classes, dropout
            ),
        )


def vgg_stage(index: int, in_channels: int, row: list[int]) -> Stage:
    """d2l's vgg_block: `num_convs` 3x3 ReLU convolutions of `channels`, then 2x2 max pooling."""
    num_convs, channels = row
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
    return Stage(*layers, nn.MaxPool2d(2, 2), out_channels=channels)


@register_model(
    "vgg", **CNN_ENTRY, test_kwargs={"arch": [[1, 4], [1, 8]], "hidden": 16, "image_size": 28}
)
class VGG(CNNClassifier):
    """VGG (d2l 8.2): blocks of 3x3 convolutions, each closed by 2x2 max pooling."""

    def __init__(
        self,
        image_size: int = 224,
        arch: list[list[int]] | None = None,
        hidden: int = 4096,
        dropout: float = 0.5,
        lr: float = 0.01,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            image_size: side of the input images (linked from the data).
            arch: [convolutions, channels] per block; None means d2l's small VGG
                ((1,16),(1,32),(2,64),(2,128),(2,128)).
            hidden: width of the two hidden layers of the head.
            dropout: dropout probability in the head.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        arch = check_arch([[1, 16], [1, 32], [2, 64], [2, 128], [2, 128]] if arch is None else arch)
        features = build_stages(arch, in_channels, vgg_stage)
        self.build(
            features,
            mlp_head(
                flat_features(features, in_channels, image_size), hidden, num_classes, dropout
            ),
        )


def nin_block(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
) -> nn.Sequential:
    """A convolution followed by two 1x1 convolutions: an MLP applied at every pixel."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1),
        nn.ReLU(inplace=True),
    )


@register_model(
    "nin", **CNN_ENTRY, test_kwargs={"channels": [8, 8, 8]}, test_data_kwargs={"resize": 96}
)
class NiN(CNNClassifier):
    """Network in Network (d2l 8.3): NiN blocks and global average pooling instead of a dense head."""

    def __init__(
        self,
        channels: list[int] | None = None,
        dropout: float = 0.5,
        lr: float = 0.05,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            channels: widths of the first three NiN blocks; None means d2l's (96, 256, 384).
            dropout: dropout probability before the last block.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        in_channels, num_classes = self.hparams.in_channels, self.hparams.num_classes
        c1, c2, c3 = channels or (96, 256, 384)
        features = nn.Sequential(
            nin_block(in_channels, c1, 11, 4, 0),
            nn.MaxPool2d(3, 2),
            nin_block(c1, c2, 5, 1, 2),
            nn.MaxPool2d(3, 2),
            nin_block(c2, c3, 3, 1, 1),
            nn.MaxPool2d(3, 2),
            nn.Dropout(dropout),
            nin_block(c3, num_classes, 3, 1, 1),
        )
        self.build(features, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
