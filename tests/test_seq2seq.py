"""Translation: d2l's preprocessing, splits by English sentence, vocabularies, length buckets,
the three models' masks and parameter counts (d2l's definitions), greedy and beam search,
sacreBLEU, and the command line (fit, predict, errors)."""

from __future__ import annotations

import csv
import math

import pytest
import sacrebleu
import torch
from conftest import REPO, run_cli

from datamodules.download import DataError
from datamodules.translation import (
    SPECIALS,
    FraEngData,
    detokenize,
    preprocess,
    split_by_source,
    tokenize,
)
from lit_modules import decoding
from lit_modules.base import ConfigurationError
from lit_modules.decoding import BOS, EOS, PAD, beam_search, greedy_search
from lit_modules.seq2seq import CorpusBLEU, PositionalEncoding, sinusoids
from registry import count_parameters, get_model, list_models

MODELS = ["seq2seq_bahdanau", "seq2seq_gru", "transformer"]
SMALL = {
    "seq2seq_gru": {"embed_size": 8, "num_hiddens": 12, "num_layers": 2},
    "seq2seq_bahdanau": {"embed_size": 8, "num_hiddens": 12, "num_layers": 2},
    "transformer": {"num_hiddens": 12, "ffn_num_hiddens": 16, "num_heads": 2, "num_blks": 2},
}
FAST = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")
TINY_DATA = ("--data.max_pairs=400", "--data.val_bleu_size=8", "--data.batch_size=64")


def small_model(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model(name, src_vocab_size=30, tgt_vocab_size=40, **SMALL[name], **kwargs).eval()


def test_the_family_has_the_three_models() -> None:
    assert list_models(family="seq2seq") == MODELS


def test_preprocessing_follows_d2l() -> None:
    assert preprocess("Cours\u202f!") == "cours !"
    assert preprocess("Hi,\xa0Tom. Go!") == "hi , tom . go !"
    assert tokenize("I'm home.") == ["i'm", "home", "."]
    assert (
        detokenize(["je", "suis", "là", ",", "tom", ".", "quoi", "?"]) == "je suis là, tom. quoi ?"
    )


def test_special_ids_agree_between_data_and_decoding() -> None:
    assert SPECIALS.index("<pad>") == PAD
    assert SPECIALS.index("<bos>") == BOS
    assert SPECIALS.index("<eos>") == EOS


def test_translations_of_one_sentence_share_a_split() -> None:
    sources = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "f"]
    train, val, test = split_by_source(sources, (0.2, 0.2), shuffle=True, seed=3)
    assert sorted(train + val + test) == list(range(len(sources)))
    owner = {}
    for split, rows in (("train", train), ("val", val), ("test", test)):
        for row in rows:
            assert owner.setdefault(sources[row], split) == split
    ordered = split_by_source(sources, (0.2, 0.2), shuffle=False, seed=3)
    assert ordered[0][:2] == [0, 1]  # corpus order: train comes first


@pytest.fixture(scope="module")
def corpus() -> FraEngData:
    data = FraEngData()
    data.setup("fit")
    return data


def test_the_whole_corpus_is_split_by_english_sentence(corpus: FraEngData) -> None:
    sizes = {split: len(pairs) for split, pairs in corpus.corpus.items()}
    assert sum(sizes.values()) == 167_130
    assert sizes["val"] == pytest.approx(0.02 * 167_130, rel=0.02)
    assert sizes["test"] == pytest.approx(0.04 * 167_130, rel=0.02)
    english = {s: {preprocess(p.english) for p in pairs} for s, pairs in corpus.corpus.items()}
    assert not english["train"] & english["val"]
    assert not english["train"] & english["test"]
    assert not english["val"] & english["test"]
    # the references are the corpus's own sentences, untouched (narrow no-break spaces kept)
    assert any("\u202f" in pair.french for pair in corpus.corpus["test"])
    assert corpus.corpus["test"][0].french_tokens == tokenize(corpus.corpus["test"][0].french)


