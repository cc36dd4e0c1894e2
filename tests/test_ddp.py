"""Data-parallel fits through the CLI on CPU processes (gloo): two processes on one node, and
two "nodes" of one process each meeting at 127.0.0.1 as separate machines would. Each rank
trains on its own disjoint shard, and all end with the same weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from conftest import REPO, run_cli

FIT = (
    "fit",
    "--model=linear_regression",
    "--data.num_train=96",
    "--data.batch_size=8",
    "--trainer.max_epochs=1",
    "--trainer.accelerator=cpu",
    "--trainer.strategy=ddp",
    "--trainer.devices={devices}",
    "--trainer.num_nodes={nodes}",
    "--trainer.enable_progress_bar=false",
    "--trainer.callbacks+=shard_recorder.ShardRecorder",
    "--trainer.callbacks.out_dir={shards}",
)


def fit_args(devices: int, nodes: int, shards: Path) -> list[str]:
    return [a.format(devices=devices, nodes=nodes, shards=shards) for a in FIT]


def assert_disjoint_shards_and_equal_weights(shards: Path, world_size: int) -> None:
    ranks = [torch.load(shards / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
    assert all(rank["world_size"] == world_size for rank in ranks)
    rows = [{tuple(row.tolist()) for row in rank["inputs"]} for rank in ranks]
    assert all(len(seen) == 96 // world_size for seen in rows)  # an equal share each
    assert len(set().union(*rows)) == 96  # disjoint shards that cover the training set
    for rank in ranks[1:]:
        for name, weights in ranks[0]["weights"].items():
            assert torch.equal(weights, rank["weights"][name]), name


def test_ddp_ranks_see_disjoint_shards(tmp_path) -> None:
    shards = tmp_path / "shards"
    result = run_cli(
        *fit_args(devices=2, nodes=1, shards=shards),
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "tests")},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_disjoint_shards_and_equal_weights(shards, world_size=2)
    assert (
        tmp_path / "runs" / "linear_regression" / "version_0" / "checkpoints" / "last.ckpt"
    ).is_file()


def test_sigterm_on_one_rank_stops_every_rank_after_the_same_batch(tmp_path) -> None:
    """Rank 1 alone is told to stop as its third batch starts; the ranks agree, save after that
    batch and exit 143 instead of one of them waiting for the other forever."""
    result = run_cli(
        *fit_args(devices=2, nodes=1, shards=tmp_path / "shards"),
        "--trainer.callbacks+=fault_injection.SignalAt",
        "--trainer.callbacks.at_batch=2",
        "--trainer.callbacks.signal_name=SIGTERM",
        "--trainer.callbacks.only_rank=1",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "tests")},
        timeout=240,
    )
    assert result.returncode == 143, result.stderr[-3000:]
    assert "SIGTERM received" in result.stderr
    saved = torch.load(
        tmp_path / "runs" / "linear_regression" / "version_0" / "checkpoints" / "last.ckpt",
        weights_only=True,
    )
    assert saved["global_step"] == 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_of_one_process_each(tmp_path) -> None:
    """Lightning's cluster variables, as a launcher on each machine would set them (README:
    "Several machines"); each node runs in its own directory."""
    shards = tmp_path / "shards"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "tests"),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    nodes = []
    for node_rank in (0, 1):
        cwd = tmp_path / f"node{node_rank}"
        cwd.mkdir()
        nodes.append(
            subprocess.Popen(
                [sys.executable, str(REPO / "cli.py"), *fit_args(1, 2, shards)],
                cwd=cwd,
                env={**env, "NODE_RANK": str(node_rank)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [node.communicate(timeout=240) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, (_, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr[-3000:]
    assert_disjoint_shards_and_equal_weights(shards, world_size=2)
    loaded = [torch.load(shards / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [rank["node_rank"] for rank in loaded] == [0, 1]  # one rank on each node
    # rank 0 (node 0) alone writes checkpoints
    assert list((tmp_path / "node0" / "runs").rglob("last.ckpt"))
    assert not list((tmp_path / "node1").rglob("*.ckpt"))
