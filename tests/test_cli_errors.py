"""Bad input gets one clear paragraph on stderr and exit status 2, never a traceback, never a
half-made run directory, and never a silent substitute for what was asked (issue 12, sections
4 and 5). The messages name the command as the user invoked it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli
from jsonargparse import Namespace

from callbacks import PredictionWriter
from cli import main
from configs import flat_settings

QUIET = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")
TINY = (
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
)


def fails(capsys, *args: str) -> str:
    """Run the command in this process; it must exit 2 with one error paragraph, and return it."""
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    assert stopped.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    assert errors[0].startswith("litzoo: error: ")  # sys.argv[0] is pytest's, not cli.py
    return errors[0]


def no_run_directories(root: Path) -> bool:
    return not list(root.glob("runs/*/version_*")) and not list(root.glob("runs/*/config.yaml"))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A directory with one short mlp run on digits and one gru run on a little of the book."""
    root = tmp_path_factory.mktemp("trained")
    for args in (
        ("--model", "mlp", "--data", "digits"),
        ("--model", "gru", "--model.hidden_size=8", "--data.max_tokens=3000"),
    ):
        fit = run_cli("fit", *args, *TINY, *QUIET, cwd=root)
        assert fit.returncode == 0, fit.stderr
    return root


@pytest.mark.parametrize(
    ("model", "data", "can_take"),
    [
        ("gru", "fashion_mnist", "time_machine"),
        ("ppo", "fashion_mnist", "gym"),
        ("lenet", "time_machine", "digits, fashion_mnist, mnist"),
        ("linear_regression", "digits", "synthetic_regression"),
    ],
)
def test_data_a_model_cannot_take_is_refused_before_anything_is_built(
    capsys, workdir, model, data, can_take
) -> None:
    message = fails(capsys, "fit", "--model", model, "--data", data)
    assert f"Data it can take: {can_take}" in message
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"model:\n  class_path: mlp\n init_args: {}\n", "is not valid YAML at line 3"),
        (b"- model\n- data\n", "must be a mapping of settings"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not a text (YAML) file"),
    ],
)
def test_a_bad_config_file_is_named_with_its_line(capsys, workdir, content, expected) -> None:
    (workdir / "bad.yaml").write_bytes(content)
    message = fails(capsys, "fit", "--config", "bad.yaml")
    assert "bad.yaml" in message and expected in message


def test_an_unknown_config_names_the_recipes(capsys, workdir) -> None:
    assert "list --configs" in fails(capsys, "fit", "-c", "cnn/lenett")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--trainer.max_epochs", "-5"), "max_epochs"),
        (("--trainer.devices", "0"), "devices"),
        (("--early_stopping_patience", "-1"), "--early_stopping_patience -1"),
        (("--model.lr", "-1"), "lr must be a finite number > 0"),
        (("--model.optimizer.momentum", "-0.5"), "Invalid momentum value"),
        (("--model.hidden_sizes", "[0]"), "hidden_sizes[0] must be > 0"),
        (("--model.no_such_setting", "3"), "--model.no_such_setting 3"),
        (("--data.val_size", "1500"), "val_size=1500 leaves no training images"),  # setup()
        (
            ("--trainer.callbacks+=callbacks.EpisodeGif", "--trainer.callbacks.fps=0"),
            "fps and every must be >= 1",
        ),
    ],
)
def test_bad_settings_are_refused_and_leave_no_run(capsys, workdir, args, expected) -> None:
    message = fails(capsys, "fit", "--model", "mlp", "--data", "digits", *args, *QUIET)
    assert expected in message
    assert no_run_directories(workdir)


def test_an_unwritable_runs_directory_is_named(capsys, workdir) -> None:
    (workdir / "runs").write_text("a file where the runs directory should be")
    message = fails(capsys, "fit", "--model", "mlp", "--data", "digits", *TINY, *QUIET)
    assert str(workdir / "runs") in message and "run from a writable directory" in message


@pytest.mark.parametrize("what", ["a file", "a directory in a cache file's place"])
def test_an_unusable_data_cache_is_named_with_its_variable(
    capsys, workdir, monkeypatch, what
) -> None:
    cache = workdir / "cache"
    if what == "a file":
        cache.write_text("not a directory")
    else:
        (cache / "timemachine" / "timemachine.txt").mkdir(parents=True)
    monkeypatch.setenv("LITZOO_DATA", str(cache))
    message = fails(capsys, "fit", "--model", "gru", *TINY, *QUIET)
    assert "LITZOO_DATA" in message and str(cache) in message
    assert no_run_directories(workdir)


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_is_refused(capsys, workdir, subcommand) -> None:
    assert "--ckpt_path" in fails(capsys, subcommand, "--model", "mlp", "--data", "digits")


