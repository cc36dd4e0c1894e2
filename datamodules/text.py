"""Language-model text: d2l's preprocessing and vocabulary (chapter 9) and The Time Machine as
windows of `num_steps` tokens, split by position into contiguous train / val / test parts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from datamodules.download import DataError, RemoteFile, fetch
from datamodules.in_memory import InMemoryDataModule, TensorBatches
from registry import ConfigurationError, register_datamodule

TokenKind = Literal["char", "word"]

TIME_MACHINE = RemoteFile(
    "timemachine",
    "timemachine.txt",
    "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",
    "8424dbd9532ac81f7e5f0b6add90e6952baea29158309d7d1bf3884f4e12c516",
)


def normalize(text: str) -> str:
    """d2l 9.2: every run of non-letters becomes one space, and everything is lowercased."""
    return re.sub("[^A-Za-z]+", " ", text).lower()


def tokenize(text: str, kind: TokenKind) -> list[str]:
    """Characters (spaces included) or whitespace-separated words of normalized text."""
    return list(text) if kind == "char" else text.split()


class Vocab:
    """Tokens to indices and back. The `specials` come first (``<unk>`` among them, which every
    unseen token maps to); the rest are sorted (alphabetically, as in d2l, or by frequency), so
    the same text always gives the same indices."""

    UNK = "<unk>"

    def __init__(
        self,
        tokens: Iterable[str],
        min_freq: int = 1,
        separator: str = "",
        specials: Sequence[str] = (UNK,),
        by_frequency: bool = False,
    ) -> None:
        """
        Args:
            tokens: the text to build on (the training part only, so held-out text stays unseen).
            min_freq: tokens rarer than this map to ``<unk>``.
            separator: joins decoded tokens ("" for characters, " " for words).
            specials: tokens placed first, in this order, whatever their count; must hold <unk>.
            by_frequency: order the other tokens from most to least frequent (ties
                alphabetically) instead of alphabetically, as an adaptive softmax needs.
        """
        if self.UNK not in specials:
            raise ValueError(f"specials {list(specials)} must include {self.UNK}")
        counts = Counter(tokens)
        kept = sorted(t for t, n in counts.items() if n >= min_freq and t not in specials)
        if by_frequency:
            kept.sort(key=counts.__getitem__, reverse=True)  # stable: ties stay alphabetical
        self.tokens = [*specials, *kept]
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.unk_id = self.index[self.UNK]
        self.separator = separator

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.index.get(t, self.unk_id) for t in tokens], dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.separator.join(self.tokens[int(i)] for i in ids)


def windows(corpus: torch.Tensor, num_steps: int, stride: int = 1) -> TensorBatches:
    """Windows of `num_steps` inputs, `stride` tokens apart, with their targets shifted by one
    (views of `corpus`, no copies)."""
    spans = corpus.unfold(0, num_steps + 1, stride)
    return TensorBatches(spans[:, :-1], spans[:, 1:])


def _first(items: list[Any]) -> Any:
    """collate_fn for a loader whose single item already is the whole batch."""
    return items[0]


@register_datamodule(
    "time_machine",
    kind="token_windows",
    test_kwargs={"batch_size": 128, "num_steps": 8, "max_tokens": 6000},
)
class TimeMachineData(InMemoryDataModule):
    """H. G. Wells' The Time Machine as next-token windows (d2l 9.2-9.3), split by position.

    The book is cut into three contiguous parts (train, then val, then test) before windows are
    taken, and the vocabulary is built on the train part alone, so no held-out window shares
    text with training. `predict` yields one generation request built from `prefix`."""

    def __init__(
        self,
        batch_size: int = 1024,
        num_steps: int = 32,
        token: TokenKind = "char",
        min_freq: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        max_tokens: int | None = None,
        eval_stride: int = 1,
        prefix: str = "time traveller",
        num_chars: int = 100,
        temperature: float = 0.0,
        num_samples: int = 1,
        sample_seed: int = 0,
    ) -> None:
        """
        Args:
            batch_size: windows per batch.
            num_steps: tokens per window (the length of backpropagation through time).
            token: "char" (d2l's default) or "word" tokens.
            min_freq: tokens seen fewer times in the train part map to <unk>.
            val_fraction: share of the book, after the train part, held out for validation.
            test_fraction: share of the book, at its end, held out for testing.
            max_tokens: keep only the book's first tokens (small runs and tests); None keeps all.
            eval_stride: tokens between consecutive val/test windows. 1 takes every offset (d2l);
                num_steps scores each token once, num_steps times faster. Training always
                samples windows at every offset.
            prefix: predict: the text generation starts from (normalized like the book).
            num_chars: predict: tokens to generate (characters, or words with token="word").
            temperature: predict: 0 picks the most likely token (greedy); > 0 samples from
                softmax(logits / temperature).
            num_samples: predict: continuations generated from the prefix.
            sample_seed: predict: seeds the sampling, so a run is reproducible.
        """
        super().__init__(batch_size=batch_size)
        if num_steps < 1:
            raise ConfigurationError(f"num_steps must be >= 1, got {num_steps}")
        if token not in ("char", "word"):
            raise ConfigurationError(f"token must be 'char' or 'word', got {token!r}")
        if min_freq < 1:
            raise ConfigurationError(f"min_freq must be >= 1, got {min_freq}")
        if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
            raise ConfigurationError(
                "val_fraction and test_fraction must be > 0 and sum to < 1, got "
                f"{val_fraction} and {test_fraction}"
            )
        if max_tokens is not None and max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        if eval_stride < 1:
            raise ConfigurationError(f"eval_stride must be >= 1, got {eval_stride}")
        if num_chars < 1 or num_samples < 1:
            raise ConfigurationError(
                f"num_chars and num_samples must be >= 1, got {num_chars}, {num_samples}"
            )
        if temperature < 0:
            raise ConfigurationError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
        self.num_steps = num_steps
        self.token = token
        self.min_freq = min_freq
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.max_tokens = max_tokens
        self.eval_stride = eval_stride
        self.prefix = prefix
        self.num_chars = num_chars
        self.temperature = temperature
        self.num_samples = num_samples
        self.sample_seed = sample_seed
        self._parts: dict[str, list[str]] = {}
        self._vocab: Vocab | None = None

    def read_text(self) -> str:
        """The raw book, fetched and verified through the download layer."""
        return fetch(TIME_MACHINE).read_text(encoding="utf-8")

    def prepare_data(self) -> None:
        fetch(TIME_MACHINE)

    @property
    def parts(self) -> dict[str, list[str]]:
        """The token sequence of each split: contiguous, in book order train, val, test."""
        if not self._parts:
            tokens = tokenize(normalize(self.read_text()), self.token)[: self.max_tokens]
            n_val, n_test = (int(len(tokens) * self.fractions[s]) for s in ("val", "test"))
            n_train = len(tokens) - n_val - n_test
            parts = {
                "train": tokens[:n_train],
                "val": tokens[n_train : n_train + n_val],
                "test": tokens[n_train + n_val :],
            }
            for split, part in parts.items():
                if len(part) <= self.num_steps:
                    raise ConfigurationError(
                        f"the {split} part has {len(part)} tokens, too few for one window of "
                        f"num_steps={self.num_steps}; use more text (max_tokens) or fewer steps"
                    )
            self._parts = parts
        return self._parts

    @property
    def vocab(self) -> Vocab:
        """Built on the train part only (read on first use, so the CLI can link vocab_size)."""
        if self._vocab is None:
            self._vocab = Vocab(
                self.parts["train"], self.min_freq, separator="" if self.token == "char" else " "
            )
        return self._vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits = {
            split: windows(
                self.vocab.encode(part), self.num_steps, 1 if split == "train" else self.eval_stride
            )
            for split, part in self.parts.items()
        }

    def encode_prefix(self, prefix: str) -> torch.Tensor:
        """Token ids of `prefix` after the book's normalization; unknown tokens become <unk>."""
        text = normalize(prefix)
        if not text.strip():
            raise ConfigurationError(
                f"prefix {prefix!r} has no letters, and normalization keeps letters only"
            )
        return self.vocab.encode(tokenize(text, self.token))

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.vocab.decode(ids)

    def state_dict(self) -> dict[str, Any]:
        """The vocabulary goes into every checkpoint, so that a later run can check that its
        data settings give the model the same token ids."""
        return {"vocab": list(self.vocab.tokens)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("vocab")
        if saved is not None and saved != self.vocab.tokens:
            raise DataError(
                f"the checkpoint's vocabulary ({len(saved)} tokens) differs from the one these "
                f"data settings build ({len(self.vocab)} tokens: token={self.token!r}, "
                f"min_freq={self.min_freq}, max_tokens={self.max_tokens}, fractions "
                f"{self.fractions}); pass the --data settings the model was trained with "
                "(its run directory's config.yaml has them)."
            )

    def predict_dataloader(self) -> DataLoader:
        """One generation request, a flat tuple of tensors like every other batch: the encoded
        prefix (one row per sample), the number of tokens, the temperature and the seed."""
        prompt = self.encode_prefix(self.prefix).expand(self.num_samples, -1).contiguous()
        request = (
            prompt,
            torch.tensor(self.num_chars),
            torch.tensor(self.temperature),
            torch.tensor(self.sample_seed),
        )
        return DataLoader([request], batch_size=1, collate_fn=_first)
