"""Image classifier recipes on Fashion-MNIST through litzoo's CLI: test accuracy (checkpoint
best on validation), fit wall time and training images per second, for each
configs/<family>/<recipe>.yaml. Named for the CNNs it began with, it runs the Vision Transformer's
recipes too (--family vit); each family has its own section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from cli import LitzooCLI  # noqa: E402

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
BARS = {  # recipe -> (bar on test accuracy, bar on wall time); d2l's recipe has a reference instead
    "lenet": "plain-PyTorch run of d2l's recipe: 0.738 after 10 epochs",
    "lenet_fast": ">= 0.91 in <= 5 min",
    "resnet18_fast": ">= 0.93 in <= 30 min",
}


def run(family: str, recipe: str, seed: int) -> str:
    config = str(ROOT / "configs" / family / f"{recipe}.yaml")
    cli = LitzooCLI(["--config", config, f"--seed_everything={seed}", *QUIET], run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    accuracy = cli.trainer.test(cli.model, cli.datamodule, ckpt_path="best", verbose=False)[0][
        "test/acc"
    ]
    images = cli.trainer.current_epoch * len(cli.datamodule.splits["train"])
    return (
        f"| `configs/{family}/{recipe}.yaml` | {seed} | {cli.trainer.current_epoch} | {accuracy:.4f} | {seconds / 60:.1f} "
        f"| {images / seconds:,.0f} | {BARS.get(recipe, '')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--family", choices=["cnn", "vit"], default="cnn")
    parser.add_argument("--recipes", nargs="+", help="default: lenet lenet_fast, or vit_fast")
    parser.add_argument("--seeds", type=int, default=1, help="runs per recipe, seeds 0..N-1")
    opts = parser.parse_args()
    recipes = opts.recipes or {"cnn": ["lenet", "lenet_fast"], "vit": ["vit_fast"]}[opts.family]
    if opts.seeds < 1:
        parser.error("--seeds must be >= 1")
    rows = [
        "| recipe | seed | epochs | test acc | fit min | train images/s | bar or reference |",
        "|---|---|---|---|---|---|---|",
    ]
    rows += [run(opts.family, recipe, seed) for recipe in recipes for seed in range(opts.seeds)]
    write_section(
        f"{opts.family}_recipes",
        f"{'CNN' if opts.family == 'cnn' else 'Vision Transformer'} recipes on Fashion-MNIST",
        "Fit time includes the per-epoch validation on 5k images; test accuracy is on the official "
        "10k test set with the checkpoint that was best on validation.\n\n" + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
