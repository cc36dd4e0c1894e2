"""Evaluation metrics are accumulated over the whole validation or test set and logged once per
epoch: the logged values must be exactly those of the final model on that set, untouched by the
sanity check or by earlier evaluations."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

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
        max_epochs=2,
        num_sanity_val_steps=2,  # its batches must not leak into epoch 0's metrics
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
