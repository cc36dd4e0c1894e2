"""The README stays true: its "Adding a model" example registers a model that trains."""

from __future__ import annotations

import re

import lightning as L
import torch
from conftest import REPO

from registry import MODELS, get_datamodule, list_models


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_adding_a_model_example_works(monkeypatch) -> None:
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    exec(
        compile(readme_block("Adding a model"), "README.md", "exec"), {"__name__": "readme_example"}
    )
    assert "tiny_cnn" in list_models(family="cnn")
    entry = MODELS.entry("tiny_cnn")
    model = entry.cls(**entry.test_kwargs)
    assert model.hparams.width == 4
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, get_datamodule("digits", batch_size=16))
    assert torch.isfinite(trainer.callback_metrics["val/acc"])
