"""Fit overhead: softmax regression on Fashion-MNIST trained by litzoo's fit (the CLI's
trainer with its logger, checkpoints and callbacks) against a plain PyTorch loop over the
same in-memory tensors, in the same process, same epochs, batch size and optimizer.
Both validate once per epoch; each side is timed over several alternating repeats, and the
ratio is the median of the repeats' own ratios."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from cli import LitzooCLI  # noqa: E402

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def plain_loop(
    model: nn.Module, data, epochs: int, batch_size: int, lr: float, momentum: float
) -> float:
    """The loop a researcher would write by hand; returns the last validation accuracy."""
    x_train, y_train = data.splits["train"].tensors
    x_val, y_val = data.splits["val"].tensors
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_train)).split(batch_size):
            loss = F.cross_entropy(model(x_train[idx].float().div_(255)), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.long)
        with torch.no_grad():
            for start in range(0, len(x_val), batch_size):
                logits = model(x_val[start : start + batch_size].float().div_(255))
                correct += (logits.argmax(-1) == y_val[start : start + batch_size]).sum()
        accuracy = correct.item() / len(x_val)
    return accuracy


def litzoo_fit(model_args: list[str], epochs: int, workdir: str) -> tuple[LitzooCLI, float]:
    cli = LitzooCLI(
        [
            *model_args,
            f"--trainer.max_epochs={epochs}",
            f"--trainer.default_root_dir={workdir}",
            *QUIET,
        ],
        run=False,
    )
    cli.datamodule.setup("fit")  # both sides start from tensors in memory
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli, time.perf_counter() - start


def bare_fit(model: L.LightningModule, data: L.LightningDataModule, epochs: int) -> float:
    """Lightning's own floor: a Trainer with no logger, callbacks, checkpoints or sanity check."""
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model, data)
    return time.perf_counter() - start


def measure(name: str, model_args: list[str], epochs: int, repeats: int) -> str:
    litzoo_times, plain_times, bare_times = [], [], []
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)  # runs/ of the timed fits land in a scratch directory
        for _ in range(repeats):
            cli, seconds = litzoo_fit(model_args, epochs, workdir)
            litzoo_times.append(seconds)
            litzoo_acc = float(cli.trainer.callback_metrics["val/acc"])
            hp = cli.model.hparams
            init_args = {  # the architecture's settings: no CLI bookkeeping, no optimizer spec
                k: v
                for k, v in hp.items()
                if not k.startswith("_") and k not in ("optimizer", "lr_scheduler")
            }
            momentum = hp.optimizer["init_args"].get("momentum", 0.0)
            twin = type(cli.model)(**init_args).net  # same architecture and init scheme, untrained
            start = time.perf_counter()
            plain_acc = plain_loop(
                twin, cli.datamodule, epochs, cli.datamodule.batch_size, hp.lr, momentum
            )
            plain_times.append(time.perf_counter() - start)
            bare_times.append(bare_fit(type(cli.model)(**init_args), cli.datamodule, epochs))
        os.chdir(ROOT)
    litzoo_s, plain_s = statistics.median(litzoo_times), statistics.median(plain_times)
    bare_s = statistics.median(bare_times)
    # Each repeat's own ratio: the machine's speed drifts between repeats more than within one.
    ratio = statistics.median(a / b for a, b in zip(litzoo_times, plain_times, strict=True))
    steps = epochs * math.ceil(len(cli.datamodule.splits["train"]) / cli.datamodule.batch_size)
    plain_ms, floor_ms = 1000 * plain_s / steps, 1000 * (bare_s - plain_s) / steps
    return (
        f"| {name} | {epochs} | {plain_s:.2f} ({plain_ms:.2f} ms/step) "
        f"| {bare_s:.2f} ({bare_s / plain_s:.2f}x, +{floor_ms:.2f} ms/step) | {litzoo_s:.2f} "
        f"| **{ratio:.3f}x** | {plain_acc:.4f} / {litzoo_acc:.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    rows = [
        "| model | epochs | plain PyTorch s | bare Lightning Trainer s | litzoo fit s | ratio litzoo / plain "
        "| val acc plain / litzoo |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, args in (
        ("softmax_regression", ["--model=softmax_regression"]),
        ("lenet (batch 128)", ["--model=lenet", "--data.batch_size=128"]),
    ):
        rows += [
            measure(name, args, epochs, opts.repeats) for epochs in (opts.epochs, 2 * opts.epochs)
        ]
    write_section(
        "overhead",
        "Fit overhead against a plain PyTorch loop",
        "Fashion-MNIST (55k train / 5k val images held in memory as uint8), batch 256, SGD with the "
        "model's default lr and momentum. litzoo's side is `Trainer.fit` exactly as `python cli.py fit` "
        "builds it (CSV logger, best + last checkpoints every epoch, LR monitor, learning-curve PNG at "
        "the end, one sanity validation) minus the progress bar; the plain side is a hand-written loop "
        "with one host sync per epoch. The sides alternate; times are medians of the repeats, the "
        "ratio is the median of each repeat's litzoo / plain ratio. The run at "
        "twice the epochs separates litzoo's fixed costs (sanity validation, checkpoint files, the "
        "PNG) from its per-step cost. The bare-Trainer column is Lightning's "
        "automatic-optimization loop with every extra turned off (same module, same data): the "
        "floor any LightningModule pays per step (hook dispatch, the optimizer closure, the "
        "fetcher), which for a model whose whole step takes about a millisecond, like softmax "
        "regression, nearly doubles the time.\n\n" + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
