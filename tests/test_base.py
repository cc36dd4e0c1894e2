"""What every model gets from ZooModule: evaluation metrics accumulated over the whole
validation or test set and logged once per epoch (exactly the final model's values on that set,
untouched by the sanity check or by earlier evaluations), and checkpoints whose weights do not
fit refused with the hyperparameters that differ."""

from __future__ import annotations

import re

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lit_modules.base import CheckpointMismatchError, ConfigurationError, mean_metric
from registry import get_datamodule, get_model


def _set_metrics(model: L.LightningModule, data: L.LightningDataModule) -> tuple[float, float]:
    """(mean cross-entropy per image, accuracy) of `model` over the validation set."""
    total_loss, correct, count = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for batch in data.val_dataloader():
            x, y = data.on_after_batch_transfer(batch, 0)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += len(y)
    return total_loss / count, correct / count


def test_logged_validation_metrics_cover_the_whole_set_once(tmp_path) -> None:
    L.seed_everything(0)
    data = get_datamodule("digits", batch_size=64)
    model = get_model("softmax_regression", num_inputs=64, lr=0.5)
    trainer = L.Trainer(
        max_epochs=1,
        num_sanity_val_steps=2,  # its batches must not leak into the epoch's metrics
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, data)
    loss, accuracy = _set_metrics(model, data)
    assert float(trainer.callback_metrics["val/loss"]) == pytest.approx(loss, rel=1e-5)
    assert float(trainer.callback_metrics["val/acc"]) == pytest.approx(accuracy)
    for _ in range(2):  # repeated evaluations start from scratch
        result = trainer.validate(model, data, verbose=False)[0]
        assert result["val/loss"] == pytest.approx(loss, rel=1e-5)
        assert result["val/acc"] == pytest.approx(accuracy)


def _checkpoint(model: L.LightningModule) -> dict:
    return {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}


@pytest.mark.parametrize(
    ("name", "saved", "now", "named"),
    [
        ("mlp", {"hidden_sizes": [8]}, {"hidden_sizes": [16]}, "hidden_sizes=[8] (now [16])"),
        ("ppo", {"shared_network": True}, {}, "shared_network=True (now False)"),
    ],
)
def test_weights_that_do_not_fit_name_the_differing_hyperparameters(
    name: str, saved: dict, now: dict, named: str
) -> None:
    """Wrong shapes (hidden width) and missing or extra weights (one trunk instead of two)."""
    checkpoint = _checkpoint(get_model(name, **saved))
    with pytest.raises(CheckpointMismatchError, match=re.escape(named)):
        get_model(name, **now).on_load_checkpoint(checkpoint)


def test_weights_from_another_version_of_the_model_are_refused() -> None:
    checkpoint = _checkpoint(get_model("mlp"))
    checkpoint["state_dict"]["net.old_layer.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="another version of this model"):
        get_model("mlp").on_load_checkpoint(checkpoint)
    get_model("mlp").on_load_checkpoint(_checkpoint(get_model("mlp")))  # a fitting one passes


def test_mean_metric_weights_batches_and_keeps_nan() -> None:
    mean = mean_metric()
    mean.update(torch.tensor(1.0), 1)
    mean.update(torch.tensor(5.0), 3)
    assert mean.compute().item() == 4.0
    mean.update(torch.tensor(float("nan")), 2)  # a diverged batch must not vanish from val/loss
    assert mean.compute().isnan()


@pytest.mark.parametrize(
    "name, kwargs", [("mlp", {"dropout": 1.0}), ("gru", {"vocab_size": 28, "dropout": -0.1})]
)
def test_dropout_outside_zero_to_one_is_a_clear_error(name, kwargs) -> None:
    with pytest.raises(ConfigurationError, match=r"dropout must be in \[0, 1\), got"):
        get_model(name, **kwargs)
