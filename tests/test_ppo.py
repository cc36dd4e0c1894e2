"""PPO and the gym datamodule: GAE and the clipped objective against hand-computed cases, a few
updates on CartPole and Pendulum, resume, and a 2-process CPU DDP run."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from conftest import REPO, quiet_trainer, run_cli
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules.gym import GymData
from lit_modules.ppo import (
    PPO,
    ActorCritic,
    DiagonalGaussian,
    LogSoftmaxCategorical,
    RunningMeanStd,
    TanhMLPs,
    clipped_surrogate,
    compute_gae,
)
from registry import MODELS


def test_gae_matches_hand_computed_case() -> None:
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the second transition ends its episode
    advantages, returns = compute_gae(rewards, values, dones, torch.tensor([0.2]), 0.9, 0.8)
    # t=2: 1 + .9*.2 - .3 = .88;  t=1: 1 - .4 = .6 (no bootstrap);  t=0: (1 + .9*.4 - .5) + .72*.6
    expected = torch.tensor([[1.292], [0.6], [0.88]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


@pytest.mark.parametrize(
    ("ratio", "advantage", "gradient_vanishes"),
    [(1.5, 1.0, True), (0.5, -1.0, True), (1.1, 1.0, False), (0.9, -1.0, False)],
)
def test_clipped_objective_gradient_vanishes_outside_clip_range(
    ratio: float, advantage: float, gradient_vanishes: bool
) -> None:
    log_ratio = torch.tensor([math.log(ratio)], requires_grad=True)
    clipped_surrogate(log_ratio.exp(), torch.tensor([advantage]), clip_coef=0.2).sum().backward()
    assert (log_ratio.grad.abs() < 1e-12).item() is gradient_vanishes


def test_batched_mlps_are_independent_networks() -> None:
    mlps = TanhMLPs([3, 5, 4], copies=2)
    x = torch.randn(7, 3)
    out = mlps(x)
    for c in range(2):
        hidden = x
        for weight, bias in zip(mlps.weights, mlps.biases, strict=True):
            hidden = torch.tanh(hidden @ weight[c] + bias[c])
        torch.testing.assert_close(out[c], hidden)
    out[0].sum().backward()  # the actor's output reaches none of the critic's weights
    for weight in mlps.weights:
        assert weight.grad[0].abs().sum() > 0 and not weight.grad[1].any()


def test_running_statistics_merge_batches_into_the_moments_of_all_rows() -> None:
    rows = torch.randn(100, 3) * torch.tensor([1.0, 5.0, 0.1]) + 2.0
    stats = RunningMeanStd(3)
    for chunk in rows.split([10, 60, 30]):
        stats.update(chunk, lambda moments: moments)  # one process: the sum over ranks is itself
    assert float(stats.count) == 100
    torch.testing.assert_close(stats.mean, rows.mean(0))
    torch.testing.assert_close(stats.var, rows.var(0, unbiased=False))
    normalized = stats.normalize(rows)
    torch.testing.assert_close(normalized.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_the_policy_distributions_compute_what_torchs_own_do() -> None:
    """The lean distributions that the update builds every minibatch step equal torch's."""
    logits = torch.randn(6, 4) * 3
    ours, torchs = LogSoftmaxCategorical(logits), torch.distributions.Categorical(logits=logits)
    actions = torch.randint(0, 4, (6,))
    torch.testing.assert_close(ours.log_prob(actions), torchs.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), torchs.entropy())
    torch.testing.assert_close(ours.probs, torchs.probs)
    assert torch.equal(ours.mode, torchs.mode) and ours.sample((3,)).shape == (3, 6)

    loc, log_std = torch.randn(6, 2), torch.tensor([-0.5, 0.3])
    ours = DiagonalGaussian(loc, log_std)
    torchs = torch.distributions.Independent(torch.distributions.Normal(loc, log_std.exp()), 1)
    actions = torch.randn(6, 2)
    torch.testing.assert_close(ours.log_prob(actions), torchs.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), torchs.entropy())
    torch.testing.assert_close(ours.stddev, torchs.stddev)
    assert torch.equal(ours.mode, loc) and ours.sample((3,)).shape == (3, 6, 2)
    assert (ours.batch_shape, ours.event_shape) == (torchs.batch_shape, torchs.event_shape)


