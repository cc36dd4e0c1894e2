"""English-French sentence pairs (d2l 10.5, the Tatoeba export d2l ships as fra-eng.zip) for
sequence-to-sequence translation: d2l's preprocessing and word tokens, splits by English
sentence, vocabularies built on the training split, and batches of similar length."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.download import DataError, RemoteFile, fetch
from datamodules.in_memory import InMemoryDataModule, TensorIndexBatches
from datamodules.text import Vocab
from registry import ConfigurationError, register_datamodule

FRA_ENG = RemoteFile(
    "fra-eng",
    "fra-eng.zip",
    "http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip",
    "fa96382b2c8b609e1662654c1e6e6baeb8d30b3bf63dfb4a5a261cc36347df13",
)
CORPUS_MEMBER = "fra-eng/fra.txt"
# Both vocabularies put these first, so the ids below hold for every checkpoint.
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(len(SPECIALS))
PUNCTUATION = ",.!?"
PUNCTUATION_WITHOUT_SPACE = re.compile(rf"(?<=[^ ])([{PUNCTUATION}])")
# Typographic apostrophes and quotes in sentences to translate, written as the corpus's English
# writes them (54,278 of its lines have "'", 36 have a curly one), so "I\u2019m" is the known "i'm".
STRAIGHT_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def preprocess(text: str) -> str:
    """d2l 10.5: no-break spaces (French puts a narrow one before ! and ?) become spaces, the
    text is lowercased, and a space is put before , . ! ? so punctuation becomes a token."""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    return PUNCTUATION_WITHOUT_SPACE.sub(r" \1", text)


def tokenize(text: str) -> list[str]:
    """Word tokens of a sentence, after `preprocess`."""
    return preprocess(text).split()


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens back to a sentence: spaces between words, none before , and . (French keeps its
    space before ! and ?). sacreBLEU re-tokenizes punctuation, so this only has to be readable."""
    return re.sub(r" ([,.])", r"\1", " ".join(tokens))


class Pair(NamedTuple):
    """One corpus line: the sentences as written (the French one is BLEU's reference) and
    their word tokens after `preprocess`."""

    english: str
    french: str
    english_tokens: list[str]
    french_tokens: list[str]


def read_corpus(path: Path, max_pairs: int | None = None) -> list[Pair]:
    """The pairs of d2l's fra-eng.zip in corpus order, read straight from the archive (nothing
    extracted), or only its first `max_pairs`. The text is preprocessed in one pass, as d2l
    does, not line by line."""
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read(CORPUS_MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} is not d2l's fra-eng.zip ({err}); delete it to fetch it again"
        ) from err
    lines = [line for line in text.splitlines() if line][:max_pairs]
    processed = preprocess("\n".join(lines)).splitlines()
    pairs = []
    for number, (line, tokenized) in enumerate(zip(lines, processed, strict=True), 1):
        columns, tokens = line.split("\t"), tokenized.split("\t")
        if len(columns) < 2:
            raise DataError(f"{path}:{CORPUS_MEMBER} pair {number} has no tab: {line[:60]!r}")
        pairs.append(Pair(columns[0], columns[1], tokens[0].split(), tokens[1].split()))
    return pairs


