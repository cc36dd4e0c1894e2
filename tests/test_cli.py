"""The command line: list/info, every subcommand with short names, checkpoints and resume,
configs, linked data dimensions and the errors a user meets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from cli import LitzooCLI
from configs import make_plan
from registry import ConfigurationError

FAST = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")


def test_list_shows_models_and_the_plugin(tmp_path) -> None:
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("linear_regression", "softmax_regression", "mlp", "example_logreg"):
        assert name in result.stdout
    assert "parameters" in result.stdout and "7,850" in result.stdout
    family = run_cli("list", "--family", "plugin", cwd=tmp_path)
    assert "example_logreg" in family.stdout and "mlp" not in family.stdout


def test_info_shows_entry_and_hyperparameters(tmp_path) -> None:
    result = run_cli("info", "mlp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in (
        "fashion_mnist",
        "val/acc",
        "--model.hidden_sizes",
        "--model.lr",
        "0.1",
        "torch.optim.SGD",
    ):
        assert text in result.stdout


def test_misspelt_model_exits_non_zero_and_suggests(tmp_path) -> None:
    result = run_cli("fit", "--model", "softmax_regresion", cwd=tmp_path)
    assert result.returncode != 0
    assert "softmax_regression" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_hyperparameter_is_reported_by_name(tmp_path) -> None:
    result = run_cli("fit", "--model", "mlp", "--data", "digits", "--model.lr", "-1", cwd=tmp_path)
    assert result.returncode == 2
    assert "lr must be a finite number > 0" in result.stderr and "Traceback" not in result.stderr


def test_fit_test_validate_predict_and_resume(tmp_path) -> None:
    fit = run_cli(
        "fit", "--model", "linear_regression", "--trainer.max_epochs=2", *FAST, cwd=tmp_path
    )
    assert fit.returncode == 0, fit.stderr
    run = tmp_path / "runs" / "linear_regression" / "version_0"
    for produced in (
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics.csv",
        "learning_curve.png",
        "config.yaml",
    ):
        assert (run / produced).is_file(), produced
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "val/loss" in header

    test = run_cli(
        "test", "--model", "linear_regression", "--ckpt_path", "best", *FAST, cwd=tmp_path
    )
    assert test.returncode == 0, test.stderr
    assert "test/loss" in test.stdout
    validate = run_cli(
        "validate", "--model", "linear_regression", "--ckpt_path", "last", *FAST, cwd=tmp_path
    )
    assert validate.returncode == 0 and "val/loss" in validate.stdout
    predict = run_cli(
        "predict", "--ckpt_path", str(run / "checkpoints" / "best.ckpt"), *FAST, cwd=tmp_path
    )
    assert predict.returncode == 0, predict.stderr  # the model comes from the checkpoint

    resume = run_cli(
        "fit",
        "--model",
        "linear_regression",
        "--trainer.max_epochs=4",
        "--ckpt_path",
        "last",
        *FAST,
        cwd=tmp_path,
    )
    assert resume.returncode == 0, resume.stderr
    lasts = sorted(
        run.parent.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime
    )
    assert (
        len(lasts) == 2 and lasts[0].parent.parent == run
    )  # the resumed run has its own directory
    before, after = (torch.load(p, weights_only=True) for p in lasts)
    assert (before["epoch"], after["epoch"]) == (1, 3)
    assert after["global_step"] == 2 * before["global_step"]


def test_checkpoint_of_another_model_is_refused(tmp_path) -> None:
    fit = run_cli(
        "fit", "--model", "mlp", "--data", "digits", "--trainer.max_epochs=1", *FAST, cwd=tmp_path
    )
    assert fit.returncode == 0, fit.stderr
    ckpt = tmp_path / "runs" / "mlp" / "version_0" / "checkpoints" / "last.ckpt"
    result = run_cli(
        "test", "--model", "softmax_regression", "--ckpt_path", str(ckpt), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "lit_modules.linear.MLP" in result.stderr and "Traceback" not in result.stderr
    assert "litzoo_class_path" not in torch.load(ckpt, weights_only=True)  # one record:
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["_class_path"].endswith("MLP")


def cli(*args: str) -> LitzooCLI:
    return LitzooCLI(list(args), run=False)


def test_short_names_and_data_defaulting_to_the_entry(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = cli("--model", "softmax_regression", "--model.lr", "0.5", "--data.val_size", "100")
    assert type(built.model).__name__ == "SoftmaxRegression" and built.model.hparams.lr == 0.5
    assert type(built.datamodule).__name__ == "FashionMNISTData"
    assert built.datamodule.val_size == 100  # --data.* without --data sets the default's


def test_data_dimensions_are_linked_into_the_model(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = cli("--model", "mlp", "--data", "digits", "--model.hidden_sizes=[8]")
    assert built.model.hparams.num_inputs == 64 and built.model.hparams.num_classes == 10
    assert built.model.hparams.hidden_sizes == [8]


def test_checkpoint_and_early_stopping_follow_the_entry(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = cli("--model", "mlp", "--data", "digits", "--early_stopping_patience", "3")
    checkpoint = next(c for c in built.trainer.callbacks if isinstance(c, ModelCheckpoint))
    assert (checkpoint.monitor, checkpoint.mode) == ("val/acc", "max")
    early = next(c for c in built.trainer.callbacks if isinstance(c, EarlyStopping))
    assert (early.monitor, early.patience) == ("val/acc", 3)
    assert built.trainer.logger.log_dir.endswith("runs/mlp/version_0")
    without = cli("--model", "mlp", "--data", "digits")
    assert not any(isinstance(c, EarlyStopping) for c in without.trainer.callbacks)


def test_config_files_with_short_names(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = cli("--config", str(REPO / "configs" / "linear" / "linear_regression.yaml"))
    assert type(built.model).__name__ == "LinearRegression"
    assert built.model.hparams.lr == 0.03
    assert built.datamodule.batch_size == 32
    assert built.trainer.max_epochs == 3


def test_print_config_with_short_names(tmp_path) -> None:
    result = run_cli("fit", "--model", "mlp", "--data", "digits", "--print_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "class_path: lit_modules.linear.MLP" in result.stdout
    assert "class_path: datamodules.images.DigitsData" in result.stdout
    assert "monitor: val/acc" in result.stdout


def test_class_paths_keep_working(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = cli("--model", "lit_modules.linear.MLP", "--data", "datamodules.images.DigitsData")
    assert type(built.model).__name__ == "MLP" and built.model.hparams.num_inputs == 64


def test_last_without_runs_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=r"no last\.ckpt"):
        make_plan(["fit", "--model", "mlp", "--ckpt_path", "last"])


def test_predict_writes_class_names_and_probabilities(tmp_path) -> None:
    fit = run_cli(
        "fit", "--model", "mlp", "--data", "digits", "--trainer.max_epochs=1", *FAST, cwd=tmp_path
    )
    assert fit.returncode == 0, fit.stderr
    predict = run_cli(
        "predict", "--model", "mlp", "--data", "digits", "--ckpt_path", "best", *FAST, cwd=tmp_path
    )
    assert predict.returncode == 0, predict.stderr
    (written,) = tmp_path.glob("runs/mlp/version_*/predictions.csv")
    header, *rows = written.read_text().splitlines()
    assert header.split(",")[:3] == ["index", "predicted", "p_0"] and len(header.split(",")) == 12
    assert len(rows) == 300  # the digits test split
    assert all(row.split(",")[1] in "0123456789" for row in rows)
    assert abs(sum(float(p) for p in rows[0].split(",")[2:]) - 1) < 1e-4

    images = tmp_path / "my_digits.npy"
    np.save(images, np.random.default_rng(0).random((5, 8, 8), dtype=np.float32))
    own = run_cli(
        "predict",
        "--model",
        "mlp",
        "--data",
        "digits",
        f"--data.predict_images={images}",
        "--ckpt_path",
        "best",
        *FAST,
        cwd=tmp_path,
    )
    assert own.returncode == 0, own.stderr
    newest = max(
        tmp_path.glob("runs/mlp/version_*/predictions.csv"), key=lambda p: p.stat().st_mtime
    )
    assert len(newest.read_text().splitlines()) == 1 + 5

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 28, 28), dtype=np.uint8))
    bad = run_cli(
        "predict",
        "--model",
        "mlp",
        "--data",
        "digits",
        f"--data.predict_images={wrong}",
        "--ckpt_path",
        "best",
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "expected (N, 8, 8)" in bad.stderr