@pytest.mark.parametrize("continuous", [False, True])
def test_the_rollout_samples_the_policy_distribution(continuous: bool) -> None:
    """`sample`, the rollout's fast path, draws from `distribution`, which the loss uses."""
    torch.manual_seed(0)
    agent = ActorCritic(3, 3, continuous, [8], shared=False, log_std_init=-0.5)
    policy_out = torch.tensor([[0.0, 1.0, -1.0]]).expand(40_000, 3) * 3
    dist = agent.distribution(policy_out)
    assert isinstance(dist, torch.distributions.Distribution)
    draws = agent.sample(policy_out)
    if continuous:
        torch.testing.assert_close(draws.mean(0), dist.mean[0], atol=0.02, rtol=0)
        torch.testing.assert_close(draws.std(0), dist.stddev[0], atol=0.02, rtol=0)
    else:
        frequencies = torch.bincount(draws, minlength=3) / len(draws)
        torch.testing.assert_close(frequencies, dist.probs[0], atol=0.01, rtol=0)
    torch.testing.assert_close(agent.sample(policy_out, deterministic=True), dist.mode)
    obs = torch.randn(5, 3)
    action, dist, value = agent.get_action_and_value(obs)
    assert torch.isfinite(dist.log_prob(action)).all() and value.shape == (5,)


@pytest.mark.parametrize("normalize_reward", [False, True])
def test_rollout_bootstraps_time_limits_but_reports_raw_returns(
    tmp_path: Path, normalize_reward: bool
) -> None:
    # Value targets are r + gamma V(next) (lambda 0); with normalize_reward, r is scaled but
    # the bootstrap, already in the value's units, is not.
    model = PPO(rollout_steps=12, gamma=0.9, gae_lambda=0.0, normalize_reward=normalize_reward)
    model.trainer = quiet_trainer(tmp_path)  # its strategy sums the reward statistics
    envs = gym.make_vec(
        "CartPole-v1",
        num_envs=2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        max_episode_steps=5,  # a random policy keeps the pole up this long from the start
    )
    envs.reset(seed=0)
    step, infos = envs.step, []
    envs.step = lambda actions: (out := step(actions), infos.append(out[4]))[0]
    rollout, (returns, lengths) = model.collect_rollout(envs)
    assert returns == [5.0] * 4 and lengths == [5] * 4  # what the environment paid, no bootstrap
    with torch.no_grad():
        logits, values = model(rollout.obs)
    torch.testing.assert_close(rollout.values, values)
    torch.testing.assert_close(
        rollout.log_probs, logits.log_softmax(-1).gather(-1, rollout.actions[..., None])[..., 0]
    )
    reward = 1.0 / math.sqrt(float(model.return_rms.var) + 1e-8) if normalize_reward else 1.0
    assert normalize_reward == (abs(reward - 1.0) > 0.05)  # so scaled and raw rewards differ
    _, targets = compute_gae(
        rollout.rewards, rollout.values, rollout.dones, rollout.next_value, 0.9, 0.0
    )
    for t in range(11):
        if t % 5 == 4:  # truncated: bootstrapped from the final observation, not the reset one
            final_obs = torch.as_tensor(np.stack(infos[t]["final_obs"]))
            with torch.no_grad():
                torch.testing.assert_close(targets[t], reward + 0.9 * model(final_obs)[1])
        else:
            torch.testing.assert_close(targets[t], reward + 0.9 * values[t + 1])


def test_rewards_are_scaled_by_the_running_std_of_the_discounted_return(tmp_path: Path) -> None:
    model = PPO(gamma=0.5, normalize_reward=True)
    model.trainer = quiet_trainer(tmp_path)  # its strategy sums the moments (one process here)
    discounted_return = np.zeros(2)
    rewards = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 60.0]], dtype=np.float32)
    dones = np.array([[0, 1], [0, 0], [1, 0]], dtype=np.float32)
    scaled = model.scale_rewards(rewards, dones, discounted_return)
    # Discounted returns by hand; env 1's episode ends after its first step, env 0's at the last.
    returns = np.array([[1.0, 2.0], [0.5 + 3, 4.0], [1.75 + 5, 2 + 60]])
    assert float(model.return_rms.var) == pytest.approx(returns.var())
    np.testing.assert_allclose(scaled, rewards / returns.std(), rtol=1e-5)
    np.testing.assert_allclose(discounted_return, [0.0, 62.0])  # env 0's ended
    # Against long-run statistics of unit scale, an outlier is clipped as SB3's VecNormalize does.
    stats = model.return_rms
    stats.mean.zero_(), stats.var.fill_(1.0), stats.count.fill_(1e9)
    scaled = model.scale_rewards(
        np.array([[50.0, -0.5]], dtype=np.float32), np.ones((1, 2)), discounted_return
    )
    np.testing.assert_allclose(scaled, [[10.0, -0.5]], rtol=1e-4)


