"""Every recipe shipped in configs/ parses and builds its model and data with the settings it
names, so a recipe is not left behind when a model's arguments change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from cli import LitzooCLI
from registry import DATAMODULES, MODELS

RECIPES = sorted((REPO / "configs").rglob("*.yaml"))


def _plain_settings(section: dict) -> dict:
    """The recipe's numbers, strings and lists for a model or datamodule (not the optimizer
    and schedule, which are classes)."""
    return {
        key: value
        for key, value in (section.get("init_args") or {}).items()
        if key not in ("optimizer", "lr_scheduler")
    }


def _as_written(value):
    return list(value) if isinstance(value, tuple) else value


def test_there_are_recipes_of_every_family() -> None:
    assert {p.parent.name for p in RECIPES} >= {
        "linear",
        "cnn",
        "vit",
        "rnn",
        "rl",
        "seq2seq",
        "ebm",
    }


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_builds_with_its_settings(path: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = yaml.safe_load(path.read_text())
    cli = LitzooCLI(["--config", str(path)], run=False)
    assert type(cli.model) is MODELS.entry(recipe["model"]["class_path"]).cls
    assert type(cli.datamodule) is DATAMODULES.entry(recipe["data"]["class_path"]).cls
    for key, value in _plain_settings(recipe["model"]).items():
        assert _as_written(cli.model.hparams[key]) == value, key
    for key, value in _plain_settings(recipe["data"]).items():
        assert _as_written(cli.datamodule.hparams[key]) == value, key
