"""Proximal Policy Optimization (Schulman et al., 2017), written to read in the order it runs,
as CleanRL's ppo.py does. The pure pieces come first: generalized advantage estimation, the
clipped surrogate, running statistics and the actor-critic network. Then the `PPO` module, whose
`training_step` is one iteration of CleanRL's loop (collect a rollout, estimate advantages, run
epochs of minibatch updates, log) under Lightning's manual optimization; Lightning does the rest
(validation, checkpoints, logging, early stopping, DDP)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from callbacks import EpisodeGif
from lit_modules.base import ConfigurationError, ZooBase, check_non_negative, check_positive
from lit_modules.optimization import (
    OptimizerFactory,
    OptimizerSpec,
    build_optimizer,
    checked_optimizer,
)
from registry import register_model

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


class RunningMeanStd(nn.Module):
    """Running mean and variance of the rows of every batch seen (Chan et al.'s parallel
    merge), kept as buffers so that checkpoints carry them: observation statistics for
    normalize_obs, discounted-return statistics for normalize_reward."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(
        self, x: torch.Tensor, sum_over_ranks: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        """Merge the moments of the rows of `x`, summed over DDP ranks, into the running ones."""
        x = x.double()
        moments = sum_over_ranks(torch.cat([x.new_tensor([len(x)]), x.sum(0), x.square().sum(0)]))
        n, total, total_sq = moments[0], *moments[1:].chunk(2)
        mean, var = total / n, total_sq / n - (total / n).square()
        old_mean, old_var = self.mean.double(), self.var.double()
        delta, new_count = mean - old_mean, self.count + n
        merged_var = old_var * self.count + var * n + delta.square() * self.count * n / new_count
        self.mean.copy_(old_mean + delta * n / new_count)
        self.var.copy_(merged_var / new_count)
        self.count.copy_(new_count)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """`x` standardized by the running statistics and clipped to +-10, as SB3 does."""
        return ((x - self.mean) / (self.var + 1e-8).sqrt()).clamp(-10.0, 10.0)


# PPO builds a policy distribution in every minibatch step, where, on networks as small as
# CartPole's and Pendulum's, torch's Categorical and Independent(Normal) made an update step
# 5-12% slower than these two subclasses (bench/ppo_distributions.py), which compute the same
# values (tests/test_ppo.py checks) in fewer autograd ops.


