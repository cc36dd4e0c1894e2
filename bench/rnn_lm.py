"""Benchmark the strong recipes of the RNN language models on The Time Machine.

Each model is trained, tested and sampled through the command line exactly as a user would
(configs/rnn/<model>_strong.yaml), so the figures are those of the shipped recipes:

    python bench/rnn_lm.py [--models rnn gru lstm deep_gru]

The table gives the best validation perplexity (the checkpoint kept), the test perplexity of
that checkpoint, the wall time of `fit` and a greedy sample from "time traveller".
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402

DEFAULT_MODELS = ("rnn", "gru", "lstm", "deep_gru")
PREFIX = "time traveller"


def cli(*args: str) -> None:
    """Run `python cli.py ARGS` from the repository root; a failure stops the benchmark."""
    result = subprocess.run(
        [sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"cli.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def new_run_dir(model: str, before: set[Path]) -> Path:
    """The run directory that the last command created under runs/<model>/."""
    (created,) = set((REPO / "runs" / model).glob("version_*")) - before
    return created


def run_dirs(model: str) -> set[Path]:
    return set((REPO / "runs" / model).glob("version_*"))


def metric(run_dir: Path, key: str, best: str = "min") -> float:
    """The best (min or max) value of `key` logged in the run's metrics.csv."""
    with open(run_dir / "metrics.csv", newline="") as f:
        values = [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    return min(values) if best == "min" else max(values)


def bench_model(model: str) -> dict[str, str]:
    config = f"configs/rnn/{model}_strong.yaml"
    before = run_dirs(model)
    start = time.perf_counter()
    cli("fit", "--config", config)
    wall = time.perf_counter() - start
    fit_dir = new_run_dir(model, before)
    best = fit_dir / "checkpoints" / "best.ckpt"

    before = run_dirs(model)
    cli("test", "--config", config, "--ckpt_path", str(best))
    test_dir = new_run_dir(model, before)

    before = run_dirs(model)
    cli(
        "predict", "--config", config, "--ckpt_path", str(best), "--data.prefix", PREFIX,
        "--data.num_chars", "100", "--data.temperature", "0",
    )  # fmt: skip
    sample = (new_run_dir(model, before) / "generated.txt").read_text().strip()
    return {
        "model": model,
        "val ppl": f"{metric(fit_dir, 'val/ppl'):.2f}",
        "test ppl": f"{metric(test_dir, 'test/ppl'):.2f}",
        "fit wall time": f"{wall / 60:.1f} min",
        "greedy sample": f"`{sample}`",
    }


def markdown_table(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = [
        "| " + " | ".join(header) + " |",
        "| "
        + " | ".join("---" if h in ("model", "greedy sample") else "---:" for h in header)
        + " |",
    ]
    return "\n".join(lines + ["| " + " | ".join(row[h] for h in header) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    opts = parser.parse_args()
    rows = []
    for model in opts.models:
        rows.append(bench_model(model))
        print(rows[-1], flush=True)
    write_section(
        "rnn_lm",
        "RNN language models on The Time Machine (strong recipes)",
        "configs/rnn/<model>_strong.yaml; characters, contiguous 80/10/10 train/val/test split by "
        "position in the book, perplexity per character (val: best checkpoint's, test: that "
        "checkpoint on the test part). Bar: each fit <= 10 minutes on 2 cores; GRU and LSTM beat the "
        "plain RNN on held-out perplexity.\n\n" + markdown_table(rows),
    )


if __name__ == "__main__":
    main()
