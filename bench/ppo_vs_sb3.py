"""litzoo PPO against Stable-Baselines3 PPO on CartPole-v1, both with rl-baselines3-zoo's
hyperparameters (8 envs x 32 steps, batch 256, 20 epochs, gamma 0.98, lambda 0.8, lr 1e-3
and clip range 0.2 annealed), the same seeds each, 100k steps.
Every 2048 steps, after training on them, both are scored by the mean return of 20
deterministic episodes from the same 20 seeded start states; the table gives the training
wall-clock seconds (evaluation time excluded for both) and environment steps until that mean first reaches 475, and the final one.

Both run in this one process with `torch.set_num_threads(1)` (small networks; fair to both).
stable-baselines3 is needed here only: pip install stable-baselines3.

With --until-solved, each run stops at its first solve instead: that gives the distribution of
steps and seconds to 475 over many seeds, which three seeds cannot show."""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from cli import LitzooCLI  # noqa: E402

SOLVED = 475.0
EVAL_EPISODES = 20
EVAL_EVERY = 2048  # env steps; litzoo's config validates after 8 rollouts of 8 x 32 steps
TOTAL_STEPS = 100_352  # 49 x 2048: SB3 and litzoo both stop on a rollout boundary
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

Curve = list[tuple[float, int, float]]  # (training seconds, env steps, mean eval return)


class EvalCurve(L.Callback):
    """Records (training seconds, env steps, val/return) at every validation of fit; the
    seconds spent validating are not counted."""

    def __init__(self) -> None:
        self.points: Curve = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start, self.paused = time.perf_counter(), 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        seconds = self.val_start - self.start - self.paused
        self.paused += time.perf_counter() - self.val_start
        value = float(trainer.callback_metrics["val/return"])
        self.points.append((seconds, int(pl_module.env_steps), value))


def run_litzoo(config: str, seed: int, *overrides: str, until_solved: bool = False) -> Curve:
    """Fit configs/rl/<config> through the CLI; its validation curve."""
    cli = LitzooCLI(
        [
            "--config",
            str(ROOT / "configs" / "rl" / config),
            f"--seed_everything={seed}",
            f"--data.seed={seed}",
            *QUIET,
            *overrides,
        ],
        run=False,
    )
    curve = EvalCurve()
    cli.trainer.callbacks.append(curve)
    if until_solved:
        cli.trainer.callbacks.append(
            EarlyStopping("val/return", mode="max", patience=TOTAL_STEPS, stopping_threshold=SOLVED)
        )
    cli.trainer.fit(cli.model, cli.datamodule)
    return curve.points


def run_sb3(seed: int, until_solved: bool = False) -> Curve:
    """SB3 PPO with the zoo's CartPole-v1 hyperparameters, evaluated like litzoo."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    class SB3EvalCurve(BaseCallback):
        """Scores the policy when a rollout starts, i.e. after SB3 has trained on every step
        collected so far (as litzoo's validation follows its updates), and once at the end;
        the evaluation envs restart from the same seeds each time, as litzoo's do."""

        def _on_training_start(self) -> None:
            self.points: Curve = []
            self.start, self.paused, self.next_eval = time.perf_counter(), 0.0, EVAL_EVERY
            self.solved = False

        def _evaluate(self) -> None:
            now = time.perf_counter()
            eval_env.seed(seed + 10_000)
            mean, _ = evaluate_policy(
                self.model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True
            )
            self.points.append((now - self.start - self.paused, self.num_timesteps, mean))
            self.paused += time.perf_counter() - now
            self.solved = mean >= SOLVED

        def _on_rollout_start(self) -> None:
            if self.num_timesteps >= self.next_eval:
                self._evaluate()
                self.next_eval += EVAL_EVERY

        def _on_training_end(self) -> None:
            if until_solved and self.solved:
                return
            if not self.points or self.points[-1][1] < self.num_timesteps:
                self._evaluate()

        def _on_step(self) -> bool:
            return not (until_solved and self.solved)

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=EVAL_EPISODES, seed=seed + 10_000)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lambda remaining: remaining * 1e-3,  # zoo's lin_0.001
        clip_range=lambda remaining: remaining * 0.2,  # zoo's lin_0.2
        seed=seed,
        device="cpu",
    )
    callback = SB3EvalCurve()
    model.learn(TOTAL_STEPS, callback=callback)
    return callback.points


def first_solved(curve: Curve) -> tuple[float, int]:
    """(seconds, steps) at the first evaluation with mean return >= SOLVED; inf if none."""
    return next(((s, n) for s, n, r in curve if r >= SOLVED), (math.inf, -1))