class GradientRecorder(L.Callback):
    def __init__(self) -> None:
        self.with_grad: set[str] = set()

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.with_grad |= {n for n, p in pl_module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("env_id", "model_kwargs"),
    [
        ("CartPole-v1", {}),
        (
            "Pendulum-v1",
            {
                "objective": "kl_penalty",
                "normalize_obs": True,
                "normalize_reward": True,
                "shared_network": True,
            },
        ),
    ],
)
def test_a_few_updates_train_every_parameter_and_reload(
    tmp_path: Path, env_id: str, model_kwargs: dict
) -> None:
    data = GymData(env_id=env_id, num_envs=2, eval_episodes=2)
    entry = MODELS.entry("ppo")
    model = PPO(
        **{**entry.test_kwargs, **model_kwargs},
        obs_dim=data.obs_dim,
        action_dim=data.action_dim,
        continuous=data.continuous,
    )
    recorder = GradientRecorder()
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=3, callbacks=[recorder])
    trainer.fit(model, data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert "val/return" in metrics
    assert recorder.with_grad == {n for n, p in model.named_parameters() if p.requires_grad}
    assert int(model.env_steps) == 3 * 2 * entry.test_kwargs["rollout_steps"]
    assert trainer.global_step == 3 * model.hparams.update_epochs  # one minibatch per epoch
    if model.hparams.normalize_obs:
        assert float(model.obs_rms.count) == int(model.env_steps)
    if model.hparams.normalize_reward:
        assert float(model.return_rms.count) == int(model.env_steps)

    path = tmp_path / "ppo.ckpt"
    trainer.save_checkpoint(path)
    reloaded = PPO.load_from_checkpoint(path)
    for a, b in zip(
        reloaded(model.example_input_array), model(model.example_input_array), strict=True
    ):
        torch.testing.assert_close(a, b)
    assert trainer.test(reloaded, data)[0]["test/length"] > 0


def test_training_metrics_are_logged_on_the_loggers_cadence(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    model = PPO(**MODELS.entry("ppo").test_kwargs)
    logger = CSVLogger(tmp_path, name="", version="")
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=4, logger=logger)
    trainer.log_every_n_steps = 2  # the logger writes rollouts 1 and 3
    logged_rollouts = []
    log_dict = model.log_dict
    model.log_dict = lambda *a, **k: (
        logged_rollouts.append(int(model.env_steps)),
        log_dict(*a, **k),
    )
    trainer.fit(model, GymData(num_envs=2, eval_episodes=1))
    with open(tmp_path / "metrics.csv") as rows:
        written = [
            float(r["train/env_steps"]) for r in csv.DictReader(rows) if r["train/env_steps"]
        ]
    per_rollout = 2 * model.hparams.rollout_steps
    assert written == [2 * per_rollout, 4 * per_rollout]
    # Rollout 0 logs for the progress bar; rollout 2, which nobody would see, does not log.
    assert logged_rollouts == [per_rollout, 2 * per_rollout, 4 * per_rollout]


class ClipRecorder(PPO):
    def compute_loss(self, minibatch, clip_coef):
        self.clips = [*getattr(self, "clips", []), clip_coef]
        return super().compute_loss(minibatch, clip_coef)


@pytest.mark.parametrize("anneal_clip", [False, True])
def test_clip_range_anneals_linearly_over_the_rollouts(tmp_path: Path, anneal_clip: bool) -> None:
    kwargs = {**MODELS.entry("ppo").test_kwargs, "update_epochs": 1, "clip_coef": 0.2}
    model = ClipRecorder(**kwargs, anneal_clip=anneal_clip)
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=0).fit(
        model, GymData(num_envs=2, rollouts_per_epoch=4)
    )
    expected = [0.2, 0.15, 0.1, 0.05] if anneal_clip else [0.2] * 4
    assert model.clips == pytest.approx(expected)


@pytest.mark.parametrize(
    ("max_epochs", "clips"),
    [  # max_steps counts optimizer steps: 2 update epochs of one minibatch each per rollout,
        # so max_steps=7 ends the fit after 4 rollouts unless max_epochs ends it first.
        (-1, [0.2, 0.15, 0.1, 0.05]),
        (10, [0.2, 0.15, 0.1, 0.05]),
        (1, [0.2, 2 / 15, 1 / 15]),  # one epoch of 3 rollouts
    ],
)
def test_max_steps_sets_the_annealing_horizon_in_rollouts(
    tmp_path: Path, max_epochs: int, clips: list[float]
) -> None:
    kwargs = {**MODELS.entry("ppo").test_kwargs, "update_epochs": 2, "clip_coef": 0.2}
    model = ClipRecorder(**kwargs, anneal_clip=True)
    trainer = quiet_trainer(tmp_path, max_epochs=max_epochs, max_steps=7, limit_val_batches=0)
    trainer.fit(model, GymData(num_envs=2, rollouts_per_epoch=3))
    assert model.clips == pytest.approx([c for c in clips for _ in range(2)])
    assert model.lr_schedulers().get_last_lr() == [0.0]


