"""The CNN family: d2l's architectures (parameter counts), shared-block errors, any channel
and class count, the NHWC (channels_last) layout, and the recipe configs."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from cli import LitzooCLI
from lit_modules.base import HyperparameterError
from registry import MODELS, count_parameters, get_model, list_models

CNNS = [
    "alexnet",
    "densenet",
    "googlenet",
    "lenet",
    "lenet_bn",
    "nin",
    "regnetx32",
    "resnet18",
    "resnet34",
    "resnext",
    "vgg",
]


def test_the_eleven_cnns_are_registered() -> None:
    assert list_models(family="cnn") == CNNS


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [  # parameter counts of d2l's networks on 1-channel 10-class input
        ("lenet", {}, 61_706),
        ("resnet18", {}, 11_175_370),
        ("alexnet", {}, 46_764_746),
    ],
)
def test_architectures_match_d2l(name: str, kwargs: dict, expected: int) -> None:
    assert count_parameters(get_model(name, **kwargs)) == expected


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


def test_resnext_groups_must_divide_the_bottleneck() -> None:
    with pytest.raises(HyperparameterError, match="groups=5"):
        get_model("resnext", groups=5)


@pytest.mark.parametrize("name", ["lenet", "vgg", "googlenet"])
def test_d2l_recipe_configs(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = LitzooCLI(["--config", str(REPO / "configs" / "cnn" / f"{name}.yaml")], run=False)
    assert cli.datamodule.batch_size == 128 and cli.trainer.max_epochs == 10
    size = cli.datamodule.input_shape[-1]
    assert size == {"lenet": 28, "vgg": 224, "googlenet": 96}[name]
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
