"""The CNN family, every registered CNN: any channel and class count, the NHWC (channels_last)
layout, d2l's grouped convolutions, clear errors for bad stages, and the recipe configs.
Parameter counts against d2l's definitions are in test_d2l_parameter_counts.py."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from cli import LitzooCLI
from lit_modules.base import ConfigurationError
from registry import MODELS, get_model, list_models

CNNS = list_models(family="cnn")


@pytest.mark.parametrize("name", CNNS)
def test_any_channels_and_classes(name: str) -> None:
    entry = MODELS.entry(name)
    size = entry.test_data_kwargs.get("resize", 28)
    kwargs = {**entry.test_kwargs, "in_channels": 3, "num_classes": 5}
    model = entry.cls(**kwargs).eval()
    assert model(torch.rand(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize("name", CNNS)
def test_channels_last_computes_the_same_function(name: str) -> None:
    entry = MODELS.entry(name)
    size = entry.test_data_kwargs.get("resize", 28)
    x = torch.rand(8, 1, size, size)  # batch norm of 2 samples is too ill-conditioned to compare
    models = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        models.append(entry.cls(**entry.test_kwargs, channels_last=channels_last).eval())
    nchw, nhwc = models

    def conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
        return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    nhwc_convs = conv_weights(nhwc)
    assert any(w.shape[1] > 1 for w in nhwc_convs)  # so the layout check below is not vacuous
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in nhwc_convs)
    torch.testing.assert_close(nhwc(x), nchw(x), rtol=1e-4, atol=1e-5)
    for model in models:
        torch.manual_seed(1)  # the same dropout masks
        model.train()(x).square().mean().backward()
    for a, b in zip(nhwc_convs, conv_weights(nchw), strict=True):
        assert a.grad.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5)


def test_too_small_images_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="resize them up"):
        get_model("alexnet", image_size=28)


@pytest.mark.parametrize("name", ["resnext", "regnetx32"])
def test_grouped_convolutions_have_groups_of_group_width_channels(name: str) -> None:
    """d2l's ResNeXtBlock passes groups=bot_channels//groups: its `groups` is a group's width."""
    model = get_model(name, group_width=16)
    grouped = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert grouped and all(conv.in_channels // conv.groups == 16 for conv in grouped)
    if name == "regnetx32":  # d2l 8.8: 32 and 80 channels, so 2 and 5 groups
        assert sorted({conv.groups for conv in grouped}) == [2, 5]


@pytest.mark.parametrize("name", ["resnext", "regnetx32"])
def test_group_width_must_divide_the_bottleneck(name: str) -> None:
    with pytest.raises(ConfigurationError, match="group_width=5 must divide"):
        get_model(name, group_width=5)


@pytest.mark.parametrize(
    ("name", "retired", "replacement"),
    [
        ("resnext", {"groups": 32}, "group_width"),
        ("regnetx32", {"depths": [4, 6], "channels": [32, 80]}, "arch"),
        ("densenet", {"blocks": [4, 4], "growth_rate": 32}, "arch"),
    ],
)
def test_hyperparameters_of_earlier_versions_name_their_replacement(
    name: str, retired: dict, replacement: str
) -> None:
    """What loading an older checkpoint, which passes its saved hyperparameters, reports."""
    with pytest.raises(ConfigurationError, match=f"earlier version.*replaced by {replacement}"):
        get_model(name, **retired)


@pytest.mark.parametrize("arch", [[], [[2]], [[2, 64, 1]], [[0, 64]], [[2, -1]]])
@pytest.mark.parametrize("name", ["vgg", "resnet18", "resnext", "densenet", "regnetx32"])
def test_arch_rows_must_be_positive_depth_width_pairs(name: str, arch: list) -> None:
    with pytest.raises(ConfigurationError, match=r"\[depth, width\] rows"):
        get_model(name, arch=arch)


D2L_RECIPES = sorted(
    set((REPO / "configs" / "cnn").glob("*.yaml"))
    - set((REPO / "configs" / "cnn").glob("*_fast.yaml"))
)


@pytest.mark.parametrize("path", D2L_RECIPES, ids=lambda p: p.stem)
def test_d2l_recipe_configs_build_their_model(path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = LitzooCLI(["--config", str(path)], run=False)
    assert cli.datamodule.batch_size == 128 and cli.trainer.max_epochs == 10
    assert type(cli.model) is MODELS.entry(path.stem).cls
    x = torch.rand(2, *cli.datamodule.input_shape)
    assert cli.model.eval()(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["lenet", "vgg", "googlenet"])
def test_d2l_recipe_input_size_and_learning_rate(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = LitzooCLI(["--config", str(REPO / "configs" / "cnn" / f"{name}.yaml")], run=False)
    assert cli.datamodule.input_shape[-1] == {"lenet": 28, "vgg": 224, "googlenet": 96}[name]
    assert cli.model.hparams.lr == {"lenet": 0.1, "vgg": 0.01, "googlenet": 0.01}[name]


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "cnn").glob("*_fast.yaml")), ids=lambda p: p.stem
)
def test_fast_recipes_build_at_28_px(path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = LitzooCLI(["--config", str(path)], run=False)
    assert cli.datamodule.input_shape == (1, 28, 28) and cli.datamodule.augment
    assert cli.model.hparams.channels_last  # NHWC runs oneDNN's CPU convolutions faster
    # lenet_fast's 15 epochs do best on flips alone; resnet18_fast keeps shifts of 2 px
    assert cli.datamodule.max_shift == {"lenet_fast": 0, "resnet18_fast": 2}[path.stem]
    x = torch.rand(2, *cli.datamodule.input_shape)
    assert cli.model(x).shape == (2, 10)