def test_a_setting_that_differs_from_the_checkpoint_is_refused(capsys, trained, monkeypatch):
    monkeypatch.chdir(trained)
    same = ("--model.optimizer", "SGD", "--model.lr", "0.1", "--trainer.enable_progress_bar=false")
    main(["test", "--model", "mlp", "--ckpt_path", "best", *same])  # equal settings are fine
    assert flat_settings(Namespace(betas=(0.9, 0.999))) == flat_settings({"betas": [0.9, 0.999]})
    message = fails(capsys, "fit", "--model", "mlp", "--ckpt_path", "last", "--model.lr", "0.5")
    assert "--model.lr=0.5 (checkpoint: 0.1)" in message
    optimizer = ("--model.optimizer.momentum", "0.9")
    assert "optimizer.init_args.momentum=0.9" in fails(
        capsys, "test", "--model", "mlp", "--ckpt_path", "best", *optimizer
    )


def test_last_and_best_look_only_at_runs_on_the_named_data(capsys, trained, monkeypatch):
    monkeypatch.chdir(trained)
    message = fails(capsys, "test", "--model", "mlp", "--data", "mnist", "--ckpt_path", "best")
    assert "no best.ckpt trained on datamodules.images.MNISTData" in message


def test_a_checkpoint_is_evaluated_on_the_data_it_was_trained_on(trained) -> None:
    (checkpoint,) = trained.glob("runs/mlp/version_0/checkpoints/best.ckpt")
    test = run_cli("test", "--ckpt_path", str(checkpoint), *QUIET, cwd=trained)
    assert test.returncode == 0, test.stderr
    newest = max(trained.glob("runs/mlp/version_*"), key=lambda p: p.stat().st_mtime)
    assert "class_path: datamodules.images.DigitsData" in (newest / "config.yaml").read_text()
    assert "test/acc" in test.stdout


def test_a_check_in_a_dataloader_is_a_clear_error(trained) -> None:
    predict = run_cli("predict", "--model", "gru", "--ckpt_path", "best", "--data.prefix", "  ",
                      "--data.max_tokens=3000", *QUIET, cwd=trained)  # fmt: skip
    assert predict.returncode == 2 and "Traceback" not in predict.stderr
    assert "python cli.py: error: prefix '  ' has no letters" in predict.stderr
    assert len(list(trained.glob("runs/gru/version_*"))) == 1  # the fit's, nothing new


def test_messages_name_the_command_as_invoked(tmp_path) -> None:
    as_script = run_cli("fit", "--model", "lenett", cwd=tmp_path)
    assert (
        "python cli.py: error:" in as_script.stderr and "`python cli.py list`" in as_script.stderr
    )
    code = "import sys; sys.argv[0] = 'litzoo'; import cli; cli.main(sys.argv[1:])"
    import subprocess

    as_tool = subprocess.run(
        [sys.executable, "-c", code, "fit", "--model", "lenett"],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert as_tool.returncode == 2 and "litzoo: error:" in as_tool.stderr
    assert "`litzoo list`" in as_tool.stderr and "Traceback" not in as_tool.stderr


def test_predictions_are_indexed_by_the_input_not_the_row(tmp_path) -> None:
    """Under DDP each rank predicts a shard: its rows carry the inputs' own indices."""

    class Shard:  # what the writer reads from a trainer on rank 1 of 2
        log_dir, default_root_dir, global_rank, world_size = str(tmp_path), str(tmp_path), 1, 2
        datamodule = type("Data", (), {"class_names": ("no", "yes")})()

    probabilities = [torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[0.6, 0.4]])]
    PredictionWriter().write_on_epoch_end(Shard(), None, probabilities, [[[7, 3], [5]]])
    rows = (tmp_path / "predictions_rank1.csv").read_text().splitlines()
    assert rows == [
        "index,predicted,p_no,p_yes",
        "7,no,0.900000,0.100000",
        "3,yes,0.200000,0.800000",
        "5,no,0.600000,0.400000",
    ]


def test_predictions_without_class_names_are_written_too(tmp_path) -> None:
    fit = run_cli("fit", "--model", "linear_regression", *TINY, *QUIET, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    predict = run_cli("predict", "--model", "linear_regression", "--ckpt_path", "best", *QUIET,
                      cwd=tmp_path)  # fmt: skip
    assert predict.returncode == 0, predict.stderr
    (written,) = tmp_path.glob("runs/linear_regression/version_*/predictions.csv")
    header, *rows = written.read_text().splitlines()
    assert header == "index,output_0" and len(rows) == 1000
    assert "wrote 1000 predictions" in predict.stdout + predict.stderr


def test_a_full_disk_names_the_file_it_could_not_write(capsys, workdir, monkeypatch) -> None:
    def no_space(obj: object, f: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    message = fails(capsys, "fit", "--model", "linear_regression", *TINY, *QUIET)
    assert "No space left on device" in message and "checkpoints/best.ckpt" in message
    assert "run from a writable directory with free space" in message
    assert not list(workdir.rglob("*.tmp"))  # nothing half-written
