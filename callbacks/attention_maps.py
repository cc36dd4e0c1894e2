"""Heatmaps of a translation model's attention: which source words each word of its own
translation looked at, for a few fixed validation sentences."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from callbacks.plotting import pyplot


class AttentionMaps(L.Callback):
    """After each validation, translates `num_sentences` fixed validation sentences greedily and
    draws the model's ``cross_attention`` (one panel per head; source words across, the words
    of its translation down) to ``<run dir>/attention/sentence_<i>.png``. The sentences are the
    first validation pairs whose source has `min_words` to `max_words` words."""

    def __init__(self, num_sentences: int = 4, min_words: int = 4, max_words: int = 10) -> None:
        """
        Args:
            num_sentences: sentences to draw.
            min_words: shortest source (words, <eos> included) worth a picture.
            max_words: longest source that still reads well in a picture.
        """
        self.num_sentences = num_sentences
        self.min_words = min_words
        self.max_words = max_words

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        data = trainer.datamodule
        val = data.splits["val"]
        fits = (val.src_len >= self.min_words) & (val.src_len <= self.max_words)
        rows = fits.nonzero().squeeze(1)[: self.num_sentences]
        if not len(rows):
            return
        src_len = val.src_len[rows].to(pl_module.device)
        src = val.src[rows][:, : int(src_len.max())].to(pl_module.device)
        translation = pl_module.translate(src, src_len)
        weights = pl_module.cross_attention(src, src_len, translation)
        directory = Path(log_dir or ".") / "attention"
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(len(rows)):
            source = [data.vocabs[0].tokens[t] for t in src[i, : int(src_len[i])].tolist()]
            target = []  # the translation's words, up to and with its <eos>
            for t in translation[i].tolist():
                target.append(data.vocabs[1].tokens[t])
                if target[-1] == "<eos>":
                    break
            self.draw(
                weights[i, :, : len(target), : len(source)].float().cpu(),
                source,
                target,
                directory / f"sentence_{i}.png",
                title=f"epoch {trainer.current_epoch}",
            )

    @staticmethod
    def draw(
        weights: torch.Tensor, source: list[str], target: list[str], path: Path, title: str
    ) -> None:
        """weights: (heads, target words, source words)."""
        plt = pyplot()
        heads = weights.shape[0]
        fig, axes = plt.subplots(
            1, heads, figsize=(0.5 * len(source) * heads + 1.5, 0.45 * len(target) + 2.5),
            squeeze=False,
        )  # fmt: skip
        for head, ax in enumerate(axes[0]):
            ax.imshow(weights[head], cmap="Reds", vmin=0, vmax=1)
            ax.set_xticks(range(len(source)), source, rotation=60, ha="right")
            ax.set_yticks(range(len(target)), target if head == 0 else [""] * len(target))
            ax.set_title(f"head {head + 1}" if heads > 1 else title, fontsize=9)
            ax.set_xlabel("source")
        axes[0][0].set_ylabel("translation")
        if heads > 1:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
