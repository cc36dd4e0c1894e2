"""Gymnasium environments as a datamodule: each training batch is the vector environment to
collect one rollout from, each evaluation batch a freshly made one to run episodes on.

The loaders are plain iterables rather than DataLoaders, so Lightning injects no sampler:
under DDP every rank collects its own rollouts from its own seed stream. Checkpoints hold the
training environments of every rank mid-episode, so a resumed fit continues the same episodes."""

from __future__ import annotations

import functools
import itertools
import os
import pickle
from collections.abc import Callable, Iterator
from typing import Any, Literal

import gymnasium as gym
import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn

from registry import ConfigurationError, register_datamodule

# Seed streams: the same `seed` gives unrelated episodes in training and in each evaluation.
STREAMS = {"fit": 0, "validate": 1, "test": 2, "predict": 3}


class SeededVectorEnv(gym.vector.VectorWrapper):
    """Applies its seeds on the first ``reset()``, so whoever steps the environments need not
    know them; later resets continue the seeded generators.

    Its state (``get_state``/``set_state``) is every environment, wrappers and generators
    included, and the observation they last returned; after ``set_state`` the next ``reset()``
    without a seed hands that observation back instead of starting new episodes, so a learner
    that begins by resetting continues the episodes where they were."""

    def __init__(self, env: gym.vector.VectorEnv, seeds: list[int]) -> None:
        super().__init__(env)
        self._seeds: list[int] | None = seeds
        self._last_obs: Any = None
        self._continue_with: Any = None  # the observation a restored state resumes from

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is None and self._continue_with is not None:
            obs, self._continue_with = self._continue_with, None
            return obs, {}
        seed, self._seeds = (self._seeds if seed is None else seed), None
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = obs
        return obs, info

    def step(self, actions: Any):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    def get_state(self) -> bytes:
        """The environments (read through the vector API, so async ones too) as pickled bytes;
        raises pickle's error when an environment cannot be pickled."""
        environments = self.env.unwrapped.get_attr("__dict__")
        return pickle.dumps({"envs": environments, "obs": self._last_obs, "seeds": self._seeds})

    def set_state(self, blob: bytes) -> None:
        """Restore `get_state`'s environments; a ValueError if their number differs."""
        state = pickle.loads(blob)
        if len(state["envs"]) != self.num_envs:
            raise ValueError(f"{len(state['envs'])} environments saved, {self.num_envs} made")
        self.env.unwrapped.set_attr("__dict__", state["envs"])
        self._seeds, self._last_obs = state["seeds"], state["obs"]
        self._continue_with = state["obs"]


class RolloutLoader:
    """Yields the same training environments `length` times: one rollout per batch."""

    def __init__(self, envs: gym.vector.VectorEnv, length: int) -> None:
        self.envs = envs
        self.length = length

    def __iter__(self) -> Iterator[gym.vector.VectorEnv]:
        return itertools.repeat(self.envs, self.length)

    def __len__(self) -> int:
        return self.length

    # Every batch is the same, so a fit resumed mid-epoch needs only Lightning's batch count;
    # having a state tells Lightning so. The environments are the datamodule's state.
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


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
        self.train_envs: SeededVectorEnv | None = None
        self._saved_train_envs: bytes | None = None  # from a checkpoint, until setup("fit")

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
        if stage == "fit" and self._saved_train_envs is not None:
            self._restore_train_envs(self._saved_train_envs)
            self._saved_train_envs = None
        if stage == "predict" and self.render:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame without a display

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.train_envs is not None:
            self.train_envs.close()
            self.train_envs = None

    def state_dict(self) -> dict[str, Any]:
        """Every rank's training environments, mid-episode (gathered from all ranks, which all
        write checkpoints' contents, though rank 0 alone writes the file)."""
        if self.train_envs is None:
            return {}
        try:
            blob = self.train_envs.get_state()
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            rank_zero_warn(
                f"the {self.env_id} environments cannot be saved in the checkpoint ({err}); a fit "
                "resumed from it starts new episodes instead of continuing these."
            )
            blob = b""
        blobs = [blob]
        if dist.is_available() and dist.is_initialized():
            blobs = [b""] * dist.get_world_size()
            dist.all_gather_object(blobs, blob)
        return {"train_envs": [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("train_envs")
        if not saved:
            return
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if len(saved) != world_size:
            rank_zero_warn(
                f"the checkpoint holds the environments of {len(saved)} ranks, this fit runs "
                f"{world_size}: the environments start new episodes."
            )
            return
        blob = saved[rank].numpy().tobytes()
        if not blob:
            return
        if self.train_envs is None:
            self._saved_train_envs = blob
        else:
            self._restore_train_envs(blob)

    def _restore_train_envs(self, blob: bytes) -> None:
        try:
            self.train_envs.set_state(blob)
        except ValueError as err:
            rank_zero_warn(f"the checkpoint's environments do not fit ({err}): new episodes start.")

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
