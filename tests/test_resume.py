"""Exact resume: a fit killed with SIGKILL after its first checkpoint and resumed with
`--ckpt_path last` ends with the same weights, optimizer state and logged metrics, bit for bit,
as the same command run without interruption. One model of each family, each with what it
draws at random: shuffling (length-bucketed for translation), dropout, augmentation,
environments, the EBM's replay buffer and Langevin noise."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli
from torch.utils.data import DistributedSampler

from callbacks.interrupts import SignalTrap
from datamodules.gym import GymData
from datamodules.images import DigitsData
from datamodules.in_memory import EpochShuffle, ResumableLoader, TensorIndexBatches

QUIET = (
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--seed_everything=7",
)
TESTS_ON_PATH = {"PYTHONPATH": str(REPO / "tests")}
DIGITS_28PX = ("--data=digits", "--data.resize=28")

# family: (model, its arguments, the training batch (counted over the fit) at whose start the
# fit is killed). Each kill comes after a checkpoint; 19 batches make one digits epoch.
CASES = {
    "linear": (
        "mlp",
        ("--data=digits", "--model.dropout=0.3", "--trainer.max_epochs=2",
         "--last_checkpoint.every_n_train_steps=5", "--trainer.log_every_n_steps=3"),
        12,  # mid-epoch, after the step-10 checkpoint
    ),
    "cnn": (
        "lenet",
        (*DIGITS_28PX, "--data.augment=true", "--data.max_shift=2",
         "--model.lr_scheduler=lit_modules.optimization.OneCycle", "--trainer.max_epochs=2", "--last_checkpoint.every_n_train_steps=8",
         "--trainer.log_every_n_steps=4"),
        27,  # epoch 1, after the step-24 checkpoint
    ),
    "rnn": (
        "gru",
        ("--data.max_tokens=3000", "--data.num_steps=8", "--data.batch_size=256",
         "--model.hidden_size=16", "--model.dropout=0.3", "--trainer.max_epochs=3",
         "--trainer.log_every_n_steps=2"),
        13,  # epoch 1, after the epoch-0 checkpoint (10 batches an epoch)
    ),
    "vit": (
        "vit",
        (*DIGITS_28PX, "--data.augment=true", "--model.num_hiddens=16",
         "--model.mlp_num_hiddens=32", "--model.num_heads=2", "--model.num_blks=1",
         "--model.emb_dropout=0.2", "--model.blk_dropout=0.2", "--trainer.max_epochs=2",
         "--trainer.log_every_n_steps=5"),
        25,  # epoch 1, after the epoch-0 checkpoint
    ),
    "rl": (
        "ppo",
        ("--model.hidden_sizes=[16]", "--model.rollout_steps=16", "--model.minibatch_size=16",
         "--model.update_epochs=2", "--model.normalize_obs=true",
         "--model.normalize_reward=true", "--data.num_envs=2", "--data.rollouts_per_epoch=4",
         "--data.eval_episodes=2", "--trainer.max_epochs=3",
         "--last_checkpoint.every_n_train_steps=12", "--trainer.log_every_n_steps=3"),
        7,  # epoch 1, after the step-24 checkpoint (4 optimizer steps a rollout)
    ),
    "ebm": (
        "ebm",
        ("--data=digits", "--data.value_range=[-1,1]", "--model.channels=[4,4]",
         "--model.hidden=8", "--model.langevin_steps=2", "--model.langevin_steps_final=4",
         "--model.buffer_size=96", "--model.sample_steps=2", "--trainer.max_epochs=2",
         "--last_checkpoint.every_n_train_steps=5", "--trainer.log_every_n_steps=3"),
        12,  # mid-epoch 0, after the step-10 checkpoint: the replay buffer and its generators
    ),
    "translation": (
        "transformer",
        ("--data.max_pairs=600", "--data.batch_size=32", "--data.val_bleu_size=16",
         "--data.num_steps=10", "--model.num_hiddens=16", "--model.ffn_num_hiddens=32",
         "--model.num_heads=2", "--model.num_blks=1", "--trainer.max_epochs=2",
         "--last_checkpoint.every_n_train_steps=7", "--trainer.log_every_n_steps=4"),
        11,  # mid-epoch 0, after the step-7 checkpoint (18 length-bucketed batches an epoch)
    ),
}  # fmt: skip


def fit(cwd: Path, model: str, *args: str):
    return run_cli("fit", f"--model={model}", *args, *QUIET, cwd=cwd, env=TESTS_ON_PATH)


def metric_rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv's rows without their empty cells (two runs' files differ in columns)."""
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


