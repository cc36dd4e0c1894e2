"""Gymnasium environments as a datamodule: each training batch is the vector environment to
collect one rollout from, each evaluation batch a freshly made one to run episodes on.

The loaders are plain iterables rather than DataLoaders, so Lightning injects no sampler:
under DDP every rank collects its own rollouts from its own seed stream."""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Literal

import gymnasium as gym
import lightning as L
import numpy as np

from registry import ConfigurationError, register_datamodule

# Seed streams: the same `seed` gives unrelated episodes in training and in each evaluation.
STREAMS = {"fit": 0, "validate": 1, "test": 2, "predict": 3}


class SeededVectorEnv(gym.vector.VectorWrapper):
    """Applies its seeds on the first ``reset()``, so whoever steps the environments need not
    know them; later resets continue the seeded generators."""

    def __init__(self, env: gym.vector.VectorEnv, seeds: list[int]) -> None:
        super().__init__(env)
        self._seeds: list[int] | None = seeds

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        seed, self._seeds = (self._seeds if seed is None else seed), None
        return self.env.reset(seed=seed, options=options)


class RolloutLoader:
    """Yields the same training environments `length` times: one rollout per batch."""

    def __init__(self, envs: gym.vector.VectorEnv, length: int) -> None:
        self.envs = envs
        self.length = length

    def __iter__(self) -> Iterator[gym.vector.VectorEnv]:
        return itertools.repeat(self.envs, self.length)

    def __len__(self) -> int:
        return self.length


class EpisodeLoader:
    """Yields `length` freshly made (and afterwards closed) environments, so every evaluation
    starts from the same seeded states whatever happened before."""

    def __init__(self, make: Callable[..., gym.vector.VectorEnv], seeds: list[list[int]]) -> None:
        self.make = make
        self.seeds = seeds

    def __iter__(self) -> Iterator[gym.vector.VectorEnv]:
        for seeds in self.seeds:
            envs = self.make(num_envs=len(seeds), seeds=seeds)
            try:
                yield envs
            finally:
                envs.close()

    def __len__(self) -> int:
        return len(self.seeds)


@register_datamodule(
    "gym",
    kind="environments",
    test_kwargs={"env_id": "CartPole-v1", "num_envs": 2, "eval_episodes": 2},
)
class GymData(L.LightningDataModule):
    """Seeded gymnasium vector environments: rollouts to train on, episodes to evaluate.

    Fit's batches are the training environments (one rollout each); validate, test and predict
    run deterministic episodes on fresh ones. Each DDP rank gets its own seed stream."""

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        num_envs: int = 8,
        seed: int = 0,
        vectorization: Literal["sync", "async"] = "sync",
        rollouts_per_epoch: int = 8,
        eval_episodes: int = 20,
        predict_episodes: int = 1,
        render: bool = False,
    ) -> None:
        """
        Args:
            env_id: a registered gymnasium environment id, e.g. CartPole-v1 or Pendulum-v1.
            num_envs: training environments stepped in parallel (per DDP rank).
            seed: base of every seed stream (training, evaluation, rank).
            vectorization: sync (one process; best for cheap envs) or async (a process per env).
            rollouts_per_epoch: training batches per epoch; validation follows each epoch.
            eval_episodes: deterministic episodes per validation or test (per DDP rank).
            predict_episodes: episodes that `predict` runs, one batch each.
            render: make predict's environments render RGB frames (needs pygame for classic
                control), which the EpisodeGif callback writes as GIFs.
        """
        super().__init__()
        for name, value in (
            ("num_envs", num_envs),
            ("rollouts_per_epoch", rollouts_per_epoch),
            ("eval_episodes", eval_episodes),
            ("predict_episodes", predict_episodes),
        ):
            if value < 1:
                raise ConfigurationError(f"{name} must be >= 1, got {value}")
        self.env_id = env_id
        self.num_envs = num_envs
        self.seed = seed
        self.vectorization = vectorization
        self.rollouts_per_epoch = rollouts_per_epoch
        self.eval_episodes = eval_episodes
        self.predict_episodes = predict_episodes
        self.render = render
        self.train_envs: gym.vector.VectorEnv | None = None

    @functools.cached_property
    def _spaces(self) -> tuple[gym.Space, gym.Space]:
        try:
            env = gym.make(self.env_id)
        except gym.error.Error as err:
            raise ConfigurationError(
                f"cannot make gymnasium environment {self.env_id!r}: {err}"
            ) from err
        env.close()
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise ConfigurationError(f"{self.env_id}: only Box observation spaces are supported")
        if not isinstance(env.action_space, gym.spaces.Discrete | gym.spaces.Box):
            raise ConfigurationError(
                f"{self.env_id}: only Discrete or Box action spaces are supported"
            )
        return env.observation_space, env.action_space

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self._spaces[0].shape))

    @property
    def continuous(self) -> bool:
        return isinstance(self._spaces[1], gym.spaces.Box)

    @property
    def action_dim(self) -> int:
        action_space = self._spaces[1]
        return int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)

    def _seeds(self, stage: str, batch: int, count: int) -> list[int]:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        state = np.random.SeedSequence([self.seed, STREAMS[stage], rank, batch])
        return [int(s) for s in state.generate_state(count)]

    def _make(
        self,
        num_envs: int,
        seeds: list[int],
        vectorization: str = "sync",
        render_mode: str | None = None,
    ) -> gym.vector.VectorEnv:
        # Same-step autoreset hands over the final observation of a truncated episode, which
        # the learner bootstraps from.
        envs = gym.make_vec(
            self.env_id,
            num_envs=num_envs,
            vectorization_mode=vectorization,
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
            render_mode=render_mode,
        )
        return SeededVectorEnv(envs, seeds)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_envs is None:
            self.train_envs = self._make(
                self.num_envs, self._seeds("fit", 0, self.num_envs), self.vectorization
            )
        if stage == "predict" and self.render:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame without a display

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.train_envs is not None:
            self.train_envs.close()
            self.train_envs = None

    def _episodes(self, stage: str, batches: int, per_batch: int) -> EpisodeLoader:
        render_mode = "rgb_array" if stage == "predict" and self.render else None
        make = functools.partial(self._make, render_mode=render_mode)
        return EpisodeLoader(make, [self._seeds(stage, b, per_batch) for b in range(batches)])

    def train_dataloader(self) -> RolloutLoader:
        if self.train_envs is None:
            raise RuntimeError("GymData has no training environments; call setup('fit') first")
        return RolloutLoader(self.train_envs, self.rollouts_per_epoch)

    def val_dataloader(self) -> EpisodeLoader:
        return self._episodes("validate", 1, self.eval_episodes)

    def test_dataloader(self) -> EpisodeLoader:
        return self._episodes("test", 1, self.eval_episodes)

    def predict_dataloader(self) -> EpisodeLoader:
        return self._episodes("predict", self.predict_episodes, 1)
