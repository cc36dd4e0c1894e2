"""Test settings: datasets come from the mirror (CI points LITZOO_MIRROR at ../shared/data) and
land in a per-session cache, so tests never touch the network or the user's cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("LITZOO_MIRROR", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path(os.environ.get("LITZOO_DATA") or tmp_path_factory.mktemp("litzoo-data"))
    os.environ["LITZOO_DATA"] = str(cache)
    return cache


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    """Run `python cli.py ARGS` in `cwd` (runs/ lands there) and return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def quiet_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar, summary or sanity check, for
    in-process tests; keyword arguments override or add Trainer settings."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tmp_path,
    }
    return L.Trainer(**{**defaults, **kwargs})
