"""Benchmark the energy-based model's CPU recipe as a user runs it, and its training step's cost.

    python bench/ebm.py [--config configs/ebm/ebm_cpu.yaml] [--max_epochs N] [--max_minutes M]

1. trains the judge (LeNet on MNIST, configs/ebm/mnist_judge.yaml) unless its checkpoint exists;
2. `cli.py fit --config <recipe>`, then `cli.py test` on the best checkpoint: AUROC of the score
   against Fashion-MNIST and uniform noise, the judge's mean confidence on 256 samples and the
   digit classes they cover; `cli.py predict` draws a 100-sample grid;
3. writes the val/cdiv and score curves (docs/ebm/curves.png) and copies the sample grid and
   the last chain picture to docs/ebm/;
4. times a training step through `cli.py fit` (the CLI's trainer, logger and callbacks) against
   a plain PyTorch loop of the same step (same network, sampler, buffer and loss), alternating
   in one process; and measures the machine's fp32 matmul GFLOP/s.

--max_epochs / --max_minutes shorten the fit for a check (the learning-rate schedule then
follows --max_epochs; --max_minutes cuts it short).
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.flops import matmul_flops  # noqa: E402
from bench.report import write_section  # noqa: E402
from callbacks.plotting import pyplot  # noqa: E402
from cli import LitzooCLI  # noqa: E402
from lit_modules.ebm import (  # noqa: E402
    EnergyNet,
    ReplayBuffer,
    contrastive_divergence_loss,
    langevin_sample,
)

JUDGE_CONFIG = "configs/ebm/mnist_judge.yaml"
JUDGE_DIR = REPO / "runs" / "mnist_judge"
DOCS = REPO / "docs" / "ebm"
QUIET = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")


def cli(*args: str) -> float:
    """Run `python cli.py ARGS` from the repository root; returns its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "cli.py", *args, *QUIET], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"cli.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def run_dirs(model: str) -> set[Path]:
    return set((REPO / "runs" / model).glob("version_*"))


def new_run_dir(model: str, before: set[Path]) -> Path:
    (created,) = run_dirs(model) - before
    return created


