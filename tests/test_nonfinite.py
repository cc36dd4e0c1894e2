"""A fit whose loss, metrics or weights turn NaN or infinite stops with a clear error and a
non-zero exit status, and keeps its last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import REPO, run_cli

QUIET = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")


def test_a_diverging_learning_rate_stops_the_fit_with_a_clear_error(tmp_path: Path) -> None:
    fit = run_cli(
        "fit", "--model=mlp", "--data=digits", "--model.lr=1e30", "--trainer.max_epochs=2",
        *QUIET, cwd=tmp_path,
    )  # fmt: skip
    assert fit.returncode == 1, fit.stderr[-3000:]
    error = fit.stderr.strip().splitlines()[-1]
    assert error.startswith("python cli.py: error: ") and "NaN or infinite" in error
    assert "--model.lr" in error and "no checkpoint had been written yet" in error
    assert "Traceback" not in fit.stderr
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # nothing diverged was saved


def test_divergence_after_a_checkpoint_keeps_the_last_good_state(tmp_path: Path) -> None:
    # 32 batches an epoch: the weights turn NaN as epoch 1's sixth batch starts
    fit = run_cli(
        "fit", "--model=linear_regression", "--trainer.max_epochs=3",
        "--trainer.callbacks+=fault_injection.PoisonWeightsAt",
        "--trainer.callbacks.at_batch=37", *QUIET,
        cwd=tmp_path, env={"PYTHONPATH": str(REPO / "tests")},
    )  # fmt: skip
    assert fit.returncode == 1, fit.stderr[-3000:]
    error = fit.stderr.strip().splitlines()[-1]
    assert "the training loss" in error and "at epoch 1, step 38" in error
    assert "Traceback" not in fit.stderr
    checkpoints = Path("runs", "linear_regression", "version_0", "checkpoints")
    assert f"{checkpoints / 'last.ckpt'} hold the last good state" in error
    for name in ("best.ckpt", "last.ckpt"):
        saved = torch.load(tmp_path / checkpoints / name, weights_only=True)
        assert (saved["epoch"], saved["global_step"]) == (0, 32)
        assert all(torch.isfinite(w).all() for w in saved["state_dict"].values())