def split_by_source(
    sources: Sequence[str], fractions: tuple[float, float], shuffle: bool, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Indices of the (train, val, test) pairs. Pairs with the same source sentence (Tatoeba
    lists several translations of one sentence) always land in the same split; whole groups are
    dealt out, in corpus order or in an order shuffled by `seed`, until each split holds its
    fraction of the pairs (val and test; train gets the rest, and comes first in corpus order)."""
    groups: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        groups.setdefault(source, []).append(i)
    ordered = list(groups.values())
    if shuffle:
        permutation = torch.randperm(len(ordered), generator=torch.Generator().manual_seed(seed))
        ordered = [ordered[i] for i in permutation.tolist()]
    val_fraction, test_fraction = fractions
    train_until = (1 - val_fraction - test_fraction) * len(sources)
    val_until = (1 - test_fraction) * len(sources)
    splits: tuple[list[int], list[int], list[int]] = ([], [], [])
    dealt = 0
    for group in ordered:
        split = 0 if dealt < train_until else 1 if dealt < val_until else 2
        splits[split].extend(group)
        dealt += len(group)
    return splits


def encode_rows(
    vocab: Vocab, sentences: Sequence[list[str]], num_steps: int, bos: bool
) -> torch.Tensor:
    """Token ids of each sentence, trimmed to `num_steps - 1` words, then <eos> (and <bos> in
    front for targets), padded with <pad>: one row per sentence. d2l trims after adding <eos>;
    keeping it teaches the model to stop even on a trimmed sentence."""
    width = num_steps + bos
    index, unk = vocab.index, vocab.unk_id
    rows = []
    for words in sentences:
        ids = [BOS] * bos + [index.get(w, unk) for w in words[: num_steps - 1]] + [EOS]
        rows.append(ids + [PAD] * (width - len(ids)))
    return torch.tensor(rows, dtype=torch.long).view(len(rows), width)


class TranslationBatch(NamedTuple):
    """A batch of pairs, padded to its longest sentence.

    src: source ids ending in <eos> (batch, source steps); src_len: their lengths;
    tgt: <bos>, target ids, <eos> (batch, target steps + 1): the decoder reads tgt[:, :-1] and
    predicts tgt[:, 1:]; index: each pair's row in its split (for its reference sentence);
    decode: which rows evaluation translates and scores with BLEU."""

    src: torch.Tensor
    src_len: torch.Tensor
    tgt: torch.Tensor
    index: torch.Tensor
    decode: torch.Tensor


class TranslationPairs(Dataset):
    """One split's encoded pairs, fetched a batch at a time and trimmed to the batch's longest
    sentence, so a batch of short sentences carries no padding for long ones."""

    def __init__(self, src: torch.Tensor, tgt: torch.Tensor, decode: torch.Tensor) -> None:
        self.src, self.tgt, self.decode = src, tgt, decode
        self.src_len = (src != PAD).sum(dim=1)
        self.tgt_len = (tgt != PAD).sum(dim=1)

    def __len__(self) -> int:
        return len(self.src)

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> TranslationBatch:
        index = torch.as_tensor(indices, dtype=torch.long)
        src_len = self.src_len.index_select(0, index)
        src = self.src.index_select(0, index)[:, : int(src_len.max())]
        tgt = self.tgt.index_select(0, index)
        tgt = tgt[:, : int(self.tgt_len.index_select(0, index).max())]
        return TranslationBatch(src, src_len, tgt, index, self.decode.index_select(0, index))


class BucketBatches(TensorIndexBatches):
    """Batches of pairs of the same length, so almost no compute goes to padding (as fairseq
    batches): the sampler's order (shuffled for training; a DistributedSampler's shard under
    DDP) is sorted by length, stably, so pairs of equal length stay in random order, and cut
    into batches, which are then yielded in an order drawn from the sampler's own order. No
    other random state is involved: the batches are exactly as reproducible as the sampler,
    and a fit resumes mid-epoch exactly (TensorIndexBatches)."""

    def __init__(
        self, sampler: Any, batch_size: int, drop_last: bool, lengths: torch.Tensor
    ) -> None:
        """
        Args:
            lengths: the sort key of every pair of the dataset (e.g. source, then target length).
        """
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths

    def epoch_batches(self, order: torch.Tensor) -> list[torch.Tensor]:
        batches = super().epoch_batches(order[self.lengths[order].argsort(stable=True)])
        # argsort of distinct values in random order is a random permutation (and the identity
        # for a sequential sampler, so evaluation runs from the shortest batch to the longest)
        return [batches[i] for i in order[: len(batches)].argsort().tolist()]


@register_datamodule(
    "fra_eng",
    kind="translation_pairs",
    test_kwargs={"max_pairs": 600, "batch_size": 32, "val_bleu_size": 16, "num_steps": 10},
)
class FraEngData(InMemoryDataModule):
    """English-French sentence pairs (Tatoeba, as d2l ships them), translation batches.

    The whole corpus (167,130 pairs) is split by English sentence, fixed by `seed`; the
    vocabularies are built on the training split. d2l's tiny setting is
    ``max_pairs=640, shuffle_split=False, val_fraction=0.2, test_fraction=0, num_steps=9``."""

    def __init__(
        self,
        batch_size: int = 128,
        num_steps: int = 24,
        min_freq: int = 2,
        max_pairs: int | None = None,
        val_fraction: float = 0.02,
        test_fraction: float = 0.04,
        shuffle_split: bool = True,
        seed: int = 0,
        val_bleu_size: int = 1000,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        sentences: list[str] | None = None,
        sentences_file: str | None = None,
    ) -> None:
        """
        Args:
            batch_size: sentence pairs per batch.
            num_steps: most tokens per sentence, <eos> included (d2l: 9); longer ones are
                trimmed for training and as model input (BLEU still scores the full reference).
                Sentences given to `predict` are translated whole.
            min_freq: words seen fewer times in the training split map to <unk> (d2l: 2).
            max_pairs: use only the corpus's first pairs (d2l's tiny setting: 640); None: all.
            val_fraction: share of the pairs held out for validation.
            test_fraction: share of the pairs held out for testing (0: no test split).
            shuffle_split: deal English sentences to the splits in an order shuffled by `seed`;
                False keeps corpus order (train first, as d2l).
            seed: fixes the split.
            val_bleu_size: validation pairs (a fixed, seeded subset) translated greedily each
                epoch for val/bleu, which picks the best checkpoint.
            beam_size: test and predict: beam width (1 is greedy search).
            length_penalty: test and predict: beam scores are divided by
                ((5 + length) / 6) ** length_penalty (GNMT); 0 ranks by total log-probability.
            sentences: predict: English sentences to translate.
            sentences_file: predict: a UTF-8 text file of English sentences, one per line
                (a blank line gets a blank translation, so lines stay aligned).
        """
        super().__init__(batch_size=batch_size, seed=seed)
        for name, value, least in [
            ("num_steps", num_steps, 2),  # a word and <eos>
            ("min_freq", min_freq, 1),
            ("beam_size", beam_size, 1),
            ("val_bleu_size", val_bleu_size, 1),  # val/bleu picks the best checkpoint
        ]:
            if value < least:
                raise ConfigurationError(f"{name} must be >= {least}, got {value}")
        if max_pairs is not None and max_pairs < 2:
            raise ConfigurationError(f"max_pairs must be >= 2 or None (all), got {max_pairs}")
        if not (val_fraction > 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
            raise ConfigurationError(
                "val_fraction must be > 0, test_fraction >= 0, and together < 1; got "
                f"{val_fraction} and {test_fraction}"
            )
        if length_penalty < 0:
            raise ConfigurationError(f"length_penalty must be >= 0, got {length_penalty}")
        if sentences is not None and sentences_file is not None:
            raise ConfigurationError("give --data.sentences or --data.sentences_file, not both")
        self.num_steps = num_steps
        self.min_freq = min_freq
        self.max_pairs = max_pairs
        self.fractions = (val_fraction, test_fraction)
        self.shuffle_split = shuffle_split
        self.val_bleu_size = val_bleu_size
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.sentences = sentences
        self.sentences_file = sentences_file
        self._corpus: dict[str, list[Pair]] = {}
        self._vocabs: tuple[Vocab, Vocab] | None = None
        self._translations: dict[str, dict[str, list[str]]] = {}  # split -> English -> French
        self.predict_sources: list[str] = []  # every sentence given, blank lines included
        self.predict_lines: list[int] = []  # the source line of each row translated

    def prepare_data(self) -> None:
        fetch(FRA_ENG)

    @property
    def corpus(self) -> dict[str, list[Pair]]:
        """The pairs of each split (read on first use)."""
        if not self._corpus:
            pairs = read_corpus(fetch(FRA_ENG), self.max_pairs)
            sources = [" ".join(pair.english_tokens) for pair in pairs]
            indices = split_by_source(sources, self.fractions, self.shuffle_split, self.seed)
            self._corpus = {
                split: [pairs[i] for i in rows]
                for split, rows in zip(("train", "val", "test"), indices, strict=True)
            }
            for split in ("train", "val") + (("test",) if self.fractions[1] else ()):
                if not self._corpus[split]:
                    raise DataError(
                        f"the {split} split is empty: {len(pairs)} pairs are too few for "
                        f"val_fraction={self.fractions[0]}, test_fraction={self.fractions[1]}; "
                        "use more pairs (max_pairs) or larger fractions"
                    )
        return self._corpus

    @property
    def vocabs(self) -> tuple[Vocab, Vocab]:
        """(English, French) vocabularies of the training split's words, most frequent first
        (as an adaptive softmax needs)."""
        if self._vocabs is None:
            train = self.corpus["train"]
            self._vocabs = (
                Vocab((w for p in train for w in p.english_tokens), self.min_freq, " ",
                      SPECIALS, by_frequency=True),
                Vocab((w for p in train for w in p.french_tokens), self.min_freq, " ",
                      SPECIALS, by_frequency=True),
            )  # fmt: skip
        return self._vocabs

    @property
    def src_vocab_size(self) -> int:
        return len(self.vocabs[0])

    @property
    def tgt_vocab_size(self) -> int:
        return len(self.vocabs[1])

    def decode_target(self, ids: Sequence[int] | torch.Tensor) -> str:
        """A translation as text: target ids up to the first <eos>, padding dropped."""
        tokens = []
        for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                tokens.append(self.vocabs[1].tokens[i])
        return detokenize(tokens)

    def references(self, split: str, index: torch.Tensor) -> list[list[str]]:
        """For each row of `split` in `index`, the corpus's French translations of its English
        sentence, untouched: the row's own first, then the others (Tatoeba often has several,
        e.g. with "tu" and with "vous"; the split keeps them together)."""
        pairs = self.corpus[split]
        if split not in self._translations:
            translations: dict[str, list[str]] = {}
            for pair in pairs:
                translations.setdefault(" ".join(pair.english_tokens), []).append(pair.french)
            self._translations[split] = translations
        rows = [pairs[i] for i in index.tolist()]
        return [
            [row.french, *(f for f in self._translations[split][" ".join(row.english_tokens)]
                           if f != row.french)]
            for row in rows
        ]  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            for split, pairs in self.corpus.items():
                if pairs:
                    self.splits[split] = self._encode_split(split, pairs)
        if stage == "predict" and "predict" not in self.splits:
            where, self.predict_sources = self._read_predict_sentences()
            self.predict_lines = [i for i, sentence in enumerate(self.predict_sources) if sentence]
            words = [
                self._known_words(self.predict_sources[i], where(i)) for i in self.predict_lines
            ]
            longest = max(len(w) for w in words) + 1  # translated whole, not cut to num_steps
            src = encode_rows(self.vocabs[0], words, max(self.num_steps, longest), bos=False)
            empty = torch.empty(len(src), 0, dtype=torch.long)
            self.splits["predict"] = TranslationPairs(
                src, empty, torch.ones(len(src), dtype=torch.bool)
            )

    def _encode_split(self, split: str, pairs: list[Pair]) -> TranslationPairs:
        src_vocab, tgt_vocab = self.vocabs
        src = encode_rows(src_vocab, [p.english_tokens for p in pairs], self.num_steps, bos=False)
        tgt = encode_rows(tgt_vocab, [p.french_tokens for p in pairs], self.num_steps, bos=True)
        decode = torch.ones(len(pairs), dtype=torch.bool)
        if split == "val":  # a fixed, seeded subset: BLEU needs decoding, which is slow
            chosen = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.seed))
            decode = torch.zeros(len(pairs), dtype=torch.bool)
            decode[chosen[: self.val_bleu_size]] = True
        return TranslationPairs(src, tgt, decode)

    def _read_predict_sentences(self) -> tuple[Callable[[int], str], list[str]]:
        """The sentences to translate, stripped (blank lines of a file stay, as ""), and how to
        name the i-th in an error message."""
        if self.sentences_file is not None:
            path = Path(self.sentences_file)
            try:  # utf-8-sig: a byte-order mark some editors write is not part of the first word
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise DataError(f"--data.sentences_file {path}: cannot read it ({err})") from err
            sentences = [line.strip() for line in lines]
            if not any(sentences):
                raise DataError(
                    f"--data.sentences_file {path} holds no sentence: give one English "
                    "sentence per line"
                )
            return (lambda i: f"{path}, line {i + 1}"), sentences
        if not self.sentences:
            raise DataError(
                "predict needs English sentences: --data.sentences '[\"I am cold.\"]' or "
                "--data.sentences_file my_sentences.txt (one sentence per line)"
            )
        sentences = [sentence.strip() for sentence in self.sentences]
        if not all(sentences):
            raise DataError(
                f"--data.sentences holds an empty sentence (number {sentences.index('') + 1}); "
                "give each one some English words"
            )
        return (lambda i: f"--data.sentences, number {i + 1}"), sentences

    def _known_words(self, sentence: str, where: str) -> list[str]:
        """The tokens of a sentence to translate, which must hold at least one known word."""
        tokens = tokenize(sentence.translate(STRAIGHT_QUOTES))
        if not any(t in self.vocabs[0].index for t in tokens if t not in PUNCTUATION):
            raise DataError(
                f"no word of {sentence!r} ({where}) is in the English vocabulary the model "
                f"was trained with ({self.src_vocab_size} words of the training split, "
                f"min_freq={self.min_freq}), so there is nothing to translate; give English "
                "sentences"
            )
        return tokens

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        if split == "test" and split not in self.splits:
            raise DataError(
                "there is no test split: test_fraction is 0 (d2l's tiny setting); "
                "set --data.test_fraction to hold out test pairs"
            )
        return super()._loader(split, shuffle)

    def batch_sampler(self, data: Dataset, sampler: Any) -> TensorIndexBatches:
        """Batches of pairs of equal source, then target length."""
        lengths = data.src_len * (data.tgt.shape[1] + 1) + data.tgt_len
        return BucketBatches(sampler, self.batch_size, drop_last=False, lengths=lengths)

    def state_dict(self) -> dict[str, Any]:
        """The vocabularies go into every checkpoint, so a later run can check that its data
        settings give the model the same word ids."""
        return {"src_vocab": list(self.vocabs[0].tokens), "tgt_vocab": list(self.vocabs[1].tokens)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, language, vocab in zip(
            ("src_vocab", "tgt_vocab"), ("English", "French"), self.vocabs, strict=True
        ):
            saved = state_dict.get(key)
            if saved is not None and saved != vocab.tokens:
                raise DataError(
                    f"the checkpoint's {language} vocabulary ({len(saved)} words) differs from "
                    f"the one these data settings build ({len(vocab)} words: min_freq="
                    f"{self.min_freq}, max_pairs={self.max_pairs}, fractions {self.fractions}, "
                    f"seed {self.seed}); pass the --data settings the model was trained with "
                    "(its run directory's config.yaml has them)"
                )
