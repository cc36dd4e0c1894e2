"""Why PPO's policy distributions are lean subclasses of torch's: the CPU time of one PPO
update step (loss, backward, gradient clip, Adam) on a real rollout, with the distributions
lit_modules/ppo.py builds (LogSoftmaxCategorical, DiagonalGaussian) against torch's own
Categorical and Independent(Normal), which compute the same values (tests/test_ppo.py).

Settings are configs/rl/cartpole.yaml's (one minibatch of 256) and configs/rl/pendulum.yaml's
(minibatches of 64). The two variants alternate in short rounds, each going first in every
other round, in one process on one thread, so that both see the same load; the table gives the
median over rounds of the per-round ratio of CPU times."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch
from torch.distributions import Categorical, Distribution, Independent, Normal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from lit_modules.ppo import PPO, Batch, compute_gae  # noqa: E402

SETTINGS = {
    "CartPole-v1": dict(
        env=dict(num_envs=8),
        model=dict(rollout_steps=32, minibatch_size=256, gamma=0.98, gae_lambda=0.8),
    ),
    "Pendulum-v1": dict(
        env=dict(num_envs=4),
        model=dict(
            obs_dim=3, action_dim=1, continuous=True, normalize_obs=True, rollout_steps=512,
            minibatch_size=64, gamma=0.9, gae_lambda=0.95,
        ),
    ),
}  # fmt: skip


def torch_distribution(model: PPO):
    """The ActorCritic's distribution as torch's own classes build it."""
    log_std = model.agent.log_std

    def distribution(policy_out: torch.Tensor) -> Distribution:
        if log_std is None:
            return Categorical(logits=policy_out, validate_args=False)
        scale = log_std.exp().expand_as(policy_out)
        return Independent(Normal(policy_out, scale, validate_args=False), 1, validate_args=False)

    return distribution


def minibatch(env_id: str, model: PPO) -> Batch:
    """One minibatch of a rollout of the freshly built model."""
    envs = gym.make_vec(
        env_id,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},  # as the gym data
        **SETTINGS[env_id]["env"],
    )
    envs.reset(seed=0)
    rollout, _ = model.collect_rollout(envs)
    hp = model.hparams
    advantages, returns = compute_gae(
        rollout.rewards, rollout.values, rollout.dones, rollout.next_value, hp.gamma, hp.gae_lambda
    )
    batch = rollout.batch(advantages, returns)
    return batch.select(torch.arange(min(hp.minibatch_size, len(batch.obs))))


def ratios(env_id: str, rounds: int, steps: int) -> list[float]:
    """Per round: CPU time of `steps` update steps with torch's distributions over ours."""
    torch.manual_seed(0)
    model = PPO(hidden_sizes=[64, 64], value_clip=None, entropy_coef=0.0, lr=1e-3,
                **SETTINGS[env_id]["model"])  # fmt: skip
    if model.obs_rms is not None:
        model.obs_rms.count.fill_(1.0)  # normalize with the initial statistics
    batch = minibatch(env_id, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5, fused=True)
    ours, theirs = model.agent.distribution, torch_distribution(model)

    def seconds(distribution) -> float:
        model.agent.distribution = distribution
        start = time.process_time()
        for _ in range(steps):
            loss, _ = model.compute_loss(batch, clip_coef=0.2)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
        return time.process_time() - start

    seconds(ours), seconds(theirs)  # warm up
    result = []
    for i in range(rounds):
        if i % 2:
            mine, torchs = seconds(ours), seconds(theirs)
        else:
            torchs, mine = seconds(theirs), seconds(ours)
        result.append(torchs / mine)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200, help="update steps per round")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        "| environment (config) | minibatch | update step, torch's / ours: median | quartiles |",
        "|---|---|---|---|",
    ]
    for env_id, settings in SETTINGS.items():
        per_round = ratios(env_id, opts.rounds, opts.steps)
        q1, _, q3 = statistics.quantiles(per_round, n=4)
        rows.append(
            f"| {env_id} | {settings['model']['minibatch_size']} "
            f"| **{statistics.median(per_round):.3f}** | {q1:.3f} - {q3:.3f} |"
        )
        print(rows[-1], flush=True)
    write_section(
        "ppo_distributions",
        "PPO's policy distributions: torch's classes against the lean subclasses",
        __doc__.split("\n\n", 1)[1]
        + f"\n\n{opts.rounds} rounds of {opts.steps} update steps.\n\n"
        + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
