"""Data-parallel fit on 2 CPU processes through the CLI: each rank trains on its own shard."""

from __future__ import annotations

import torch
from conftest import REPO, run_cli


def test_ddp_ranks_see_disjoint_shards(tmp_path) -> None:
    shards = tmp_path / "shards"
    result = run_cli(
        "fit",
        "--model=linear_regression",
        "--data.num_train=96",
        "--data.batch_size=8",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=shard_recorder.ShardRecorder",
        f"--trainer.callbacks.out_dir={shards}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "tests")},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(shards / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    rows0 = {tuple(row.tolist()) for row in rank0["inputs"]}
    rows1 = {tuple(row.tolist()) for row in rank1["inputs"]}
    assert len(rows0) == len(rows1) == 48  # half of the 96 training rows each
    assert rows0.isdisjoint(rows1)
    assert (
        tmp_path / "runs" / "linear_regression" / "version_0" / "checkpoints" / "last.ckpt"
    ).is_file()
