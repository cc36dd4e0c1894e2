"""The command line: list/info, every subcommand with short names, checkpoints and resume,
configs, linked data dimensions and the errors a user meets."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_cli
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from cli import LitzooCLI
from configs import make_plan
from registry import ConfigurationError

FAST = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")
TINY = (
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
)


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


# ------------------------------------------------------------------ LightningCLI's forms


def test_top_level_help_names_list_and_info(tmp_path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("python cli.py list", "python cli.py info NAME", "fit", "predict"):
        assert text in result.stdout


def test_dash_c_and_recipe_names(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = cli("-c", "linear/linear_regression")  # a shipped recipe by its short name
    assert type(built.model).__name__ == "LinearRegression" and built.model.hparams.lr == 0.03
    listed = run_cli("list", "--configs", cwd=tmp_path)
    assert "cnn/lenet_fast" in listed.stdout and "linear/quickstart" in listed.stdout


def test_model_given_as_a_yaml_file_with_a_short_name(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.yaml").write_text("class_path: mlp\ninit_args:\n  hidden_sizes: [8]\n")
    built = cli("--model", "model.yaml", "--data", "digits")
    assert type(built.model).__name__ == "MLP" and built.model.hparams.hidden_sizes == [8]
    assert built.model.hparams.num_inputs == 64  # still linked from the data


def test_model_help_with_a_short_name(tmp_path) -> None:
    result = run_cli("fit", "--model.help", "lenet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--model.activation" in result.stdout and "--model.optimizer" in result.stdout


def test_print_config_then_config_round_trip(tmp_path) -> None:
    printed = run_cli("fit", "--model", "mlp", "--data", "digits", "--model.hidden_sizes=[8]",
                      "--model.optimizer=AdamW", "--print_config", cwd=tmp_path)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "recipe.yaml").write_text(printed.stdout)
    fit = run_cli("fit", "--config", "recipe.yaml", *TINY, *FAST, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    saved = yaml.safe_load((tmp_path / "runs/mlp/version_0/config.yaml").read_text())
    assert saved["model"]["init_args"]["hidden_sizes"] == [8]
    assert saved["model"]["init_args"]["optimizer"]["class_path"] == "torch.optim.AdamW"


def test_lightnings_own_optimizer_options_are_gone_and_the_models_are_recorded(tmp_path) -> None:
    auto = run_cli("fit", "--model", "mlp", "--optimizer", "Adam", cwd=tmp_path)
    assert auto.returncode == 2 and "unrecognized arguments: --optimizer" in auto.stderr
    fit = run_cli("fit", "--model", "mlp", "--data", "digits", "--model.optimizer", "AdamW",
                  "--model.optimizer.weight_decay=0.05", "--model.lr_scheduler",
                  "lit_modules.optimization.OneCycle", *TINY, *FAST, cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    hparams = yaml.safe_load((tmp_path / "runs/mlp/version_0/hparams.yaml").read_text())
    assert hparams["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert hparams["optimizer"]["init_args"]["weight_decay"] == 0.05
    assert hparams["lr_scheduler"]["class_path"] == "lit_modules.optimization.OneCycle"
    assert "momentum" not in hparams and "scheduler" not in hparams


# ------------------------------------------------- Lightning's own flags with litzoo's defaults


def test_without_a_logger(tmp_path) -> None:
    fit = run_cli("fit", "--model", "linear_regression", "--trainer.logger=false", *TINY, *FAST,
                  cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert not (tmp_path / "config.yaml").exists()  # no stray file in the working directory
    run = tmp_path / "runs" / "linear_regression"
    for produced in ("config.yaml", "learning_curve.png", "checkpoints/best.ckpt"):
        assert (run / produced).is_file(), produced


def test_without_checkpointing(tmp_path) -> None:
    fit = run_cli("fit", "--model", "linear_regression", "--trainer.enable_checkpointing=false",
                  *TINY, *FAST, cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert not list(tmp_path.rglob("*.ckpt"))
    assert (tmp_path / "runs/linear_regression/version_0/learning_curve.png").is_file()


def test_with_a_tensorboard_logger(tmp_path) -> None:
    fit = run_cli("fit", "--model", "linear_regression", "--trainer.logger=TensorBoardLogger",
                  "--trainer.logger.save_dir=tb", *TINY, *FAST, cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    run = tmp_path / "tb" / "linear_regression" / "version_0"  # the run name carries over
    assert list(run.glob("events.out.tfevents.*")) and (run / "learning_curve.png").is_file()


def test_progress_bar_and_the_end_of_fit_say_what_matters(tmp_path) -> None:
    fit = run_cli("fit", "--model", "mlp", "--data", "digits", "--trainer.max_epochs=2",
                  "--trainer.enable_model_summary=false", cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    bar = fit.stdout  # tqdm writes the bar to stdout
    assert "train/loss=" in bar and "val/acc=" in bar and "v_num" not in bar
    best = tmp_path / "runs/mlp/version_0/checkpoints/best.ckpt"
    score = torch.load(best, weights_only=True)["callbacks"]
    (state,) = [v for k, v in score.items() if "val/acc" in k]
    assert (
        f"best val/acc {float(state['best_model_score']):.4f}: {best.relative_to(tmp_path)}"
        in fit.stdout
    )


def test_info_describes_datamodules_and_keeps_its_table_whole(tmp_path) -> None:
    result = run_cli("info", "time_machine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kind: token_windows" in result.stdout and "--data.num_steps" in result.stdout
    table = result.stdout.split("option", 1)[1].splitlines()[1:]
    assert table and all(line.startswith(("--data.", " ")) for line in table), table
    digits = " ".join(run_cli("info", "digits", cwd=tmp_path).stdout.split())
    assert "no download. A fixed-seed test split is held out first" in digits  # not cut mid-phrase


# ----------------------------------------------------------------------------- plug-ins

PLUGINS = {
    "LITZOO_PLUGINS": "dims_plugin,required_arg_plugin,colliding_plugin",
    "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "plugins"), str(REPO)]),
}


def test_plugins_through_the_command_line(tmp_path) -> None:
    listed = run_cli("list", cwd=tmp_path, env=PLUGINS)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "needs_width" in rows and "- (info NAME says why)" in rows["needs_width"]
    assert "instance_dims_regressor" in rows and rows["lenet"].split()[1] == "cnn"
    assert "half_registered" not in rows
    assert "warning: plug-in 'colliding_plugin'" in listed.stderr

    fit = run_cli(
        "fit", "--model", "instance_dims_regressor", *TINY, *FAST, cwd=tmp_path, env=PLUGINS
    )
    assert fit.returncode == 0, fit.stderr
    hparams = yaml.safe_load(
        (tmp_path / "runs/instance_dims_regressor/version_0/hparams.yaml").read_text()
    )
    assert hparams["num_inputs"] == 5  # set in the datamodule's __init__, linked into the model

    missing = run_cli("fit", "--model", "needs_width", *TINY, *FAST, cwd=tmp_path, env=PLUGINS)
    assert (
        missing.returncode == 2 and "width" in missing.stderr and "Traceback" not in missing.stderr
    )
    given = run_cli("fit", "--model", "needs_width", "--model.width=4", *TINY, *FAST, cwd=tmp_path,
                    env=PLUGINS)  # fmt: skip
    assert given.returncode == 0, given.stderr


def test_plugins_through_the_contract_test(tmp_path) -> None:
    contract = REPO / "tests" / "test_registry_contract.py"
    tests = [
        f"{contract}::{test}[{name}]"
        for test in ("test_model_builds_at_its_default_settings", "test_model_contract")
        for name in ("instance_dims_regressor", "needs_width", "lenet")
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **PLUGINS},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout  # lenet is still the built-in one
    assert "colliding_plugin" in result.stdout  # reported as a warning, collection went on