def assert_same_end(reference: Path, resumed: Path) -> None:
    """The two runs end in the same state, bit for bit, and the resumed run logged exactly
    what the reference logged after the point it resumed from."""
    end, resumed_end = (
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        for run in (reference, resumed)
    )
    assert (resumed_end["epoch"], resumed_end["global_step"]) == (end["epoch"], end["global_step"])
    assert end["state_dict"].keys() == resumed_end["state_dict"].keys()
    for name, weights in end["state_dict"].items():
        assert torch.equal(weights, resumed_end["state_dict"][name]), name
    for optimizer, resumed_optimizer in zip(
        end["optimizer_states"], resumed_end["optimizer_states"], strict=True
    ):
        for slot, state in optimizer["state"].items():
            for key, value in state.items():
                assert torch.equal(
                    torch.as_tensor(value), torch.as_tensor(resumed_optimizer["state"][slot][key])
                ), key
    rows, resumed_rows = metric_rows(reference), metric_rows(resumed)
    assert resumed_rows, "the resumed run logged nothing"
    assert resumed_rows == rows[-len(resumed_rows) :]


class ReferenceRuns:
    """Each family's fit run without interruption, started in the background when a test first
    asks for it, so that it runs beside that test's own fits (the suite's machine has 2 cores),
    and shared by the tests of this module."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.started: dict[str, tuple[Path, subprocess.Popen]] = {}

    def start(self, family: str) -> None:
        if family in self.started:
            return
        model, args, _ = CASES[family]
        cwd = self.tmp_path_factory.mktemp(f"reference-{family}")
        with open(cwd / "stderr.txt", "w") as log:
            process = subprocess.Popen(
                [sys.executable, str(REPO / "cli.py"), "fit", f"--model={model}", *args, *QUIET],
                cwd=cwd,
                env={**os.environ, **TESTS_ON_PATH},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.started[family] = (cwd, process)

    def run_dir(self, family: str) -> Path:
        """The finished reference run's directory."""
        self.start(family)
        cwd, process = self.started[family]
        assert process.wait(timeout=300) == 0, (cwd / "stderr.txt").read_text()[-3000:]
        return cwd / "runs" / CASES[family][0] / "version_0"

    def stop(self) -> None:
        for _, process in self.started.values():
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory):
    runs = ReferenceRuns(tmp_path_factory)
    yield runs
    runs.stop()


