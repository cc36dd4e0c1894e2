"""The Vision Transformer: patches become tokens one to one, its blocks compute d2l's
pre-norm ViTBlock, d2l's recipe builds at 96 px, and bad sizes are clear errors. Training,
gradients and checkpoint reload are covered by the registry contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cli import LitzooCLI
from lit_modules.base import ConfigurationError
from lit_modules.vit import PatchEmbedding, ViT

REPO = Path(__file__).resolve().parent.parent


def test_each_patch_becomes_its_own_token() -> None:
    torch.manual_seed(0)
    embed = PatchEmbedding(in_channels=1, patch_size=7, num_hiddens=8)
    images = torch.rand(2, 1, 28, 28)
    tokens = embed(images)
    assert tokens.shape == (2, 16, 8)  # 4 x 4 patches, row by row
    changed = images.clone()
    changed[0, 0, 7, 14] += 1.0  # a pixel of the patch in row 1, column 2: token 6
    moved = (embed(changed) - tokens).abs().sum(-1) > 0
    assert moved[0].nonzero().flatten().tolist() == [6] and not moved[1].any()


def test_blocks_compute_d2l_pre_norm_vit_block() -> None:
    """x + attention(ln1(x)), then + mlp(ln2(.)) with a GELU MLP, as d2l's ViTBlock."""
    torch.manual_seed(0)
    model = ViT(num_hiddens=16, mlp_num_hiddens=32, num_heads=2, num_blks=1).eval()
    block = model.net.blks[0]
    x = torch.randn(3, 17, 16)
    h = block.norm1(x)
    x1 = x + block.self_attn(h, h, h, need_weights=False)[0]
    expected = x1 + block.linear2(F.gelu(block.linear1(block.norm2(x1))))
    torch.testing.assert_close(block(x), expected)
    with torch.no_grad():  # evaluation takes torch's fused fast path: the same function
        torch.testing.assert_close(block(x), expected)


def test_blocks_start_from_their_own_weights() -> None:
    first, second = ViT(num_hiddens=16, mlp_num_hiddens=32, num_heads=2, num_blks=2).net.blks
    assert not torch.equal(first.self_attn.in_proj_weight, second.self_attn.in_proj_weight)
    assert not torch.equal(first.linear1.weight, second.linear1.weight)


def test_head_reads_the_class_token_output() -> None:
    """The classifier sees the class token's output, not a pooling of all tokens."""
    torch.manual_seed(0)
    model = ViT(num_hiddens=16, mlp_num_hiddens=32, num_heads=2, num_blks=1).eval()
    seen = {}
    model.net.blks.register_forward_hook(lambda m, args, out: seen.update(tokens=out))
    model.net.head.register_forward_hook(lambda m, args, out: seen.update(head_in=args[0]))
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    assert seen["tokens"].shape == (4, 17, 16)  # the class token first, then 16 patches
    torch.testing.assert_close(seen["head_in"], seen["tokens"][:, 0])


def test_d2l_recipe_builds_at_96_px(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = LitzooCLI(["--config", str(REPO / "configs" / "vit" / "vit.yaml")], run=False)
    hp = cli.model.hparams
    assert (hp.image_size, hp.patch_size, hp.num_hiddens, hp.num_blks) == (96, 16, 512, 2)
    assert cli.model.net.pos_embedding.shape == (1, 37, 512)  # 36 patches and the class token
    assert cli.model(torch.rand(2, 1, 96, 96)).shape == (2, 10)


def test_fast_recipe_builds_at_28_px(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = LitzooCLI(["--config", str(REPO / "configs" / "vit" / "vit_fast.yaml")], run=False)
    assert cli.datamodule.input_shape == (1, 28, 28) and cli.datamodule.augment
    assert cli.model.hparams.patch_size == 7 and cli.model.net.pos_embedding.shape[1] == 17
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in cli.model.modules())
    assert cli.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 5}, "multiple of patch_size"),
        ({"num_heads": 3}, "multiple of num_heads"),
        ({"blk_dropout": 1.0}, "blk_dropout"),
        ({"num_blks": 0}, "num_blks"),
    ],
)
def test_bad_sizes_are_clear_errors(kwargs, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ViT(**kwargs)
