"""ResNet-18 training throughput as achieved FLOP/s, next to this machine's measured fp32
matmul FLOP/s, so the distance to the hardware limit is visible. FLOPs per training step
(forward + backward) are counted by torch.utils.flop_counter; the optimizer step is timed too."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from registry import get_model  # noqa: E402


def matmul_flops(n: int = 2048, repeats: int = 20) -> float:
    """Best-case fp32 FLOP/s: square matrix products, the most efficient kernel there is."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def training_flops(
    image_size: int, small_input: bool, channels_last: bool, batch: int, steps: int
) -> tuple[float, float]:
    """(FLOPs per training step, achieved FLOP/s) of ResNet-18 on 1-channel images."""
    model = get_model("resnet18", small_input=small_input, channels_last=channels_last)
    optimizer = model.configure_optimizers()
    x, y = torch.rand(batch, 1, image_size, image_size), torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return counter.get_total_flops(), counter.get_total_flops() / seconds


def layout_speedups(batch: int, steps: int, repeats: int) -> list[float]:
    """NHWC over NCHW training speed of resnet18_fast's network, one paired ratio per repeat
    (the two layouts alternate, so the machine's drift hits both)."""
    ratios = []
    for _ in range(repeats):
        nchw = training_flops(28, False, False, batch, steps)[1]
        nhwc = training_flops(28, False, True, batch, steps)[1]
        ratios.append(nhwc / nchw)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="of the layout comparison")
    opts = parser.parse_args()
    peak = matmul_flops()
    rows = [
        f"Measured fp32 matmul (2048 x 2048): **{peak / 1e9:.1f} GFLOP/s** on {torch.get_num_threads()} threads.",
        "",
        "| ResNet-18 input | batch | GFLOP per training step | achieved GFLOP/s | share of matmul FLOP/s | images/s |",
        "|---|---|---|---|---|---|",
    ]
    for size, small, channels_last, label in (
        (96, False, False, "96 px, d2l stem (7x7/2 + max-pool)"),
        (28, True, False, "28 px, 3x3/1 stem"),
        (28, False, False, "28 px, d2l stem (resnet18_fast's network)"),
        (28, False, True, "28 px, d2l stem, `channels_last: true` (resnet18_fast)"),
    ):
        flops, rate = training_flops(size, small, channels_last, opts.batch, opts.steps)
        rows.append(
            f"| {label} | {opts.batch} | {flops / 1e9:.1f} | {rate / 1e9:.1f} | {rate / peak:.0%} "
            f"| {opts.batch * rate / flops:.0f} |"
        )
    ratios = layout_speedups(opts.batch, opts.steps, opts.repeats)
    rows += [
        "",
        f"`channels_last` speed-up on resnet18_fast's network, NHWC / NCHW images per second "
        f"in {opts.repeats} alternating pairs: median **{statistics.median(ratios):.2f}x** "
        f"({', '.join(f'{r:.2f}' for r in ratios)}).",
    ]
    write_section(
        "flops", "ResNet-18 achieved FLOP/s against the machine's matmul FLOP/s", "\n".join(rows)
    )


if __name__ == "__main__":
    main()