def until_solved(seeds: range) -> None:
    """Both sides on every seed, each run stopped at its first solve: the distributions of
    steps and seconds to 475, and how often three seeds' median time ratio is below 1."""
    rows = [
        "| seed | litzoo s to 475 | litzoo steps | SB3 s to 475 | SB3 steps | time ratio litzoo/SB3 |",
        "|---|---|---|---|---|---|",
    ]
    solved: dict[str, list[tuple[float, int]]] = {"litzoo": [], "SB3": []}
    for seed in seeds:
        ours = first_solved(run_litzoo("cartpole.yaml", seed, until_solved=True))
        theirs = first_solved(run_sb3(seed, until_solved=True))
        solved["litzoo"].append(ours)
        solved["SB3"].append(theirs)
        rows.append(
            f"| {seed} | {ours[0]:.1f} | {ours[1]} | {theirs[0]:.1f} | {theirs[1]} "
            f"| {ours[0] / theirs[0]:.2f} |"
        )
        print(rows[-1], flush=True)
    ratios = [o[0] / t[0] for o, t in zip(solved["litzoo"], solved["SB3"], strict=True)]
    triples = [statistics.median(ratios[i : i + 3]) for i in range(0, len(ratios) - 2, 3)]
    summary = [
        "| | seeds solved | steps to 475: 25% / median / 75% | seconds to 475: median | ms per env step: median |",
        "|---|---|---|---|---|",
    ]
    for who, runs in solved.items():
        steps = [n for _, n in runs if n > 0]
        quartiles = statistics.quantiles(steps, n=4) if len(steps) > 1 else [math.nan] * 3
        summary.append(
            f"| {who} | {len(steps)} of {len(runs)} | "
            + " / ".join(f"{q:.0f}" for q in quartiles)
            + f" | {statistics.median(s for s, _ in runs):.1f} "
            f"| {statistics.median(1000 * s / n for s, n in runs if n > 0):.2f} |"
        )
    write_section(
        "ppo_vs_sb3_until_solved",
        "PPO on CartPole-v1: steps and seconds to solve over many seeds",
        "The same two trainers, evaluation and seeds as the section above, each run stopped at "
        "its first mean evaluation return >= 475.\n\n"
        + "\n".join(summary)
        + f"\n\nMedian per-seed time ratio litzoo/SB3: {statistics.median(ratios):.2f}; litzoo "
        f"was faster on {sum(r < 1 for r in ratios)} of {len(ratios)} seeds. Split into "
        f"consecutive groups of three seeds, as the bar's three seeds are, the group's median "
        f"ratio was below 1 in {sum(m < 1 for m in triples)} of {len(triples)} groups.\n\n"
        + "\n".join(rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--until-solved", action="store_true", help="stop each run at its first solve"
    )
    opts = parser.parse_args()
    seeds = range(opts.seeds)
    torch.set_num_threads(1)
    if opts.until_solved:
        until_solved(seeds)
        return
    rows = [
        "| seed | litzoo s to 475 | litzoo steps to 475 | litzoo final | SB3 s to 475 "
        "| SB3 steps to 475 | SB3 final | time ratio litzoo/SB3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios, unsolved = [], []
    steps_to_solve: dict[str, list[int]] = {"litzoo": [], "SB3": []}
    ms_per_step: dict[str, list[float]] = {"litzoo": [], "SB3": []}
    for seed in seeds:
        ours = run_litzoo("cartpole.yaml", seed)
        theirs = run_sb3(seed)
        (our_s, our_n), (their_s, their_n) = first_solved(ours), first_solved(theirs)
        unsolved += [
            f"{who} seed {seed}" for who, n in (("litzoo", our_n), ("SB3", their_n)) if n < 0
        ]
        ratios.append(our_s / their_s if math.isfinite(our_s / their_s) else math.nan)
        for who, seconds, steps in (("litzoo", our_s, our_n), ("SB3", their_s, their_n)):
            if steps > 0:
                steps_to_solve[who].append(steps)
                ms_per_step[who].append(1000 * seconds / steps)
        rows.append(
            f"| {seed} | {our_s:.1f} | {our_n} | {ours[-1][2]:.1f} | {their_s:.1f} | {their_n} "
            f"| {theirs[-1][2]:.1f} | {ratios[-1]:.2f} |"
        )
        print(rows[-1], flush=True)
    write_section(
        "ppo_vs_sb3",
        "PPO on CartPole-v1: litzoo vs Stable-Baselines3",
        f"{__doc__.split(chr(10) + chr(10))[0]}\n\nMedian time ratio litzoo/SB3: "
        f"{statistics.median(ratios):.2f} (bar: < 1, every seed solved). Not solved within "
        f"{TOTAL_STEPS} steps: {', '.join(unsolved) or 'none'}. Medians over the {len(seeds)} seeds: "
        + "; ".join(
            f"{who} {statistics.median(steps_to_solve[who]):.0f} steps to 475 at "
            f"{statistics.median(ms_per_step[who]):.2f} ms of training per env step"
            for who in ("litzoo", "SB3")
            if steps_to_solve[who]
        )
        + ".\n\n"
        + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
