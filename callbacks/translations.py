"""Print the translations that `predict` makes and keep them in the run directory, in the order
the sentences were given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.download import atomic_file


class TranslationWriter(BasePredictionWriter):
    """Collects each predicted batch's target ids with their input rows, turns them into text
    with the datamodule's ``decode_target``, and writes ``<run dir>/translations.tsv`` (source,
    tab, translation), one row per input line, in input order: a blank line gets a blank
    translation, and a tab or line break inside a sentence is written as a space. Under DDP the
    ranks' rows are gathered first. The file appears whole or not at all."""

    def __init__(self, filename: str = "translations.tsv") -> None:
        """
        Args:
            filename: file in the run directory that receives the translations.
        """
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        data = trainer.datamodule
        rows = {
            data.predict_lines[int(index)]: data.decode_target(ids)
            for output in predictions
            for index, ids in zip(output["index"].tolist(), output["ids"], strict=True)
        }
        if dist.is_available() and dist.is_initialized():
            parts: list[dict[int, str]] = [{} for _ in range(dist.get_world_size())]
            dist.all_gather_object(parts, rows)
            rows = {index: text for part in parts for index, text in part.items()}
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        path = Path(log_dir or ".") / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        show = trainer.progress_bar_callback.print if trainer.progress_bar_callback else print
        lines = ["source\ttranslation"]
        for line, source in enumerate(data.predict_sources):
            translation = rows.get(line, "")
            show(f"{source} -> {translation}")
            lines.append(f"{' '.join(source.split())}\t{translation}")
        with atomic_file(path, suffix=".tmp") as out:
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
        show(f"wrote {len(rows)} translations to {path}")
