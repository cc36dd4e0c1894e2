"""Proximal Policy Optimization (Schulman et al., 2017) whose training step is PPO's own cycle:
collect a rollout from the batch's vector environments, estimate advantages with GAE, then run
several epochs of minibatch updates under Lightning's manual optimization. Lightning keeps
doing the rest (validation, checkpoints, logging, early stopping, DDP)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from callbacks import EpisodeGif
from lit_modules.base import HyperparameterError, ZooBase, check_non_negative, check_positive
from lit_modules.optimization import (
    OptimizerFactory,
    OptimizerSpec,
    build_optimizer,
    checked_optimizer,
)
from registry import register_model

Batch = dict[str, torch.Tensor]
# What the updates log (as train/<name>): means over the minibatch steps of the rollouts since
# the last write, and over DDP ranks.
STATS = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and value targets of a (steps, envs) rollout.

    `dones[t]` marks a transition that ended its episode, so nothing is bootstrapped across it;
    `last_value` is the value of the observation that follows the rollout.
    """
    advantages = torch.empty_like(rewards)
    advantage, next_value = torch.zeros_like(last_value), last_value
    for t in reversed(range(len(rewards))):
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        advantage = delta + gamma * gae_lambda * nonterminal * advantage
        advantages[t], next_value = advantage, values[t]
    return advantages, advantages + values


def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> torch.Tensor:
    """PPO's clipped policy loss per sample: the pessimistic one of the ratio-weighted advantage
    and its clipped twin, so a ratio that has left [1 - clip, 1 + clip] in the direction the
    advantage rewards gets no gradient."""
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    return -torch.min(ratio * advantages, clipped * advantages)