def test_vocabularies_come_from_the_training_split(corpus: FraEngData) -> None:
    src_vocab, tgt_vocab = corpus.vocabs
    assert src_vocab.tokens[:4] == list(SPECIALS) == tgt_vocab.tokens[:4]
    train_words = {w for pair in corpus.corpus["train"] for w in pair.english_tokens}
    test_only = {w for pair in corpus.corpus["test"] for w in pair.english_tokens} - train_words
    assert test_only and not test_only & set(src_vocab.tokens)
    # frequency order (for an adaptive softmax): "." and "je" lead the French words
    assert tgt_vocab.tokens[4] == "." and "je" in tgt_vocab.tokens[4:10]


def test_a_checkpoint_of_another_vocabulary_is_refused() -> None:
    data = FraEngData(max_pairs=300)
    saved = data.state_dict()
    assert saved["src_vocab"][:4] == list(SPECIALS)
    FraEngData(max_pairs=300).load_state_dict(saved)  # the same settings: the same words
    other = FraEngData(max_pairs=300, seed=1)  # same sizes, perhaps, but other words
    with pytest.raises(DataError, match="checkpoint's English vocabulary"):
        other.load_state_dict(saved)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"num_steps": 1}, "num_steps must be >= 2"),
        ({"val_bleu_size": 0}, "val_bleu_size must be >= 1"),
    ],
)
def test_data_settings_that_cannot_work_are_refused(setting: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        FraEngData(**setting)


def test_sentences_to_translate_are_read_as_the_corpus_writes_them(tmp_path) -> None:
    """A byte-order mark, curly apostrophes and capitals do not make known words unknown; a
    sentence longer than num_steps is translated whole; a blank line keeps its place."""
    long = "Tom is here and I am here and you are here and we are all here."
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\ufeffI\u2019m FINE.\n\n" + long + "\n", encoding="utf-8")
    data = FraEngData(max_pairs=400, num_steps=9, sentences_file=str(sentences))
    data.setup("predict")
    assert data.predict_sources == ["I\u2019m FINE.", "", long]
    assert data.predict_lines == [0, 2]
    rows = data.splits["predict"]
    index = data.vocabs[0].index
    assert rows.src[0, :4].tolist() == [index["i'm"], index["fine"], index["."], EOS]
    assert rows.src_len.tolist() == [4, len(tokenize(long)) + 1]  # 16 words and <eos>, not 9


def test_position_encodings_grow_for_a_long_sentence() -> None:
    encode = PositionalEncoding(num_hiddens=6, dropout=0.0, max_len=10).eval()
    x = torch.zeros(1, 4, 6)
    torch.testing.assert_close(encode(x, offset=30), sinusoids(34, 6)[30:].unsqueeze(0))


def test_d2l_tiny_setting_is_reachable() -> None:
    data = FraEngData(
        num_steps=9, max_pairs=640, shuffle_split=False, val_fraction=0.2, test_fraction=0
    )
    data.setup("fit")
    assert len(data.corpus["train"]) == pytest.approx(512, abs=4)
    assert len(data.corpus["train"]) + len(data.corpus["val"]) == 640
    assert data.corpus["train"][0][:2] == ("Go.", "Va !")
    batch = next(iter(data.train_dataloader()))
    assert batch.src.shape[1] <= 9 and batch.tgt.shape[1] <= 10
    assert (batch.tgt[:, 0] == BOS).all()
    assert ((batch.src == EOS).sum(dim=1) == 1).all()


def test_length_buckets_cover_every_pair_once_with_little_padding(corpus: FraEngData) -> None:
    loader = corpus.train_dataloader()
    seen, padding, tokens = [], 0, 0
    for batch in loader:
        seen.append(batch.index)
        padding += int((batch.src == PAD).sum())
        tokens += batch.src.numel()
    assert torch.cat(seen).sort().values.equal(torch.arange(len(corpus.splits["train"])))
    assert padding / tokens < 0.01  # random batches of 128 pad about half the source positions
    first, again = (next(iter(corpus.train_dataloader())) for _ in range(2))
    assert again.index.equal(first.index)  # the same seed gives the same batches


@pytest.mark.parametrize("name", MODELS)
def test_padding_and_later_target_words_are_not_seen(name: str) -> None:
    model = small_model(name)
    src = torch.randint(4, 30, (2, 6))
    src_len = torch.tensor([4, 6])
    tgt_in = torch.randint(4, 40, (2, 5))
    with torch.no_grad():
        logits = model(src, src_len, tgt_in)
        other_padding = src.clone()
        other_padding[0, 4:] = torch.randint(4, 30, (2,))
        torch.testing.assert_close(model(other_padding, src_len, tgt_in), logits)
        other_future = tgt_in.clone()
        other_future[:, 3:] = torch.randint(4, 40, (2, 2))
        changed = model(src, src_len, other_future)
    torch.testing.assert_close(changed[:, :3], logits[:, :3])
    assert not torch.allclose(changed[:, 3:], logits[:, 3:])


@pytest.mark.parametrize("name", MODELS)
def test_beam_search_of_width_one_is_greedy_search(name: str) -> None:
    model = small_model(name)
    src = torch.randint(4, 30, (5, 7))
    src_len = torch.tensor([7, 3, 5, 1, 6])
    with torch.no_grad():
        greedy = greedy_search(model, src, src_len, max_len=12)
        beam = beam_search(model, src, src_len, beam_size=1, max_len=12, length_penalty=0.6)
    assert beam.equal(greedy)


class ToyDecoder:
    """A fixed next-token distribution that depends only on the previous token: greedy takes
    the 0.5 branch (token 4) and ends with 0.5 x 0.4 = 0.2, where the 0.3 branch (token 5)
    ends with 0.3 x 0.9 = 0.27."""

    table = {
        BOS: {4: 0.5, 5: 0.3, EOS: 0.2},
        4: {6: 0.4, 7: 0.3, EOS: 0.3},
        5: {EOS: 0.9, 6: 0.1},
        6: {EOS: 1.0},
        7: {EOS: 1.0},
    }

    def encode(self, src, src_len):
        return {"src": src}

    def next_token_logits(self, tokens, state):
        logits = torch.full((len(tokens), 8), -1e9)
        for row, token in enumerate(tokens.tolist()):
            for nxt, p in self.table.get(token, {EOS: 1.0}).items():
                logits[row, nxt] = math.log(p)
        return logits, state


def test_beam_search_finds_the_more_likely_translation_greedy_misses() -> None:
    src, src_len = torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 3])
    greedy = greedy_search(ToyDecoder(), src, src_len, max_len=5)
    beam = beam_search(ToyDecoder(), src, src_len, beam_size=2, max_len=5, length_penalty=0.0)
    assert greedy[0].tolist() == [4, 6, EOS]
    assert beam[0].tolist() == [5, EOS]  # p = 0.27 > the 0.2 of greedy's path
    # a length penalty favours longer hypotheses: (0.2 x 0.4 x 1)^(1/...) ranks 4-6-eos first
    assert decoding.length_normalizer(3, 1.0) > decoding.length_normalizer(2, 1.0)