def read_metrics(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Every logged series of the run's metrics.csv as (global step, value) pairs."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value and "/" in key:
                    series[key].append((float(row["step"]), float(value)))
    return series


def plot_curves(
    series: dict[str, list[tuple[float, float]]], steps_per_epoch: int, out_png: Path
) -> Path:
    """val/cdiv beside the training negatives' cdiv, and the mean scores of real and noise
    images (val) and of real images and negatives (train), against epochs trained."""
    plt = pyplot()

    def epochs(key: str) -> list[float]:
        return [(step + 1) / steps_per_epoch for step, _ in series[key]]

    fig, (cdiv_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    panels = {
        cdiv_ax: ("val/cdiv", "train/cdiv"),
        score_ax: ("val/score_real", "val/score_noise", "train/score_real", "train/score_fake"),
    }
    for ax, keys in panels.items():
        for key in keys:
            if series.get(key):
                values = [y for _, y in series[key]]
                ax.plot(epochs(key), values, label=key, lw=1, marker="o" if "val/" in key else "")
        ax.set(xlabel="epochs trained")
        ax.legend(fontsize=8)
    cdiv_ax.set_title("contrastive divergence: mean s(noise or fake) - mean s(real)", fontsize=9)
    score_ax.set_title("mean score s(x) = -E(x)", fontsize=9)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def ensure_judge(retrain: bool) -> float:
    """Train the judge unless its checkpoint exists; returns its MNIST test accuracy."""
    best = JUDGE_DIR / "best.ckpt"
    if retrain or not best.is_file():
        shutil.rmtree(JUDGE_DIR, ignore_errors=True)  # else ModelCheckpoint writes best-v1.ckpt
        cli("fit", "--config", JUDGE_CONFIG)
    before = run_dirs("lenet")
    cli("test", "--config", JUDGE_CONFIG, "--ckpt_path", str(best))
    return read_metrics(new_run_dir("lenet", before))["test/acc"][-1][1]


def fit_and_evaluate(config: str, overrides: list[str], steps_per_epoch: int) -> dict[str, object]:
    before = run_dirs("ebm")
    wall = cli("fit", "--config", config, *overrides)
    fit_dir = new_run_dir("ebm", before)
    last = torch.load(fit_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best_path = fit_dir / "checkpoints" / "best.ckpt"
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    series = read_metrics(fit_dir)

    before = run_dirs("ebm")
    cli("test", "--config", config, "--ckpt_path", str(best_path))
    tested = {k: v[-1][1] for k, v in read_metrics(new_run_dir("ebm", before)).items()}

    before = run_dirs("ebm")
    cli("predict", "--config", config, "--ckpt_path", str(best_path), "--data.predict_noise", "100")
    grid = shutil.copy(new_run_dir("ebm", before) / "samples.png", DOCS / "samples.png")
    chains = sorted(
        (fit_dir / "chains").glob("epoch_*.png"), key=lambda p: int(p.stem.split("_")[1])
    )
    chain = shutil.copy(chains[-1], DOCS / "chain.png") if chains else None
    return {
        "wall": wall,
        "steps": last["global_step"],
        "epochs": last["global_step"] / steps_per_epoch,
        "best_epochs": best["global_step"] / steps_per_epoch,
        "test": tested,
        "curves": plot_curves(series, steps_per_epoch, DOCS / "curves.png"),
        "grid": Path(grid),
        "chain": Path(chain) if chain else None,
        "fit_dir": fit_dir,
        "sample_steps": last["hyper_parameters"]["sample_steps"],
        "langevin_steps": last["hyper_parameters"]["langevin_steps"],
    }


class StepTimer(L.Callback):
    """perf_counter at every training batch's start: the spacing is one whole loop iteration
    (data, hooks, step, optimizer), without the fit's fixed start and end costs."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, *args: object) -> None:
        self.starts.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        return (self.starts[-1] - self.starts[1]) / (len(self.starts) - 2)  # after a warm-up


def fit_seconds_per_step(config: str, steps: int, workdir: Path) -> tuple[float, LitzooCLI]:
    """Seconds per training step of `cli.py fit --config` (validation off, as the plain loop has
    none; `langevin_steps` Langevin steps in every step, the ramp's start); also the CLI."""
    cli_run = LitzooCLI(
        ["--config", config, f"--trainer.max_steps={steps + 1}", "--trainer.limit_val_batches=0",
         f"--trainer.default_root_dir={workdir}", "--trainer.callbacks=null",
         "--model.langevin_steps_final=null", *QUIET],
        run=False,
    )  # fmt: skip
    timer = StepTimer()
    cli_run.trainer.callbacks.append(timer)
    cli_run.trainer.fit(cli_run.model, cli_run.datamodule)
    return timer.seconds_per_step(), cli_run


def plain_seconds_per_step(cli_run, steps: int) -> float:
    """The same training step written as a plain PyTorch loop over the same in-memory images."""
    hp, data = cli_run.model.hparams, cli_run.datamodule
    low, high = hp.value_range
    images = data.splits["train"].tensors[0]
    shape = (hp.in_channels, hp.image_size, hp.image_size)
    net = EnergyNet(hp.in_channels, hp.image_size, hp.channels or [16, 32, 64, 64], hp.hidden)
    buffer = ReplayBuffer(hp.buffer_size, shape, hp.restart_fraction, hp.value_range, seed=1)
    generator = torch.Generator().manual_seed(2)
    optimizer = torch.optim.Adam(net.parameters(), lr=hp.lr)
    starts = []
    for index in torch.randperm(len(images)).split(data.batch_size)[: steps + 1]:
        starts.append(time.perf_counter())
        real = F.pad(images[index].float().div_(data.pixel_max), (data.pad,) * 4)
        real = real.mul_(high - low).add_(low)
        real = (real + hp.data_noise * torch.randn(real.shape, generator=generator)).clamp_(
            low, high
        )
        fake, _ = langevin_sample(
            net, buffer.sample(len(real)), hp.langevin_steps, hp.step_size, hp.langevin_noise,
            hp.grad_clip, hp.value_range, generator,
        )  # fmt: skip
        buffer.push(fake)
        real_scores, fake_scores = net(torch.cat((real, fake))).split(len(real))
        loss = contrastive_divergence_loss(real_scores, fake_scores, hp.alpha)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    starts.append(time.perf_counter())
    return (starts[-1] - starts[1]) / (len(starts) - 2)


def time_steps(config: str, steps: int, repeats: int) -> tuple[list[float], list[float], int]:
    """Alternating repeats of (cli fit, plain loop), seconds per step each; and the recipe's
    training steps per epoch."""
    import tempfile

    fit_times, plain_times = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(repeats):
            seconds, cli_run = fit_seconds_per_step(config, steps, Path(workdir))
            fit_times.append(seconds)
            plain_times.append(plain_seconds_per_step(cli_run, steps))
    data = cli_run.datamodule
    return fit_times, plain_times, math.ceil(len(data.splits["train"]) / data.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ebm/ebm_cpu.yaml")
    parser.add_argument("--max_epochs", type=int, help="override the recipe's epochs (a check)")
    parser.add_argument("--max_minutes", type=int, help="stop the fit after this many minutes")
    parser.add_argument(
        "--retrain_judge", action="store_true", help="even if its checkpoint exists"
    )
    parser.add_argument("--timing_steps", type=int, default=20)
    parser.add_argument("--timing_repeats", type=int, default=3)
    opts = parser.parse_args()
    overrides = []
    if opts.max_epochs:
        overrides.append(f"--trainer.max_epochs={opts.max_epochs}")
    if opts.max_minutes:
        hours, minutes = divmod(opts.max_minutes, 60)
        overrides.append(f"--trainer.max_time=00:{hours:02d}:{minutes:02d}:00")

    gflops = matmul_flops() / 1e9
    judge_accuracy = ensure_judge(opts.retrain_judge)
    DOCS.mkdir(parents=True, exist_ok=True)
    fit_times, plain_times, steps_per_epoch = time_steps(
        opts.config, opts.timing_steps, opts.timing_repeats
    )
    run = fit_and_evaluate(opts.config, overrides, steps_per_epoch)
    ratios = [a / b for a, b in zip(fit_times, plain_times, strict=True)]
    test = run["test"]
    rel = lambda path: path.relative_to(REPO).as_posix()  # noqa: E731
    rows = [
        f"Recipe `{opts.config}`; the machine's fp32 matmul: **{gflops:.1f} GFLOP/s** on "
        f"{torch.get_num_threads()} threads (bench/flops.py's measurement).",
        "",
        f"- Budget: **{run['epochs']:.1f} epochs, {run['steps']} training steps, "
        f"{run['wall'] / 60:.1f} min** of `cli.py fit` (start-up, validation and pictures "
        f"included); tested: `best.ckpt`, the lowest val/cdiv, after {run['best_epochs']:.1f} "
        "epochs.",
        f"- AUROC of the score, MNIST test set against Fashion-MNIST's: "
        f"**{test['test/auroc_ood']:.4f}** (bar 0.95); against uniform noise: "
        f"**{test['test/auroc_noise']:.4f}** (bar 0.99).",
        f"- Judge (LeNet on MNIST, {JUDGE_CONFIG}, test accuracy {judge_accuracy:.4f}) on 256 "
        f"samples after {run['sample_steps']} Langevin steps from noise: mean "
        f"confidence **{test['test/judge_confidence']:.3f}**, **{int(test['test/judge_classes'])} "
        f"of 10** digit classes covered (bar 8).",
        f"- Mean scores on the test sets: MNIST {test['test/score_real']:.3f}, Fashion-MNIST "
        f"{test['test/score_ood']:.3f}, uniform noise {test['test/score_noise']:.3f}; test "
        f"cdiv {test['test/cdiv']:.3f}.",
        f"- Samples (100, `cli.py predict --data.predict_noise 100`): `{rel(run['grid'])}`"
        + (f"; the last chain picture: `{rel(run['chain'])}`" if run["chain"] else "")
        + f". Curves: `{rel(run['curves'])}`.",
        "",
        f"![val/cdiv and scores]({rel(run['curves']).removeprefix('docs/')})",
        f"![samples]({rel(run['grid']).removeprefix('docs/')})",
        "",
        f"Seconds per training step (with {run['langevin_steps']} Langevin steps; "
        f"{opts.timing_steps} steps after one warm-up, validation off, "
        f"{opts.timing_repeats} alternating repeats in one process): `cli.py fit` "
        f"{statistics.median(fit_times):.3f} s, plain PyTorch loop of the same step "
        f"{statistics.median(plain_times):.3f} s; ratio fit / plain **{statistics.median(ratios):.3f}** "
        f"(per repeat: {', '.join(f'{r:.3f}' for r in ratios)}; bar 1.05).",
    ]
    write_section(
        "ebm",
        "Energy-based model on MNIST (CPU recipe)",
        "Generative Deep Learning ch. 7's EBM trained by `cli.py fit`, then `cli.py test` on its "
        "best checkpoint (the checkpoint monitor, val/cdiv) with Fashion-MNIST as the "
        "out-of-distribution test set. "
        "The run directory was "
        f"`{rel(run['fit_dir'])}`.\n\n" + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
