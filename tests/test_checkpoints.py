"""Checkpoint files a run can trust: last.ckpt follows the run even when the monitored metric
gets worse, and a failed write leaves the previous file whole."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli

from callbacks import AtomicCheckpointIO

FAST = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")


def test_last_checkpoint_is_the_final_state_when_the_metric_gets_worse(tmp_path) -> None:
    # val/loss falls every epoch, so in "max" mode every epoch after the first is worse: the
    # best checkpoint stays at epoch 0 while last.ckpt must follow the run to its end.
    fit = run_cli(
        "fit",
        "--model=linear_regression",
        "--trainer.max_epochs=3",
        "--checkpoint.mode=max",
        *FAST,
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr
    checkpoints = tmp_path / "runs" / "linear_regression" / "version_0" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    best, last = (
        torch.load(checkpoints / n, weights_only=True) for n in ("best.ckpt", "last.ckpt")
    )
    steps_per_epoch = best["global_step"]
    assert best["epoch"] == 0 and steps_per_epoch == 32  # 1000 examples in batches of 32
    assert last["epoch"] == 2 and last["global_step"] == 3 * steps_per_epoch
    # last.ckpt carries the best-checkpoint callback's state as of that final step
    (best_state,) = [v for k, v in last["callbacks"].items() if "val/loss" in k]
    assert best_state["best_model_path"].endswith("best.ckpt")


def test_a_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert oct(path.stat().st_mode & 0o077) != "0o0", "checkpoints must not be private to one user"

    def torn_write(obj: object, f) -> None:
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn_write)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_the_cli_writes_checkpoints_atomically(tmp_path, monkeypatch) -> None:
    from cli import LitzooCLI

    monkeypatch.chdir(tmp_path)
    built = LitzooCLI(["--model", "mlp", "--data", "digits"], run=False)
    assert isinstance(built.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