def test_beam_size_below_one_is_refused() -> None:
    src, src_len = torch.zeros(1, 2, dtype=torch.long), torch.tensor([2])
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        beam_search(ToyDecoder(), src, src_len, beam_size=0, max_len=3)


def test_bleu_of_the_references_against_themselves_is_100() -> None:
    references = ["Je suis là.", "Qui\u202f?", "Il fait froid ce matin, n'est-ce pas\u202f?"]
    metric = CorpusBLEU()
    metric.update([r.lower() for r in references], [[r] for r in references])
    assert metric.compute().item() == pytest.approx(100.0)


def test_bleu_summed_over_batches_is_the_corpus_bleu() -> None:
    hypotheses = [
        "je suis là.",
        "il fait très froid.",
        "qui est-ce ?",
        "nous partons demain matin.",
    ]
    references = ["Je suis ici.", "Il fait froid.", "Qui est-ce\u202f?", "Nous partons demain."]
    metric = CorpusBLEU()
    metric.update(hypotheses[:2], [[r] for r in references[:2]])
    metric.update(hypotheses[2:], [[r] for r in references[2:]])
    whole = sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True).score
    assert metric.compute().item() == pytest.approx(whole)
    assert 0 < whole < 100
    # a second reference for some sentences: sacreBLEU's multi-reference BLEU, rising
    others = [["Je suis là."], [], ["Qui est-ce ?", "C'est qui ?"], []]
    multi = CorpusBLEU()
    multi.update(hypotheses, [[r, *o] for r, o in zip(references, others, strict=True)])
    streams = [references, ["Je suis là.", None, "Qui est-ce ?", None],
               [None, None, "C'est qui ?", None]]  # fmt: skip
    expected = sacrebleu.corpus_bleu(hypotheses, streams, lowercase=True).score
    assert multi.compute().item() == pytest.approx(expected) and expected > whole


