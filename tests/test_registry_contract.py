"""One contract for every registered model, plug-ins included: built the way the command line
builds it (its entry's test_kwargs, the data's dimensions passed in), it trains for a few
batches, every trainable parameter gets a gradient, `train/loss` and the monitored metric are
logged and finite, a `test/` metric is logged, and a checkpoint reloads to identical outputs.
Every model also builds at its default settings."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from conftest import quiet_trainer
from torch.utils._pytree import tree_leaves

from cli import LitzooCLI
from registry import DATAMODULES, MODELS, check_data_fits, count_parameters, list_models, model_info


class GradientRecorder(L.Callback):
    """Names of the parameters that held a finite gradient after some backward pass."""

    def __init__(self) -> None:
        self.with_grad: set[str] = set()

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, param in pl_module.named_parameters():
            if param.grad is not None and torch.isfinite(param.grad).all():
                self.with_grad.add(name)


def _arg(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def build(name: str) -> tuple:
    """The entry, and the model and datamodule as `cli.py fit --model NAME` builds them from
    the entry's test settings (data-linked arguments included)."""
    entry = MODELS.entry(name)
    data_kwargs = {**DATAMODULES.entry(entry.data).test_kwargs, **entry.test_data_kwargs}
    args = [
        *("--model", name, *(f"--model.{k}={_arg(v)}" for k, v in entry.test_kwargs.items())),
        *("--data", entry.data, *(f"--data.{k}={_arg(v)}" for k, v in data_kwargs.items())),
        "--trainer.logger=false",
    ]
    built = LitzooCLI(args, run=False)
    return entry, built.model, built.datamodule


def example_input(model: L.LightningModule, datamodule: L.LightningDataModule):
    if model.example_input_array is not None:
        return model.example_input_array
    batch = next(iter(datamodule.val_dataloader()))
    return datamodule.on_after_batch_transfer(batch, 0)[0]


def test_every_model_has_a_usable_entry() -> None:
    names = list_models()
    assert {"linear_regression", "softmax_regression", "mlp"} <= set(names)
    for name in names:
        entry = MODELS.entry(name)
        assert entry.data in DATAMODULES, f"{name}: default data {entry.data!r} is not registered"
        check_data_fits(entry, DATAMODULES.entry(entry.data))  # it takes its own default data
        assert entry.monitor.startswith("val/"), f"{name}: checkpoints must select on validation"


@pytest.mark.parametrize("name", list_models())
def test_model_builds_at_its_default_settings(name: str) -> None:
    entry = MODELS.entry(name)
    try:
        model = entry.cls()
    except TypeError as err:  # a required argument: the contract below builds it from test_kwargs
        assert entry.test_kwargs, f"{name} needs arguments ({err}) but gives no test_kwargs"
        return
    assert count_parameters(model) > 0
    assert model_info(name, with_params=True)["parameters"] == count_parameters(model)


@pytest.mark.parametrize("name", list_models())
def test_model_contract(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    L.seed_everything(0)
    entry, model, datamodule = build(name)
    recorder = GradientRecorder()
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        limit_test_batches=2,
        callbacks=[recorder],
    )
    trainer.fit(model, datamodule)
    loss = trainer.callback_metrics.get("train/loss")
    assert loss is not None, f"{name} did not log train/loss"
    assert torch.isfinite(loss), f"{name}: train/loss is {loss}"

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, f"{name} has no trainable parameters"
    assert trainable - recorder.with_grad == set(), f"{name}: parameters without a gradient"

    trainer.validate(model, datamodule, verbose=False)
    monitored = trainer.callback_metrics.get(entry.monitor)
    assert monitored is not None, f"{name} did not log its monitor {entry.monitor}"
    assert torch.isfinite(monitored)
    results = trainer.test(model, datamodule, verbose=False)
    assert any(key.startswith("test/") for key in results[0]), f"{name} logged no test/ metric"

    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = entry.cls.load_from_checkpoint(path, map_location="cpu")
    x = example_input(model, datamodule)
    model.eval()
    restored.eval()
    with torch.no_grad():
        args = x if isinstance(x, tuple) else (x,)  # Lightning's convention: a tuple is *args
        for got, want in zip(tree_leaves(restored(*args)), tree_leaves(model(*args)), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
