"""The Vision Transformer of d2l 11.8: an image cut into patches, each patch a token, a
learned class token and position embeddings, pre-norm Transformer encoder blocks, and a
classifier on the class token's output."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lit_modules.base import ClassifierModule, ConfigurationError, check_positive, check_probability
from registry import register_model


class PatchEmbedding(nn.Module):
    """Cuts images into non-overlapping `patch_size` squares and projects each to a token:
    a convolution whose kernel and stride are the patch size."""

    def __init__(self, in_channels: int, patch_size: int, num_hiddens: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, num_hiddens, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)  # (batch, patches, hiddens)


class VisionTransformer(nn.Module):
    """Patch tokens plus a learned class token and position embeddings, pre-norm encoder
    blocks, and a linear classifier on the class token's output. Each block is torch's
    `nn.TransformerEncoderLayer` with `norm_first` and a GELU MLP: d2l's ViTBlock, except that
    its attention projections have biases (d2l: none) and dropout also applies to the
    attention output. The blocks are built one by one, so each starts from its own random
    weights (`nn.TransformerEncoder` would copy one block's)."""

    def __init__(
        self, in_channels: int, image_size: int, patch_size: int, num_hiddens: int,
        mlp_num_hiddens: int, num_heads: int, num_blks: int, emb_dropout: float,
        blk_dropout: float, num_classes: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.patch_embedding = PatchEmbedding(in_channels, patch_size, num_hiddens)
        num_tokens = (image_size // patch_size) ** 2 + 1  # the patches and the class token
        self.cls_token = nn.Parameter(torch.zeros(1, 1, num_hiddens))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_tokens, num_hiddens))  # as d2l
        self.dropout = nn.Dropout(emb_dropout)
        self.blks = nn.Sequential(*(
            nn.TransformerEncoderLayer(
                num_hiddens, num_heads, mlp_num_hiddens, blk_dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )
            for _ in range(num_blks)
        ))  # fmt: skip
        self.head = nn.Sequential(nn.LayerNorm(num_hiddens), nn.Linear(num_hiddens, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embedding(images)
        tokens = torch.cat((self.cls_token.expand(len(tokens), -1, -1), tokens), dim=1)
        tokens = self.blks(self.dropout(tokens + self.pos_embedding))
        return self.head(tokens[:, 0])


@register_model(
    "vit",
    family="vit",
    data="fashion_mnist",
    monitor="val/acc",
    mode="max",
    test_kwargs={"num_hiddens": 16, "mlp_num_hiddens": 32, "num_heads": 2, "num_blks": 1},
)
class ViT(ClassifierModule):
    """Vision Transformer (d2l 11.8) on images whose side is a multiple of the patch size."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        patch_size: int = 7,
        num_hiddens: int = 512,
        mlp_num_hiddens: int = 2048,
        num_heads: int = 8,
        num_blks: int = 2,
        emb_dropout: float = 0.1,
        blk_dropout: float = 0.1,
        lr: float = 0.1,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            in_channels: image channels (linked from the data).
            image_size: side of the input images (linked from the data), a multiple of patch_size.
            patch_size: side of the square patches that become tokens (d2l: 16 at 96 px).
            num_hiddens: token width; a multiple of num_heads.
            mlp_num_hiddens: hidden width of each block's MLP.
            num_heads: attention heads per block.
            num_blks: Transformer encoder blocks.
            emb_dropout: dropout on the embedded tokens.
            blk_dropout: dropout inside the blocks: on attention weights, attention output and
                the MLP (torch's placement; d2l leaves the attention output alone).
            lr: learning rate (d2l: SGD, 0.1).
        """
        super().__init__(lr=lr, **kwargs)
        check_positive(
            in_channels=in_channels, image_size=image_size, patch_size=patch_size,
            num_hiddens=num_hiddens, mlp_num_hiddens=mlp_num_hiddens, num_heads=num_heads,
            num_blks=num_blks,
        )  # fmt: skip
        if image_size % patch_size:
            raise ConfigurationError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}: pick a "
                f"patch_size that divides it, or resize the images (--data.resize)"
            )
        if num_hiddens % num_heads:
            raise ConfigurationError(
                f"num_hiddens {num_hiddens} must be a multiple of num_heads {num_heads}"
            )
        check_probability(emb_dropout=emb_dropout, blk_dropout=blk_dropout)
        self.net = VisionTransformer(
            in_channels, image_size, patch_size, num_hiddens, mlp_num_hiddens, num_heads,
            num_blks, emb_dropout, blk_dropout, self.hparams.num_classes,
        )  # fmt: skip