def test_references_are_every_translation_of_the_english_sentence(corpus: FraEngData) -> None:
    pairs = corpus.corpus["test"]
    by_english: dict[str, set[str]] = {}
    for pair in pairs:  # the sentence as the model reads it: "Go." and "Go!" differ
        by_english.setdefault(" ".join(pair.english_tokens), set()).add(pair.french)
    rows = torch.arange(len(pairs))
    references = corpus.references("test", rows)
    assert all(refs[0] == pair.french for refs, pair in zip(references, pairs, strict=True))
    assert all(
        set(refs) == by_english[" ".join(p.english_tokens)]
        for refs, p in zip(references, pairs, strict=True)
    )
    assert max(len(refs) for refs in references) > 1


def gru_layer(inputs: int, hiddens: int) -> int:
    return 3 * (inputs * hiddens + hiddens * hiddens + 2 * hiddens)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_match_d2l(name: str) -> None:
    # d2l's definitions (d2l/torch.py: Seq2SeqEncoder/Decoder, Seq2SeqAttentionDecoder with
    # AdditiveAttention, TransformerEncoder/Decoder with bias-free MultiHeadAttention), counted
    # layer by layer at the book's settings; the vocabulary sizes are those of d2l's tiny data.
    src_v, tgt_v, e, h = 195, 214, 256, 256
    encoder = src_v * e + gru_layer(e, h) + gru_layer(h, h)
    if name == "seq2seq_gru":
        decoder = tgt_v * e + gru_layer(e + h, h) + gru_layer(h, h) + h * tgt_v + tgt_v
        expected = encoder + decoder
    elif name == "seq2seq_bahdanau":
        attention = h * h + h * h + h  # W_k, W_q, w_v, all bias-free
        decoder = tgt_v * e + attention + gru_layer(e + h, h) + gru_layer(h, h) + h * tgt_v + tgt_v
        expected = encoder + decoder
    else:
        d, ffn, blocks = 256, 64, 2
        attention, norm, feed = 4 * d * d, 2 * d, d * ffn + ffn + ffn * d + d
        enc = src_v * d + blocks * (attention + feed + 2 * norm)
        dec = tgt_v * d + blocks * (2 * attention + feed + 3 * norm) + d * tgt_v + tgt_v
        expected = enc + dec
    model = get_model(name, src_vocab_size=src_v, tgt_vocab_size=tgt_v)
    assert count_parameters(model) == expected


def test_bidirectional_encoder_and_adaptive_softmax_options() -> None:
    model = small_model("seq2seq_bahdanau", bidirectional=True, adaptive_softmax_cutoffs=[10])
    src, src_len = torch.randint(4, 30, (3, 5)), torch.tensor([5, 2, 4])
    with torch.no_grad():
        log_probs = model(src, src_len, torch.randint(4, 40, (3, 4)))
        ids = model.translate(src, src_len, beam_size=3)
    assert log_probs.shape == (3, 4, 40)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 4))
    assert ids.shape[0] == 3 and ids.max() < 40


