"""One contract for every registered model, plug-ins included: it trains for a few batches
from its registry entry's test_kwargs, every trainable parameter gets a gradient, the loss and
the monitored metric are finite, and a checkpoint reloads to identical outputs."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils._pytree import tree_leaves

import datamodules  # noqa: F401
import lit_modules  # noqa: F401
from registry import DATAMODULES, MODELS, get_datamodule, list_models


class GradientRecorder(L.Callback):
    """Names of the parameters that held a finite gradient after some backward pass."""

    def __init__(self) -> None:
        self.with_grad: set[str] = set()

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, param in pl_module.named_parameters():
            if param.grad is not None and torch.isfinite(param.grad).all():
                self.with_grad.add(name)


def build(name: str) -> tuple:
    entry = MODELS.entry(name)
    model = entry.cls(**entry.test_kwargs)
    data_kwargs = {**DATAMODULES.entry(entry.data).test_kwargs, **entry.test_data_kwargs}
    return entry, model, get_datamodule(entry.data, **data_kwargs)


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
        assert entry.monitor, f"{name}: no monitor metric"


@pytest.mark.parametrize("name", list_models())
def test_model_contract(name: str, tmp_path) -> None:
    L.seed_everything(0)
    entry, model, datamodule = build(name)
    recorder = GradientRecorder()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        limit_test_batches=2,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
        default_root_dir=tmp_path,
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