def test_model_rejects_environments_of_another_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="obs_dim"):
        quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(
            PPO(**MODELS.entry("ppo").test_kwargs), GymData("Pendulum-v1", num_envs=1)
        )


def test_resume_continues_steps_schedule_and_running_statistics(tmp_path: Path) -> None:
    def run(ckpt_path: Path | None = None) -> PPO:
        model = PPO(**MODELS.entry("ppo").test_kwargs, normalize_obs=True, normalize_reward=True)
        checkpoints = ModelCheckpoint(tmp_path / "ckpt", "{epoch}", save_top_k=-1, every_n_epochs=1)
        trainer = quiet_trainer(
            tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[checkpoints]
        )
        data = GymData(num_envs=2, rollouts_per_epoch=2, eval_episodes=1)
        trainer.fit(model, data, ckpt_path=ckpt_path)
        model.final_lr = trainer.optimizers[0].param_groups[0]["lr"]
        model.final_step = trainer.global_step
        return model

    straight = run()
    resumed = run(tmp_path / "ckpt" / "epoch=0.ckpt")
    assert int(resumed.env_steps) == int(straight.env_steps) == 2 * 2 * 2 * 16
    assert resumed.final_step == straight.final_step == 4 * straight.hparams.update_epochs
    assert resumed.final_lr == pytest.approx(straight.final_lr)
    assert float(resumed.obs_rms.count) == float(straight.obs_rms.count) == int(straight.env_steps)
    assert float(resumed.return_rms.count) == int(straight.env_steps)


class RankCheck(L.Callback):
    """Under DDP: the ranks end with the same weights but stepped different environments."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        gathered = pl_module.all_gather(weights)
        assert torch.equal(gathered[0], gathered[1]), "DDP ranks hold different weights"
        first_obs = pl_module.all_gather(torch.as_tensor(pl_module.env_state.obs))
        assert not torch.equal(first_obs[0], first_obs[1]), "DDP ranks share a seed stream"
        assert int(pl_module.env_steps) == 2 * 2 * 2 * 16  # rollouts x ranks x envs x steps
        return_var = pl_module.all_gather(pl_module.return_rms.var)  # reward scale, both ranks
        assert torch.equal(return_var[0], return_var[1]), "DDP ranks scale rewards differently"
        for name in ("train/loss", "train/return"):  # means over both ranks' updates and episodes
            logged = pl_module.all_gather(trainer.callback_metrics[name])
            assert logged[0] == logged[1], f"{name} differs between DDP ranks"


def test_two_process_cpu_ddp(tmp_path: Path) -> None:
    model = PPO(
        **MODELS.entry("ppo").test_kwargs, normalize_obs=True, normalize_reward=True, target_kl=0.01
    )
    trainer = quiet_trainer(
        tmp_path,
        strategy="ddp_spawn",
        devices=2,
        max_epochs=1,
        limit_train_batches=2,
        log_every_n_steps=1,
        callbacks=[RankCheck()],
    )
    trainer.fit(model, GymData(num_envs=2, eval_episodes=1))


def test_cli_predict_writes_a_watchable_gif(tmp_path: Path) -> None:
    """fit a few CartPole updates through the CLI, then predict with rendering: an animated GIF."""
    from PIL import Image

    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    fit = run_cli(
        "fit", "--config", str(REPO / "configs" / "rl" / "cartpole.yaml"), "--trainer.max_epochs=1",
        "--data.rollouts_per_epoch=2", *quiet, cwd=tmp_path,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    predict = run_cli(
        "predict", "--config", str(REPO / "configs" / "rl" / "cartpole.yaml"), "--ckpt_path", "last",
        "--data.render=true", *quiet, cwd=tmp_path, env={"SDL_VIDEODRIVER": "dummy"},
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    gifs = sorted(tmp_path.glob("runs/ppo/version_*/episodes/episode_*.gif"))
    assert gifs, predict.stdout[-2000:]
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames > 1 and gif.size[0] > 100