@pytest.mark.parametrize(
    ("cutoffs", "message"),
    [([], "increasing strictly"), ([20, 10], "increasing strictly"), ([10, 40], "below"),
     ([5, 10, 20], "no width")],
)  # fmt: skip
def test_bad_adaptive_softmax_cutoffs_are_refused(cutoffs: list[int], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        small_model("transformer", adaptive_softmax_cutoffs=cutoffs)  # width 12: 3, 0


def test_d2l_tiny_setting_learns(tmp_path) -> None:
    fit = run_cli(
        "fit",
        "--config",
        str(REPO / "configs" / "seq2seq" / "seq2seq_gru.yaml"),
        "--trainer.max_epochs=8",
        "--trainer.log_every_n_steps=1",
        *FAST,
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr
    metrics = (tmp_path / "runs/seq2seq_gru/version_0/metrics.csv").read_text().splitlines()
    rows = list(csv.DictReader(metrics))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 8 * 5  # 512 pairs in batches of 128, every step logged
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0]


@pytest.fixture(scope="module")
def trained_transformer(tmp_path_factory) -> tuple:
    """A tiny Transformer fit for one epoch through the CLI (with the model summary, which runs
    the model's example input), and its working directory."""
    cwd = tmp_path_factory.mktemp("translation")
    fit = run_cli(
        "fit",
        "--model=transformer",
        *TINY_DATA,
        "--model.num_hiddens=16",
        "--model.ffn_num_hiddens=16",
        "--model.num_heads=2",
        "--model.num_blks=1",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        cwd=cwd,
    )
    assert fit.returncode == 0, fit.stderr
    return cwd, cwd / "runs/transformer/version_0/checkpoints/last.ckpt"


def test_fit_draws_attention_maps(trained_transformer) -> None:
    cwd, _ = trained_transformer
    pictures = sorted((cwd / "runs/transformer/version_0/attention").glob("sentence_*.png"))
    assert len(pictures) == 4
    assert all(p.stat().st_size > 1000 for p in pictures)


def test_predict_translates_sentences_and_a_file(trained_transformer) -> None:
    cwd, ckpt = trained_transformer
    sentences = cwd / "sentences.txt"
    sentences.write_text("I am cold.\n\nGo!\n", encoding="utf-8")  # a blank line keeps its place
    for data in ('--data.sentences=["I am cold.", "Go!"]', f"--data.sentences_file={sentences}"):
        result = run_cli(
            "predict", f"--ckpt_path={ckpt}", *TINY_DATA, data, "--data.beam_size=2", *FAST, cwd=cwd
        )
        assert result.returncode == 0, result.stderr
        assert "I am cold. -> " in result.stdout and "Go! -> " in result.stdout
    written = max(
        cwd.glob("runs/transformer/version_*/translations.tsv"), key=lambda p: p.stat().st_mtime
    )
    rows = list(csv.reader(written.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    assert [r[0] for r in rows] == ["source", "I am cold.", "", "Go!"]
    assert rows[2] == ["", ""] and rows[1][1] and rows[3][1]


def test_checkpoint_holds_the_vocabularies_and_refuses_other_ones(trained_transformer) -> None:
    _, ckpt = trained_transformer
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["FraEngData"]
    data = FraEngData(max_pairs=400, val_bleu_size=8)
    assert saved == {"src_vocab": data.vocabs[0].tokens, "tgt_vocab": data.vocabs[1].tokens}
    with pytest.raises(DataError, match="checkpoint's English vocabulary"):
        FraEngData(max_pairs=400, val_bleu_size=8, seed=1).load_state_dict(saved)


def test_fit_draws_bahdanau_attention_maps(tmp_path) -> None:
    fit = run_cli(
        "fit", "--model=seq2seq_bahdanau", *TINY_DATA, "--model.embed_size=8",
        "--model.num_hiddens=16", "--trainer.max_epochs=1", *FAST, cwd=tmp_path,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    pictures = sorted((tmp_path / "runs/seq2seq_bahdanau/version_0/attention").glob("*.png"))
    assert len(pictures) == 4
    assert all(p.stat().st_size > 1000 for p in pictures)


def test_test_scores_bleu_with_beam_search(trained_transformer) -> None:
    cwd, ckpt = trained_transformer
    result = run_cli(
        "test", f"--ckpt_path={ckpt}", *TINY_DATA, "--data.beam_size=3", *FAST, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    assert "test/bleu" in result.stdout and "test/loss" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data.min_freq=3",), "vocab_size"),  # another vocabulary than the checkpoint's
        (
            ('--data.sentences=["Xyzzy plugh."]',),
            "no word of 'Xyzzy plugh.' (--data.sentences, number 1)",
        ),
        (('--data.sentences=["Go!", " "]',), "empty sentence (number 2)"),
        (("--data.sentences_file={empty}",), "holds no sentence"),
        (("--data.beam_size=0",), "beam_size must be >= 1"),
        ((), "predict needs English sentences"),
    ],
)
def test_bad_translation_input_is_a_clear_error(trained_transformer, args, message) -> None:
    cwd, ckpt = trained_transformer
    empty = cwd / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    args = tuple(a.format(empty=empty) for a in args)
    if args == ("--data.min_freq=3",):
        args = (*args, '--data.sentences=["Go!"]')
    result = run_cli("predict", f"--ckpt_path={ckpt}", *TINY_DATA, *args, *FAST, cwd=cwd)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
