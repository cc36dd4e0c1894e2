"""litzoo PPO on Pendulum-v1 (configs/rl/pendulum.yaml, 205k steps): the mean return of 10
deterministic evaluation episodes after every 20k steps, the final one and the best one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ppo_vs_sb3 import run_litzoo  # noqa: E402
from bench.report import write_section  # noqa: E402

BAR = -250.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=1)
    seeds = range(parser.parse_args().seeds)
    torch.set_num_threads(1)
    rows = [
        "| seed | return every 20k steps | final (205k) | best | train s |",
        "|---|---|---|---|---|",
    ]
    for seed in seeds:
        curve = run_litzoo("pendulum.yaml", seed)
        returns = [r for _, _, r in curve]
        rows.append(
            f"| {seed} | {', '.join(f'{r:.0f}' for r in returns)} | {returns[-1]:.1f} "
            f"| {max(returns):.1f} | {curve[-1][0]:.0f} |"
        )
        print(rows[-1], flush=True)
    write_section(
        "ppo_pendulum",
        "PPO on Pendulum-v1",
        f"{__doc__.strip()}\n\nAim: >= {BAR:.0f} within 200k steps.\n\n" + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
