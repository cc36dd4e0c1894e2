"""The learning curve is drawn from the callback's own history, whatever the logger: every metric
against the optimizer step (validation in the middle of an epoch lands where it ran)."""

from __future__ import annotations

from conftest import quiet_trainer
from PIL import Image

from callbacks import LearningCurvePlot
from callbacks.learning_curve import _panel_name
from registry import get_datamodule, get_model


def test_history_on_one_step_axis_without_a_logger(tmp_path) -> None:
    curve = LearningCurvePlot()
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=2,
        val_check_interval=0.5,  # twice an epoch
        log_every_n_steps=3,
        callbacks=[curve],
    )
    trainer.fit(get_model("mlp", num_inputs=64, hidden_sizes=[16]), get_datamodule("digits"))
    val_steps = [step for step, _ in curve.history["val/acc"]]
    assert len(val_steps) == 4 and val_steps == sorted(set(val_steps)) and val_steps[0] > 0
    train_steps = [step for step, _ in curve.history["train/loss"]]
    assert train_steps[0] == 1 and all(s % 3 == 0 for s in train_steps[1:])
    assert set(curve.history) == {"train/loss", "val/loss", "val/acc"}
    with Image.open(tmp_path / "learning_curve.png") as picture:
        assert picture.size[0] > 500


def test_metrics_share_a_panel_by_name() -> None:
    assert _panel_name("val/loss") == ("loss", "val") and _panel_name("train/loss") == (
        "loss",
        "train",
    )
    assert _panel_name("loss") == ("loss", "loss")  # a plug-in's name without a stage