@pytest.mark.parametrize("family", CASES)
def test_sigkilled_fit_resumes_exactly(tmp_path: Path, family: str, references) -> None:
    model, args, kill_at = CASES[family]
    references.start(family)
    killed = fit(
        tmp_path, model, *args, "--trainer.callbacks+=fault_injection.SignalAt",
        f"--trainer.callbacks.at_batch={kill_at}",
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    saved = torch.load(
        tmp_path / "runs" / model / "version_0" / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert saved["global_step"] > 0  # the kill came after a checkpoint
    resumed = fit(tmp_path, model, *args, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(references.run_dir(family), tmp_path / "runs" / model / "version_1")


@pytest.mark.parametrize(
    "signal_name, during, status, stopped_at_step",
    [
        # sent as batch 13 starts: the fit stops once that batch is done
        ("SIGTERM", "train", 143, 14),
        # sent during epoch 0's validation: that epoch ends and is saved as usual, then the fit
        # stops after the next batch
        ("SIGINT", "validation", 130, 20),
    ],
)
def test_signal_saves_the_state_says_where_and_exits_non_zero(
    tmp_path: Path, references, signal_name: str, during: str, status: int, stopped_at_step: int
) -> None:
    model, args, _ = CASES["linear"]
    references.start("linear")
    stopped = fit(
        tmp_path, model, *args, "--trainer.callbacks+=fault_injection.SignalAt",
        "--trainer.callbacks.at_batch=13", f"--trainer.callbacks.signal_name={signal_name}",
        f"--trainer.callbacks.during={during}",
    )  # fmt: skip
    assert stopped.returncode == status, stopped.stderr[-3000:]
    checkpoint = Path("runs", model, "version_0", "checkpoints", "last.ckpt")
    assert f"{signal_name} received" in stopped.stderr
    assert f"--ckpt_path {checkpoint}" in stopped.stderr and "Traceback" not in stopped.stderr
    saved = torch.load(tmp_path / checkpoint, weights_only=True)
    assert saved["global_step"] == stopped_at_step

    resumed = fit(tmp_path, model, *args, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(references.run_dir("linear"), tmp_path / "runs" / model / "version_1")


def test_epoch_shuffle_is_a_one_replica_distributed_sampler() -> None:
    """Single-process shuffling draws DistributedSampler's order, so DDP and one process shuffle
    alike and neither has state: the order is a function of (seed, epoch)."""
    ours = EpochShuffle(range(50), seed=11)
    theirs = DistributedSampler(range(50), num_replicas=1, rank=0, shuffle=True, seed=11)
    orders = []
    for epoch in (0, 1, 5):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        orders.append(list(ours))
        assert orders[-1] == list(theirs)
    assert len({tuple(order) for order in orders}) == 3  # a new order every epoch


def test_batch_sampler_resumes_mid_epoch_only() -> None:
    def batches(epoch: int) -> TensorIndexBatches:
        sampler = EpochShuffle(range(10), seed=3)
        sampler.set_epoch(epoch)
        return TensorIndexBatches(sampler, batch_size=3, drop_last=False)

    whole = [b.tolist() for b in batches(2)]
    assert len(whole) == 4 and sorted(i for batch in whole for i in batch) == list(range(10))
    stopped = batches(2)
    handed_out = iter(stopped)
    next(handed_out), next(handed_out)
    state = stopped.state_dict()
    assert state == {"epoch": 2, "batches": 2}

    resumed = batches(2)
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == whole[2:]  # the rest of the epoch
    assert [b.tolist() for b in resumed] == whole  # and the next pass is whole again
    after_epoch_end = batches(3)  # a checkpoint at the end of epoch 2 skips nothing in 3
    after_epoch_end.load_state_dict({"epoch": 2, "batches": 4})
    assert len(list(after_epoch_end)) == 4


def test_only_the_training_loader_is_resumable() -> None:
    data = DigitsData()
    data.setup()
    assert isinstance(data.train_dataloader(), ResumableLoader)
    assert isinstance(data.train_dataloader().batch_sampler.sampler, EpochShuffle)
    assert not isinstance(data.val_dataloader(), ResumableLoader)


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_environments_continue_their_episodes_from_a_saved_state(vectorization: str) -> None:
    def made() -> GymData:
        data = GymData(env_id="CartPole-v1", num_envs=3, vectorization=vectorization)
        data.setup("fit")
        return data

    actions = np.random.default_rng(0).integers(0, 2, size=(60, 3))
    original = made()
    original.train_envs.reset()
    for action in actions[:25]:  # some episodes end and restart on the way
        last_obs = original.train_envs.step(action)[0]
    state = original.state_dict()
    expected = [original.train_envs.step(action)[:2] for action in actions[25:]]
    original.teardown("fit")

    restored = made()
    restored.load_state_dict(state)
    obs, _ = restored.train_envs.reset()  # hands back where the saved episodes were
    assert np.array_equal(obs, last_obs)
    for action, (want_obs, want_reward) in zip(actions[25:], expected, strict=True):
        got_obs, got_reward = restored.train_envs.step(action)[:2]
        assert np.array_equal(got_obs, want_obs) and np.array_equal(got_reward, want_reward)
    restored.teardown("fit")


def test_a_second_ctrl_c_interrupts_at_once() -> None:
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when run in a shell's background
    trap = SignalTrap()
    trap.install(trainer=None)  # only SIGTERM is forwarded to a launcher's processes
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert trap.received == signal.SIGINT  # recorded, the fit goes on to the batch's end
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        trap.restore()
    assert signal.getsignal(signal.SIGINT) is before