class LogSoftmaxCategorical(Categorical):
    """torch's Categorical over `logits`, normalized by one log_softmax (torch's subtracts a
    logsumexp, whose backward costs more), with log_prob and entropy read off them."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits.log_softmax(-1)
        self._param, self._num_events = self.logits, logits.shape[-1]  # as torch's __init__ sets
        Distribution.__init__(self, logits.shape[:-1], validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.logits.gather(-1, value.unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)


class DiagonalGaussian(Normal):
    """A Gaussian over action vectors with independent dimensions, standard deviations
    exp(`log_std`): torch's Independent(Normal(loc, exp(log_std)), 1), log_prob and entropy
    summed over the action's dimensions."""

    def __init__(self, loc: torch.Tensor, log_std: torch.Tensor) -> None:
        self.loc, self.log_std = loc, log_std.expand_as(loc)
        self.scale = self.log_std.exp()
        Distribution.__init__(self, loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = (value - self.loc) / self.scale
        return (-0.5 * z.square() - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum(-1)


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


class ActorCritic(nn.Module):
    """The policy and the value function: a categorical policy over discrete actions, or a
    Gaussian with a state-independent log-std for continuous ones, and a value head. Their tanh
    bodies run as one batched `TanhMLPs` (the actor's is copy 0, the critic's the last: the
    same one if `shared`)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        continuous: bool,
        hidden_sizes: list[int],
        shared: bool,
        log_std_init: float,
    ) -> None:
        super().__init__()
        widths = [obs_dim, *hidden_sizes]
        self.bodies = TanhMLPs(widths, copies=1 if shared else 2)
        self.actor_head = _linear(widths[-1], action_dim, gain=0.01)
        self.critic_head = _linear(widths[-1], 1, gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), log_std_init)) if continuous else None

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the policy's parameters: action logits or the Gaussian's mean; the state value)."""
        hidden = self.bodies(obs)
        return self.actor_head(hidden[0]), self.critic_head(hidden[-1]).squeeze(-1)

    def distribution(self, policy_out: torch.Tensor) -> Distribution:
        """The policy's distribution over actions, from `forward`'s first output."""
        if self.log_std is None:
            return LogSoftmaxCategorical(policy_out)
        return DiagonalGaussian(policy_out, self.log_std)

    def sample(self, policy_out: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """A draw from `distribution(policy_out)`, or its mode if `deterministic`, without building
        it: the rollout samples at every environment step, where a torch.distributions object
        costs several times what this does."""
        if self.log_std is None:
            if deterministic:
                return policy_out.argmax(-1)
            # Gumbel-max: argmax of logits - log(Exp(1) noise) is a draw from softmax(logits).
            return (policy_out - torch.empty_like(policy_out).exponential_().log()).argmax(-1)
        if deterministic:
            return policy_out
        return policy_out + self.log_std.exp() * torch.randn_like(policy_out)

    def get_action_and_value(
        self, obs: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Distribution, torch.Tensor]:
        """CleanRL's interface: (`action`, or one sampled if None; the policy's distribution at
        `obs`; the value of `obs`)."""
        policy_out, value = self(obs)
        if action is None:
            action = self.sample(policy_out)
        return action, self.distribution(policy_out), value


class Rollout(NamedTuple):
    """What one rollout collected, (steps, envs) per field."""

    obs: torch.Tensor  # as observed, before normalization
    actions: torch.Tensor
    log_probs: torch.Tensor  # of the actions, under the policy that chose them
    values: torch.Tensor
    rewards: torch.Tensor  # scaled (normalize_reward), plus gamma V(final obs) at time limits
    dones: torch.Tensor
    next_value: torch.Tensor  # (envs,): the value of the observation after the last step

    def batch(self, advantages: torch.Tensor, returns: torch.Tensor) -> Batch:
        """The transitions flattened into samples, with their advantages and value targets."""
        fields = (self.obs, self.actions, self.log_probs, self.values, advantages, returns)
        return Batch(*(field.flatten(0, 1) for field in fields))


class Batch(NamedTuple):
    """A rollout's transitions flattened into samples, with their advantages and value targets."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def select(self, index: torch.Tensor) -> Batch:
        return Batch(*(field[index] for field in self))


@dataclass
class EnvState:
    """The training environments between rollouts: their last observation and, for each
    environment, its running episode's return and length and (for normalize_reward) its
    discounted return."""

    envs: Any
    obs: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    discounted_return: np.ndarray

    @classmethod
    def reset(cls, envs: Any) -> EnvState:
        n = envs.num_envs
        obs = envs.reset()[0]
        return cls(envs, obs, np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n))

    def end_step(self, reward: np.ndarray, done: np.ndarray) -> tuple[list[float], list[int]]:
        """Add a step's rewards to the running episodes; returns the returns and lengths of the
        episodes that ended with it, which start again from zero."""
        self.episode_return += reward
        self.episode_length += 1
        if not done.any():
            return [], []
        ended = self.episode_return[done].tolist(), self.episode_length[done].tolist()
        self.episode_return[done], self.episode_length[done] = 0.0, 0
        return ended


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
            obs_dim=obs_dim, action_dim=action_dim, rollout_steps=rollout_steps,
            update_epochs=update_epochs, minibatch_size=minibatch_size, clip_coef=clip_coef,
            kl_penalty_target=kl_penalty_target, max_grad_norm=max_grad_norm,
            **{f"hidden_sizes[{i}]": h for i, h in enumerate(hidden_sizes)},
            **({} if target_kl is None else {"target_kl": target_kl}),
            **({} if value_clip is None else {"value_clip": value_clip}),
        )  # fmt: skip
        check_non_negative(kl_coef=kl_coef, value_coef=value_coef, entropy_coef=entropy_coef)
        for name, value in (("gamma", gamma), ("gae_lambda", gae_lambda)):
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1], got {value}")

        self.agent = ActorCritic(
            obs_dim, action_dim, continuous, hidden_sizes, shared_network, log_std_init
        )
        # Checkpointed state besides the weights: resume continues all of it.
        self.obs_rms = RunningMeanStd(obs_dim) if normalize_obs else None
        self.return_rms = RunningMeanStd(1) if normalize_reward else None
        self.register_buffer("kl_beta", torch.tensor(float(kl_coef)))
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.long))

        self.automatic_optimization = False
        self.example_input_array = torch.zeros(1, obs_dim)
        self.env_state: EnvState | None = None  # set by the first rollout
        # Since the last logged rollout: summed STATS, rollouts, and the episodes that ended
        # (summed returns, summed lengths, count).
        self._unlogged_stats: torch.Tensor | float = 0.0
        self._unlogged_rollouts = 0
        self._unlogged_episodes = np.zeros(3)
        # This rank's running episodes from a checkpoint, taken up by the first rollout.
        self._resumed_episodes: dict[str, torch.Tensor] | None = None

    def configure_callbacks(self) -> list[L.Callback]:
        return [EpisodeGif()]

    # ------------------------------------------------------- before the first rollout: schedules

    def configure_optimizers(self) -> Any:
        """The optimizer (Adam, eps 1e-5, by default) with a learning rate stepped once per
        rollout."""
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
            raise ConfigurationError(
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

    # ------------------------------------------------------------- one iteration of the loop

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action logits, or the Gaussian's mean; state value) for a batch of observations."""
        return self.agent(self.normalize(obs))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the networks see them: standardized if normalize_obs."""
        return obs if self.obs_rms is None else self.obs_rms.normalize(obs)

    def training_step(self, envs: Any, batch_idx: int) -> None:
        """One iteration of PPO: collect a rollout, estimate advantages, update the networks on
        it for update_epochs epochs of minibatches, then count and log."""
        hp = self.hparams
        rollout, episodes = self.collect_rollout(envs)
        advantages, returns = compute_gae(
            rollout.rewards, rollout.values, rollout.dones, rollout.next_value,
            hp.gamma, hp.gae_lambda,
        )  # fmt: skip
        stats = self.update(rollout.batch(advantages, returns))
        if self.obs_rms is not None:
            self.obs_rms.update(rollout.obs.flatten(0, 1), self._sum_over_ranks)
        self.lr_schedulers().step()
        self.env_steps += rollout.rewards.numel() * self.trainer.world_size
        self.log_training(stats, episodes)

    @torch.no_grad()
    def collect_rollout(self, envs: Any) -> tuple[Rollout, tuple[list[float], list[int]]]:
        """Step `envs` for rollout_steps with the sampling policy. Returns the rollout, and the
        returns and lengths of the episodes that ended in it (raw, as the environments paid)."""
        hp = self.hparams
        if self.env_state is None or self.env_state.envs is not envs:
            self._check_spaces(envs)
            # Environments restored from a checkpoint hand back their last observation here.
            self.env_state = EnvState.reset(envs)
            self._resume_episodes(self.env_state)
        state, steps = self.env_state, hp.rollout_steps
        obs = torch.empty(steps, envs.num_envs, hp.obs_dim, device=self.device)
        policy_outs, actions, values = [], [], []
        rewards = np.empty((steps, envs.num_envs), dtype=np.float32)
        bootstraps = np.zeros((steps, envs.num_envs), dtype=np.float32)
        dones = np.empty((steps, envs.num_envs), dtype=np.float32)
        returns: list[float] = []
        lengths: list[int] = []
        for t in range(steps):
            obs[t] = self._observe(state.obs)
            policy_out, value = self(obs[t])
            action = self.agent.sample(policy_out)
            state.obs, reward, terminated, truncated, info = envs.step(self._to_env(action, envs))
            rewards[t] = reward
            cut = truncated & ~terminated
            if cut.any():  # a time limit, not a terminal state: bootstrap from the final obs
                final = self._observe(np.stack(info["final_obs"][cut]))
                bootstraps[t, cut] = hp.gamma * self(final)[1].cpu().numpy()
            done = terminated | truncated
            dones[t] = done
            ended_returns, ended_lengths = state.end_step(reward, done)
            returns += ended_returns
            lengths += ended_lengths
            policy_outs.append(policy_out)
            actions.append(action)
            values.append(value)
        if hp.normalize_reward:
            rewards = self.scale_rewards(rewards, dones, state.discounted_return)
        rewards += bootstraps  # values, and so bootstraps, are in the scaled units already
        actions_t = torch.stack(actions)
        rollout = Rollout(
            obs=obs,
            actions=actions_t,
            log_probs=self.agent.distribution(torch.stack(policy_outs)).log_prob(actions_t),
            values=torch.stack(values),
            rewards=torch.as_tensor(rewards, device=self.device),
            dones=torch.as_tensor(dones, device=self.device),
            next_value=self(self._observe(state.obs))[1],
        )
        return rollout, (returns, lengths)

    def _observe(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device).flatten(1)

    def _to_env(self, actions: torch.Tensor, envs: Any) -> np.ndarray:
        """Actions as the environments take them: continuous ones clipped to the bounds."""
        actions = actions.cpu().numpy()
        if not self.hparams.continuous:
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
            raise ConfigurationError(
                f"the environments have (obs_dim, action_dim, continuous) = {found} but the model "
                f"was built for {expected}; set --model.obs_dim/action_dim/continuous (the CLI "
                f"links them from the data)."
            )

    def scale_rewards(
        self, rewards: np.ndarray, dones: np.ndarray, discounted_return: np.ndarray
    ) -> np.ndarray:
        """normalize_reward: the rollout's rewards divided by the running std of the discounted
        return, which this rollout's returns update first, and clipped to +-10 (SB3's
        VecNormalize). `discounted_return`, per environment, runs on across rollouts."""
        returns = np.empty_like(rewards)
        for t in range(len(rewards)):
            discounted_return *= self.hparams.gamma
            discounted_return += rewards[t]
            returns[t] = discounted_return
            discounted_return[dones[t] > 0] = 0.0
        returns_t = torch.as_tensor(returns, device=self.device).view(-1, 1)
        self.return_rms.update(returns_t, self._sum_over_ranks)
        scale = np.sqrt(self.return_rms.var.item() + 1e-8)
        return np.clip(rewards / scale, -10.0, 10.0).astype(np.float32)

    def _sum_over_ranks(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(x, reduce_op="sum")

    def update(self, batch: Batch) -> torch.Tensor:
        """update_epochs passes over the batch in random minibatches, one optimizer step each;
        returns the mean of each of STATS over the steps."""
        hp = self.hparams
        optimizer = self.optimizers()
        clip_coef = hp.clip_coef
        if hp.anneal_clip:
            clip_coef *= self._remaining(self.lr_schedulers().last_epoch)
        totals, steps = torch.zeros(len(STATS), device=self.device), 0
        for _ in range(hp.update_epochs):
            epoch_kl = []
            for minibatch in self._minibatches(batch):
                loss, stats = self.compute_loss(minibatch, clip_coef)
                optimizer.zero_grad()
                self.manual_backward(loss)
                self.clip_gradients(optimizer, hp.max_grad_norm, "norm")
                optimizer.step()
                totals += stats
                epoch_kl.append(stats[STATS.index("approx_kl")])
                steps += 1
            # Ranks agree on the KL so that they all stop after the same number of steps.
            kl = self.trainer.strategy.reduce(torch.stack(epoch_kl).mean(), reduce_op="mean")
            if hp.target_kl is not None and kl > hp.target_kl:
                break
        if hp.objective == "kl_penalty":  # move the penalty towards its target KL
            if kl < hp.kl_penalty_target / 1.5:
                self.kl_beta /= 2.0
            elif kl > hp.kl_penalty_target * 1.5:
                self.kl_beta *= 2.0
        return totals / steps

    def _minibatches(self, batch: Batch) -> Iterator[Batch]:
        """The batch in random minibatches of about minibatch_size; a batch that is one
        minibatch is used as it is, since the loss does not depend on the sample order."""
        size = len(batch.obs)
        chunks = self._minibatch_count(size)
        if chunks == 1:
            yield batch
            return
        for index in torch.randperm(size, device=self.device).chunk(chunks):
            yield batch.select(index)

    def _minibatch_count(self, rollout_size: int) -> int:
        return max(1, rollout_size // self.hparams.minibatch_size)

    def compute_loss(self, minibatch: Batch, clip_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch's loss, and its STATS (detached, in that order)."""
        hp, mb = self.hparams, minibatch
        _, dist, value = self.agent.get_action_and_value(self.normalize(mb.obs), mb.actions)
        log_ratio = dist.log_prob(mb.actions) - mb.log_probs
        ratio = log_ratio.exp()
        advantages = (mb.advantages - mb.advantages.mean()) / (
            mb.advantages.std(unbiased=False) + 1e-8
        )

        # Policy loss
        if hp.objective == "clip":
            policy_loss = clipped_surrogate(ratio, advantages, clip_coef).mean()
        else:
            kl = ((ratio - 1.0) - log_ratio).mean()
            policy_loss = self.kl_beta * kl - (ratio * advantages).mean()

        # Value loss
        value_error = (value - mb.returns).square()
        if hp.value_clip is not None:
            clipped = mb.values + (value - mb.values).clamp(-hp.value_clip, hp.value_clip)
            value_error = torch.max(value_error, (clipped - mb.returns).square())
        value_loss = value_error.mean()

        entropy = dist.entropy().mean()
        loss = policy_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy
        with torch.no_grad():
            # (ratio - 1) - log ratio: a non-negative, unbiased estimate of KL(old || new).
            approx_kl = ((ratio - 1.0) - log_ratio).mean()
            clip_frac = ((ratio - 1.0).abs() > clip_coef).float().mean()
            stats = torch.stack([loss, policy_loss, value_loss, entropy, approx_kl, clip_frac])
        return loss, stats

    def log_training(self, stats: torch.Tensor, episodes: tuple[list[float], list[int]]) -> None:
        """Add this rollout's STATS and ended episodes to those since the last write; on the
        logger's steps (see `is_logging_step`), log their means over the rollouts, the episodes
        and every DDP rank (all ranks log on the same rollouts)."""
        returns, lengths = episodes
        self._unlogged_stats += stats
        self._unlogged_rollouts += 1
        self._unlogged_episodes += (sum(returns), sum(lengths), len(returns))
        if not self.is_logging_step(self.lr_schedulers().last_epoch - 1):  # counts rollouts
            return
        local = torch.cat(
            [
                self._unlogged_stats / self._unlogged_rollouts,
                torch.as_tensor(self._unlogged_episodes, dtype=torch.float32, device=self.device),
            ]
        )
        summed = self._sum_over_ranks(local)
        means = summed[: len(STATS)] / self.trainer.world_size
        self.log_dict({f"train/{k}": v for k, v in zip(STATS, means, strict=True)})
        self.log("train/env_steps", self.env_steps.float())
        if self.hparams.objective == "kl_penalty":
            self.log("train/kl_beta", self.kl_beta)
        total_return, total_length, count = summed[len(STATS) :].tolist()
        if count:
            self.log("train/return", total_return / count, prog_bar=True)
            self.log("train/length", total_length / count)
        self._unlogged_stats, self._unlogged_rollouts = 0.0, 0
        self._unlogged_episodes = np.zeros(3)

    # ----------------------------------------------------------------------------- resume

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every rank's running episodes and not yet logged statistics go into the checkpoint
        (the environments themselves are the datamodule's), so a resumed fit continues them."""
        super().on_save_checkpoint(checkpoint)
        state = self.env_state or EnvState(None, None, *(np.zeros(0),) * 3)  # before any rollout
        local = {
            "episode_return": torch.as_tensor(state.episode_return),
            "episode_length": torch.as_tensor(state.episode_length),
            "discounted_return": torch.as_tensor(state.discounted_return),
            "unlogged_stats": torch.zeros(len(STATS)) + torch.as_tensor(self._unlogged_stats).cpu(),
            "unlogged_rollouts": torch.tensor(self._unlogged_rollouts),
            "unlogged_episodes": torch.as_tensor(self._unlogged_episodes),
        }
        world_size = self.trainer.world_size
        checkpoint["ppo_rollouts"] = {
            key: self.all_gather(value.to(self.device)).cpu().reshape(world_size, *value.shape)
            for key, value in local.items()
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("ppo_rollouts")
        trainer = self._trainer
        if saved is None or trainer is None or len(saved["episode_return"]) != trainer.world_size:
            return  # evaluation, or another number of ranks: episodes start afresh
        mine = {key: value[trainer.global_rank] for key, value in saved.items()}
        self._resumed_episodes = mine
        self._unlogged_stats = mine["unlogged_stats"].to(self.device)
        self._unlogged_rollouts = int(mine["unlogged_rollouts"])
        self._unlogged_episodes = mine["unlogged_episodes"].numpy()

    def _resume_episodes(self, state: EnvState) -> None:
        """Continue the checkpoint's running episodes in `state` (the environments continue
        them too: the gym datamodule restored them)."""
        saved, self._resumed_episodes = self._resumed_episodes, None
        if saved is not None and len(saved["episode_return"]) == len(state.episode_return):
            state.episode_return = saved["episode_return"].numpy()
            state.episode_length = saved["episode_length"].numpy()
            state.discounted_return = saved["discounted_return"].numpy()

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
            action = self.agent.sample(self(self._observe(obs))[0], deterministic=True)
            obs, reward, terminated, truncated, _ = envs.step(self._to_env(action, envs))
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
        return (
            torch.as_tensor(returns, device=self.device),
            torch.as_tensor(lengths, device=self.device),
            frames,
        )

    def validation_step(self, envs: Any, batch_idx: int) -> None:
        self._log_episodes("val", envs)

    def test_step(self, envs: Any, batch_idx: int) -> None:
        self._log_episodes("test", envs)

    def _log_episodes(self, stage: str, envs: Any) -> None:
        returns, lengths, _ = self.run_episodes(envs)
        returns = self.all_gather(returns.float()).flatten()  # every rank's episodes
        lengths = self.all_gather(lengths.float()).flatten()
        n = len(returns)
        self.log(f"{stage}/return", returns.mean(), batch_size=n, sync_dist=True, prog_bar=True)
        self.log(f"{stage}/return_std", returns.std(unbiased=False), batch_size=n, sync_dist=True)
        self.log(f"{stage}/length", lengths.mean(), batch_size=n, sync_dist=True)

    def predict_step(self, envs: Any, batch_idx: int) -> dict[str, Any]:
        """A deterministic episode per environment: returns, lengths, and the first
        environment's frames when the environments render (the EpisodeGif callback saves them)."""
        returns, lengths, frames = self.run_episodes(envs, render=envs.render_mode == "rgb_array")
        return {"returns": returns, "lengths": lengths, "frames": frames}