def _linear(width_in: int, width_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(width_in, width_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class TanhMLPs(nn.Module):
    """`copies` independent tanh MLPs of the same widths, evaluated together: each layer is one
    batched matmul for all of them. The actor and the critic are small, so running them one
    after the other costs mostly per-op time; batched, they cost about what one does.

    Weights are orthogonal with gain sqrt(2), biases zero, as in the PPO baselines. Maps
    (..., widths[0]) to (copies, ..., widths[-1])."""

    def __init__(self, widths: list[int], copies: int) -> None:
        super().__init__()
        self.copies = copies
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for width_in, width_out in itertools.pairwise(widths):
            weight = torch.empty(copies, width_out, width_in)
            for matrix in weight:
                nn.init.orthogonal_(matrix, math.sqrt(2))
            self.weights.append(nn.Parameter(weight.transpose(1, 2).contiguous()))
            self.biases.append(nn.Parameter(torch.zeros(copies, 1, width_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = x.reshape(1, -1, x.shape[-1]).expand(self.copies, -1, -1)
        for weight, bias in zip(self.weights, self.biases, strict=True):
            hidden = torch.baddbmm(bias, hidden, weight).tanh()
        return hidden.view(self.copies, *x.shape[:-1], hidden.shape[-1])


@register_model(
    "ppo",
    family="rl",
    data="gym",
    monitor="val/return",
    mode="max",
    test_kwargs={
        "hidden_sizes": [16],
        "rollout_steps": 16,
        "minibatch_size": 32,
        "update_epochs": 2,
    },
    test_data_kwargs={"env_id": "CartPole-v1"},
)
class PPO(ZooBase):
    """Proximal Policy Optimization: GAE, clipped or adaptive-KL objective, value baseline.

    Categorical policy for discrete actions, Gaussian with a state-independent log-std for
    continuous ones.

    A training batch is a vector environment (the `gym` datamodule): each training step
    collects `rollout_steps` steps from every environment, then updates for `update_epochs`
    epochs of minibatches. Validation and test run deterministic episodes (`val/return`)."""

    def __init__(
        self,
        obs_dim: int = 4,
        action_dim: int = 2,
        continuous: bool = False,
        hidden_sizes: list[int] | None = None,
        shared_network: bool = False,
        normalize_obs: bool = False,
        normalize_reward: bool = False,
        log_std_init: float = 0.0,
        rollout_steps: int = 128,
        update_epochs: int = 4,
        minibatch_size: int = 128,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        objective: Literal["clip", "kl_penalty"] = "clip",
        clip_coef: float = 0.2,
        kl_coef: float = 1.0,
        kl_penalty_target: float = 0.01,
        value_clip: float | None = 0.2,
        value_coef: float = 0.5,
        entropy_coef: float = 0.01,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        lr: float = 2.5e-4,
        optimizer: OptimizerFactory = lambda params, lr: torch.optim.Adam(
            params, lr, eps=1e-5, fused=True
        ),
        anneal_lr: bool = True,
        anneal_clip: bool = False,
    ) -> None:
        """
        Args:
            obs_dim: flattened observation size (the CLI takes it from the data).
            action_dim: number of discrete actions, or size of a continuous action (from the data).
            continuous: Gaussian policy for Box actions instead of a categorical one (from the data).
            hidden_sizes: tanh hidden layers of the actor and of the critic; None means [64, 64].
            shared_network: one trunk with policy and value heads instead of separate networks.
            normalize_obs: standardize observations by running statistics (kept in checkpoints).
            normalize_reward: divide training rewards by the running standard deviation of the
                discounted return and clip them to +-10, as SB3's VecNormalize does, so value
                targets stay near unit scale (statistics are updated once per rollout, before
                its rewards are scaled); logged returns stay raw.
            log_std_init: initial state-independent log standard deviation (continuous actions).
            rollout_steps: steps collected from every environment per training batch.
            update_epochs: passes over each rollout.
            minibatch_size: samples per gradient step (the rollout is split evenly).
            gamma: discount factor.
            gae_lambda: GAE's bias-variance trade-off (1 is Monte Carlo, 0 is one-step TD).
            objective: clip (clipped surrogate) or kl_penalty (adaptive KL penalty).
            clip_coef: surrogate clip range.
            kl_coef: initial KL penalty weight, doubled or halved towards kl_penalty_target.
            kl_penalty_target: KL per update that the kl_penalty objective aims for.
            value_clip: clip range of the value update around the rollout's values; None disables.
            value_coef: weight of the value loss (mean squared error).
            entropy_coef: weight of the entropy bonus.
            max_grad_norm: global gradient-norm clip.
            target_kl: stop a rollout's update epochs once an epoch's approx. KL exceeds this.
            lr: learning rate.
            optimizer: called with the parameters and lr; Adam with eps 1e-5 (fused) as the
                PPO baselines.
            anneal_lr: decay the learning rate linearly to 0 over the fit's rollouts
                (max_epochs x rollouts per epoch, fewer if max_steps ends the fit first).
            anneal_clip: decay clip_coef linearly to 0 the same way (rl-baselines3-zoo's
                `clip_range: lin_0.2`).
        """
        super().__init__()
        self.optimizer_factory = checked_optimizer(optimizer, lr)
        if isinstance(self.optimizer_factory, OptimizerSpec):  # from a lambda: record plainly
            self.record_hyperparameter("optimizer", self.optimizer_factory.record())
        hidden_sizes = [64, 64] if hidden_sizes is None else list(hidden_sizes)
        check_positive(
            obs_dim=obs_dim,
            action_dim=action_dim,
            rollout_steps=rollout_steps,
            update_epochs=update_epochs,
            minibatch_size=minibatch_size,
            clip_coef=clip_coef,
            kl_penalty_target=kl_penalty_target,
            max_grad_norm=max_grad_norm,
            **{f"hidden_sizes[{i}]": h for i, h in enumerate(hidden_sizes)},
            **({} if target_kl is None else {"target_kl": target_kl}),
            **({} if value_clip is None else {"value_clip": value_clip}),
        )
        check_non_negative(kl_coef=kl_coef, value_coef=value_coef, entropy_coef=entropy_coef)
        for name, value in (("gamma", gamma), ("gae_lambda", gae_lambda)):
            if not 0.0 <= value <= 1.0:
                raise HyperparameterError(f"{name} must be in [0, 1], got {value}")

        widths = [obs_dim, *hidden_sizes]
        # The actor's body is copy 0 and the critic's the last: the same one if shared.
        self.bodies = TanhMLPs(widths, copies=1 if shared_network else 2)
        self.actor_head = _linear(widths[-1], action_dim, gain=0.01)
        self.critic_head = _linear(widths[-1], 1, gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), log_std_init)) if continuous else None

        # Checkpointed state besides the weights: resume continues all of it.
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_var", torch.ones(obs_dim))
        self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))
        if normalize_reward:
            self.register_buffer("return_mean", torch.zeros(1))
            self.register_buffer("return_var", torch.ones(1))
            self.register_buffer("return_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("kl_beta", torch.tensor(float(kl_coef)))

        self.automatic_optimization = False
        self.example_input_array = torch.zeros(1, obs_dim)
        # The training environments being stepped, their last observation and running episodes.
        self._envs: Any = None
        self._obs: np.ndarray | None = None
        self._episode_return = np.zeros(0)
        self._episode_length = np.zeros(0, dtype=np.int64)
        self._discounted_return = np.zeros(0)  # per environment, for normalize_reward
        # Since the last logged rollout: summed STATS, rollouts, and the episodes that ended
        # (summed returns, summed lengths, count).
        self._unlogged_stats: torch.Tensor | float = 0.0
        self._unlogged_rollouts = 0
        self._unlogged_episodes = np.zeros(3)

    # ----------------------------------------------------------------------------- the policy

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action logits, or the Gaussian's mean; state value) for a batch of observations."""
        if self.hparams.normalize_obs:
            obs = ((obs - self.obs_mean) / (self.obs_var + 1e-8).sqrt()).clamp(-10.0, 10.0)
        hidden = self.bodies(obs)
        return self.actor_head(hidden[0]), self.critic_head(hidden[-1]).squeeze(-1)

    def _sample(self, out: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if self.log_std is None:
            if deterministic:
                return out.argmax(-1)
            # Gumbel-max: argmax of logits - log(Exp(1) noise) is a draw from softmax(logits).
            return (out - torch.empty_like(out).exponential_().log()).argmax(-1)
        return out if deterministic else out + self.log_std.exp() * torch.randn_like(out)

    def _log_prob_entropy(
        self, out: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.log_std is None:
            log_probs = out.log_softmax(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy
        log_std = self.log_std.expand_as(out)
        z = (actions - out) / log_std.exp()
        log_prob = (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1)
        return log_prob, entropy

    def _observe(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device).flatten(1)

    def _to_env(self, actions: torch.Tensor, envs: Any) -> np.ndarray:
        """Actions as the environments take them: continuous ones clipped to the bounds."""
        actions = actions.cpu().numpy()
        if self.log_std is None:
            return actions
        space = envs.single_action_space
        return np.clip(actions.reshape(len(actions), *space.shape), space.low, space.high)

    def _check_spaces(self, envs: Any) -> None:
        obs_space, action_space = envs.single_observation_space, envs.single_action_space
        continuous = not hasattr(action_space, "n")
        action_dim = int(np.prod(action_space.shape)) if continuous else int(action_space.n)
        found = (int(np.prod(obs_space.shape)), action_dim, continuous)
        expected = (self.hparams.obs_dim, self.hparams.action_dim, self.hparams.continuous)
        if found != expected:
            raise HyperparameterError(
                f"the environments have (obs_dim, action_dim, continuous) = {found} but the model "
                f"was built for {expected}; set --model.obs_dim/action_dim/continuous (the CLI "
                f"links them from the data)."
            )

    # ----------------------------------------------------------------------------- training

    @torch.no_grad()
    def _collect(self, envs: Any) -> tuple[Batch, list[float], list[int]]:
        """Step `envs` for rollout_steps with the sampling policy; returns the flattened rollout
        with advantages, and the returns and lengths of the episodes that ended in it."""
        hp = self.hparams
        if envs is not self._envs:
            self._check_spaces(envs)
            self._envs, self._obs = envs, envs.reset()[0]
            self._episode_return = np.zeros(envs.num_envs)
            self._episode_length = np.zeros(envs.num_envs, dtype=np.int64)
            self._discounted_return = np.zeros(envs.num_envs)
        steps, n = hp.rollout_steps, envs.num_envs
        obs_buf = torch.empty(steps, n, hp.obs_dim, device=self.device)
        outs, actions, values = [], [], []
        rewards = np.empty((steps, n), dtype=np.float32)
        bootstrap = np.zeros((steps, n), dtype=np.float32)
        dones = np.empty((steps, n), dtype=np.float32)
        returns: list[float] = []
        lengths: list[int] = []
        obs = self._obs
        for t in range(steps):
            obs_buf[t] = self._observe(obs)
            out, value = self(obs_buf[t])
            action = self._sample(out, deterministic=False)
            obs, reward, terminated, truncated, info = envs.step(self._to_env(action, envs))
            rewards[t] = reward
            cut = truncated & ~terminated
            if cut.any():  # a time limit, not a terminal state: bootstrap from the final obs
                final = self._observe(np.stack(info["final_obs"][cut]))
                bootstrap[t, cut] = hp.gamma * self(final)[1].cpu().numpy()
            done = terminated | truncated
            dones[t] = done
            self._episode_return += reward
            self._episode_length += 1
            if done.any():
                returns += self._episode_return[done].tolist()
                lengths += self._episode_length[done].tolist()
                self._episode_return[done], self._episode_length[done] = 0.0, 0
            outs.append(out)
            actions.append(action)
            values.append(value)
        self._obs = obs
        if hp.normalize_reward:
            rewards = self._scale_rewards(rewards, dones)
        rewards += bootstrap  # values, and so bootstraps, are in the scaled units already
        actions_t, values_t = torch.stack(actions), torch.stack(values)
        advantages, value_targets = compute_gae(
            torch.as_tensor(rewards, device=self.device),
            values_t,
            torch.as_tensor(dones, device=self.device),
            self(self._observe(obs))[1],
            hp.gamma,
            hp.gae_lambda,
        )
        batch = {
            "obs": obs_buf,
            "actions": actions_t,
            "log_probs": self._log_prob_entropy(torch.stack(outs), actions_t)[0],
            "values": values_t,
            "advantages": advantages,
            "returns": value_targets,
        }
        return {k: v.flatten(0, 1) for k, v in batch.items()}, returns, lengths

    def _loss(self, mb: Batch, clip_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch's loss, and its STATS (detached, in that order)."""
        hp = self.hparams
        out, value = self(mb["obs"])
        log_prob, entropy = self._log_prob_entropy(out, mb["actions"])
        log_ratio = log_prob - mb["log_probs"]
        ratio = log_ratio.exp()
        adv = mb["advantages"]
        adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
        if hp.objective == "clip":
            policy_loss = clipped_surrogate(ratio, adv, clip_coef).mean()
        else:
            kl = ((ratio - 1.0) - log_ratio).mean()
            policy_loss = self.kl_beta * kl - (ratio * adv).mean()
        value_error = (value - mb["returns"]).square()
        if hp.value_clip is not None:
            clipped = mb["values"] + (value - mb["values"]).clamp(-hp.value_clip, hp.value_clip)
            value_error = torch.max(value_error, (clipped - mb["returns"]).square())
        value_loss, entropy = value_error.mean(), entropy.mean()
        loss = policy_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy
        with torch.no_grad():
            # (ratio - 1) - log ratio: a non-negative, unbiased estimate of KL(old || new).
            approx_kl = ((ratio - 1.0) - log_ratio).mean()
            clip_frac = ((ratio - 1.0).abs() > clip_coef).float().mean()
            stats = torch.stack([loss, policy_loss, value_loss, entropy, approx_kl, clip_frac])
        return loss, stats

    def _minibatches(self, batch: Batch) -> Iterator[Batch]:
        """The rollout in random minibatches of about minibatch_size; a rollout that is one
        minibatch is used as it is, since the loss does not depend on the sample order."""
        size = len(batch["obs"])
        chunks = self._minibatch_count(size)
        if chunks == 1:
            yield batch
            return
        for idx in torch.randperm(size, device=self.device).chunk(chunks):
            yield {k: v[idx] for k, v in batch.items()}

    def _minibatch_count(self, rollout_size: int) -> int:
        return max(1, rollout_size // self.hparams.minibatch_size)

    def _update(self, batch: Batch) -> torch.Tensor:
        """update_epochs passes of minibatch steps; returns the mean of each of STATS."""
        hp = self.hparams
        optimizer = self.optimizers()
        clip_coef = hp.clip_coef
        if hp.anneal_clip:
            clip_coef *= self._remaining(self.lr_schedulers().last_epoch)
        totals, count = torch.zeros(len(STATS), device=self.device), 0
        for _ in range(hp.update_epochs):
            epoch_kl = []
            for mb in self._minibatches(batch):
                loss, stats = self._loss(mb, clip_coef)
                optimizer.zero_grad()
                self.manual_backward(loss)
                self.clip_gradients(optimizer, hp.max_grad_norm, "norm")
                optimizer.step()
                totals += stats
                epoch_kl.append(stats[STATS.index("approx_kl")])
                count += 1
            # Ranks agree on the KL so that they all stop after the same number of steps.
            kl = self.trainer.strategy.reduce(torch.stack(epoch_kl).mean(), reduce_op="mean")
            if hp.target_kl is not None and kl > hp.target_kl:
                break
        if hp.objective == "kl_penalty":
            if kl < hp.kl_penalty_target / 1.5:
                self.kl_beta /= 2.0
            elif kl > hp.kl_penalty_target * 1.5:
                self.kl_beta *= 2.0
        return totals / count

    def _scale_rewards(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """The rollout's rewards divided by the running std of the discounted return, which
        this rollout's returns update first (normalize_reward)."""
        returns = np.empty_like(rewards)
        for t in range(len(rewards)):
            self._discounted_return = self._discounted_return * self.hparams.gamma + rewards[t]
            returns[t] = self._discounted_return
            self._discounted_return[dones[t] > 0] = 0.0
        self._update_moments("return", torch.as_tensor(returns, device=self.device).view(-1, 1))
        scale = np.sqrt(self.return_var.item() + 1e-8)
        return np.clip(rewards / scale, -10.0, 10.0).astype(np.float32)

    @torch.no_grad()
    def _update_moments(self, name: str, x: torch.Tensor) -> None:
        """Merge the moments of the rows of `x` (summed over DDP ranks) into the running
        `<name>_mean`, `<name>_var` and `<name>_count` buffers."""
        x = x.double()
        moments = torch.cat([x.new_tensor([len(x)]), x.sum(0), x.square().sum(0)])
        moments = self.trainer.strategy.reduce(moments, reduce_op="sum")
        n, total, total_sq = moments[0], *moments[1:].chunk(2)
        mean, var = total / n, total_sq / n - (total / n).square()
        running_mean, running_var, count = (
            getattr(self, f"{name}_{k}") for k in ("mean", "var", "count")
        )
        old_mean, old_var = running_mean.double(), running_var.double()
        delta, new_count = mean - old_mean, count + n
        merged_var = old_var * count + var * n + delta.square() * count * n / new_count
        running_mean.copy_(old_mean + delta * n / new_count)
        running_var.copy_(merged_var / new_count)
        count.copy_(new_count)

    def training_step(self, envs: Any, batch_idx: int) -> None:
        batch, returns, lengths = self._collect(envs)
        self._unlogged_stats += self._update(batch)
        self._unlogged_rollouts += 1
        self._unlogged_episodes += (sum(returns), sum(lengths), len(returns))
        if self.hparams.normalize_obs:
            self._update_moments("obs", batch["obs"])
        schedule = self.lr_schedulers()
        schedule.step()
        self.env_steps += len(batch["obs"]) * self.trainer.world_size
        if self.is_logging_step(schedule.last_epoch - 1):  # the schedule counts rollouts
            self._log_training()

    def _log_training(self) -> None:
        """Log the means over the rollouts and the episodes since the last write, taken over
        every DDP rank (all ranks log on the same rollouts)."""
        local = torch.cat(
            [
                self._unlogged_stats / self._unlogged_rollouts,
                torch.as_tensor(self._unlogged_episodes, dtype=torch.float32, device=self.device),
            ]
        )
        summed = self.trainer.strategy.reduce(local, reduce_op="sum")
        stats = summed[: len(STATS)] / self.trainer.world_size
        self.log_dict({f"train/{k}": v for k, v in zip(STATS, stats, strict=True)})
        self.log("train/env_steps", self.env_steps.float())
        if self.hparams.objective == "kl_penalty":
            self.log("train/kl_beta", self.kl_beta)
        total_return, total_length, episodes = summed[len(STATS) :].tolist()
        if episodes:
            self.log("train/return", total_return / episodes, prog_bar=True)
            self.log("train/length", total_length / episodes)
        self._unlogged_stats, self._unlogged_rollouts = 0.0, 0
        self._unlogged_episodes = np.zeros(3)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer_factory, self.parameters(), self.hparams.lr)
        self._horizon = self._rollout_horizon()
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda rollout: self._remaining(rollout) if self.hparams.anneal_lr else 1.0
        )
        return [optimizer], [schedule]

    def _rollout_horizon(self) -> float:
        """The rollouts this fit runs, over which annealing goes to zero: max_epochs x rollouts
        per epoch, or fewer when `max_steps` ends the fit first. Under manual optimization
        `max_steps` counts optimizer steps, update_epochs x minibatches per rollout."""
        trainer, hp = self.trainer, self.hparams
        if trainer.max_steps == -1:
            return trainer.estimated_stepping_batches  # one scheduler step per rollout
        by_epochs = math.inf
        if trainer.max_epochs != -1:
            trainer.estimated_stepping_batches  # noqa: B018 (loads the loader: num_training_batches)
            by_epochs = trainer.max_epochs * trainer.num_training_batches
        num_envs = getattr(trainer.datamodule, "num_envs", None)
        if num_envs is None:
            raise HyperparameterError(
                "PPO with --trainer.max_steps needs the gym datamodule (its num_envs turns "
                "optimizer steps into rollouts); set the length with max_epochs instead."
            )
        per_rollout = hp.update_epochs * self._minibatch_count(hp.rollout_steps * num_envs)
        by_steps = math.ceil(trainer.max_steps / per_rollout)
        if hp.target_kl is not None and by_steps < by_epochs:
            rank_zero_warn(
                "PPO with target_kl and --trainer.max_steps: updates stopped early take fewer "
                "optimizer steps, so annealing can reach zero before max_steps; set the length "
                "with max_epochs instead."
            )
        return min(by_epochs, by_steps)

    def _remaining(self, rollouts: int) -> float:
        """The share of the training horizon left after `rollouts` rollouts: the factor by
        which annealing scales the learning rate and the clip range."""
        return max(0.0, 1.0 - rollouts / max(self._horizon, 1))

    # ----------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def run_episodes(
        self, envs: Any, render: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
        """One deterministic episode in each of `envs`: (returns, lengths, frames of the first
        environment if `render`)."""
        self._check_spaces(envs)
        obs = envs.reset()[0]
        returns = np.zeros(envs.num_envs)
        lengths = np.zeros(envs.num_envs, dtype=np.int64)
        running = np.ones(envs.num_envs, dtype=bool)
        frames = []
        while running.any():
            if render:
                frames.append(envs.render()[0])
            action = self._sample(self(self._observe(obs))[0], deterministic=True)
            obs, reward, terminated, truncated, _ = envs.step(self._to_env(action, envs))
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
        return (
            torch.as_tensor(returns, device=self.device),
            torch.as_tensor(lengths, device=self.device),
            frames,
        )

    def _log_episodes(self, stage: str, envs: Any) -> None:
        returns, lengths, _ = self.run_episodes(envs)
        returns = self.all_gather(returns.float()).flatten()  # every rank's episodes
        lengths = self.all_gather(lengths.float()).flatten()
        n = len(returns)
        self.log(f"{stage}/return", returns.mean(), batch_size=n, sync_dist=True, prog_bar=True)
        self.log(f"{stage}/return_std", returns.std(unbiased=False), batch_size=n, sync_dist=True)
        self.log(f"{stage}/length", lengths.mean(), batch_size=n, sync_dist=True)

    def validation_step(self, envs: Any, batch_idx: int) -> None:
        self._log_episodes("val", envs)

    def test_step(self, envs: Any, batch_idx: int) -> None:
        self._log_episodes("test", envs)

    def predict_step(self, envs: Any, batch_idx: int) -> dict[str, Any]:
        """A deterministic episode per environment: returns, lengths, and the first
        environment's frames when the environments render (the EpisodeGif callback saves them)."""
        returns, lengths, frames = self.run_episodes(envs, render=envs.render_mode == "rgb_array")
        return {"returns": returns, "lengths": lengths, "frames": frames}

    def configure_callbacks(self) -> list[L.Callback]:
        return [EpisodeGif()]
