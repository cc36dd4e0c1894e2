"""RNN language models on The Time Machine: tokens and vocabulary, a positional split that keeps
held-out text out of training, perplexity, reproducible generation, and `cli.py predict`."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from conftest import run_cli

from datamodules.download import DataError
from datamodules.text import TimeMachineData, Vocab, normalize, tokenize
from lit_modules.base import ConfigurationError
from registry import DATAMODULES, MODELS, get_model, list_models

RNN_MODELS = list_models(family="rnn")
SMALL_DATA = DATAMODULES.entry("time_machine").test_kwargs


def letters(n: int) -> str:
    """A word of letters only that spells `n` (so normalization keeps it whole)."""
    word = ""
    while True:
        n, digit = divmod(n, 26)
        word += chr(ord("a") + digit)
        if n == 0:
            return word


def test_rnn_family_is_registered() -> None:
    assert set(RNN_MODELS) == {"rnn_scratch", "rnn", "gru", "lstm", "deep_gru"}
    for name in RNN_MODELS:
        entry = MODELS.entry(name)
        assert (entry.data, entry.monitor, entry.mode) == ("time_machine", "val/ppl", "min")


def test_preprocessing_and_vocab() -> None:
    text = normalize("The Time-Machine, 1895!  By H.G. Wells")
    assert text == "the time machine by h g wells"
    assert tokenize("ab c", "char") == ["a", "b", " ", "c"]
    assert tokenize(text, "word")[:3] == ["the", "time", "machine"]
    vocab = Vocab(tokenize("abca", "char"))
    assert vocab.tokens == ["<unk>", "a", "b", "c"]
    assert vocab.encode(list("cax")).tolist() == [3, 1, 0]
    assert vocab.decode(vocab.encode(list("abc"))) == "abc"
    assert Vocab(["a", "b", "b"], min_freq=2).tokens == ["<unk>", "b"]


def test_time_machine_character_vocab() -> None:
    data = TimeMachineData()
    assert data.vocab.tokens[0] == "<unk>"
    assert set(data.vocab.tokens[1:]) == set("abcdefghijklmnopqrstuvwxyz ")
    assert data.vocab_size == 28
    assert data.decode(data.encode_prefix("Time Traveller!")) == "time traveller "


def test_vocab_is_built_on_the_train_part_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A book of distinct words: any val/test word in the vocabulary would be a leak."""
    book = " ".join(letters(i) for i in range(1000))
    monkeypatch.setattr(TimeMachineData, "read_text", lambda self: book)
    data = TimeMachineData(token="word", num_steps=5, batch_size=16)
    data.setup("fit")
    assert data.vocab_size == len(data.parts["train"]) + 1  # its words and <unk>
    train_x, train_y = data.splits["train"].tensors
    assert (train_x != 0).all() and (train_y != 0).all()
    for split in ("val", "test"):
        x, y = data.splits[split].tensors
        assert len(x) > 0 and (x == 0).all() and (y == 0).all(), f"{split} shares words with train"


def test_no_val_or_test_window_overlaps_train_text() -> None:
    """Each split's windows, located by position in the book, lie inside its own part."""
    data = TimeMachineData(num_steps=16)
    data.setup("fit")
    book = normalize(data.read_text())
    start = 0
    bounds = {}
    for split in ("train", "val", "test"):
        bounds[split] = (start, start + len(data.parts[split]))
        start = bounds[split][1]
    assert start == len(book)
    for split, (lo, hi) in bounds.items():
        x, y = data.splits[split].tensors
        first_inputs = data.decode(x[:, 0])
        # window i starts at lo + i and its last target sits at lo + i + num_steps < hi
        assert first_inputs == book[lo : hi - data.num_steps]
        assert data.decode(y[-1]) == book[hi - data.num_steps : hi]
    # The parts are consecutive by construction; their sizes are the requested 80/10/10 shares.
    for split in ("val", "test"):
        assert bounds[split][1] - bounds[split][0] == int(len(book) * 0.1)


def test_eval_stride_scores_each_token_once() -> None:
    data = TimeMachineData(num_steps=32, eval_stride=32)
    data.setup("fit")
    x, _ = data.splits["val"].tensors
    assert len(x) == (len(data.parts["val"]) - 1) // 32
    assert len(data.splits["train"]) == len(data.parts["train"]) - 32


def test_bad_data_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="num_steps"):
        TimeMachineData(num_steps=0)
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        TimeMachineData(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="too few"):
        TimeMachineData(max_tokens=100, num_steps=32).setup("fit")
    with pytest.raises(ValueError, match="no letters"):
        TimeMachineData().encode_prefix("1895!")


@pytest.mark.parametrize("name", RNN_MODELS)
def test_bidirectional_is_rejected_with_a_pointer_to_seq2seq(name: str) -> None:
    with pytest.raises(ConfigurationError, match="sequence-to-sequence encoder"):
        get_model(name, bidirectional=True)


@pytest.mark.parametrize("name", RNN_MODELS)
def test_generation_is_deterministic(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name, hidden_size=16).eval()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    greedy = model.generate(prompt, 12)
    assert greedy.shape == (2, 15) and torch.equal(greedy[:, :3], prompt)
    assert torch.equal(greedy, model.generate(prompt, 12))
    sampled = model.generate(prompt, 30, temperature=1.0, seed=7)
    assert torch.equal(sampled, model.generate(prompt, 30, temperature=1.0, seed=7))
    assert not torch.equal(sampled, model.generate(prompt, 30, temperature=1.0, seed=8))


def test_perplexity_is_exp_of_mean_cross_entropy() -> None:
    L.seed_everything(0)
    model = get_model("gru", hidden_size=8)
    data = TimeMachineData(**SMALL_DATA)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    metrics = trainer.validate(model, data, verbose=False)[0]
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-4)

    x, y = next(iter(data.val_dataloader()))
    logits = model(x)
    model.evaluation_metrics["test"]["ppl"].update(logits, y)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert model.evaluation_metrics["test"]["ppl"].compute().item() == pytest.approx(
        ce.exp().item(), rel=1e-5
    )


def test_cli_predict_generates_text_from_a_checkpoint(tmp_path) -> None:
    small = ["--data.max_tokens", "6000", "--data.num_steps", "8", "--data.batch_size", "128"]
    fit = run_cli(
        "fit",
        "--model",
        "gru",
        "--model.hidden_size",
        "8",
        *small,
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.gradient_clip_val",
        "1",
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    generate = (
        "predict",
        "--model",
        "gru",
        "--ckpt_path",
        "best",
        *small,
        "--data.prefix",
        "Time Traveller",
        "--data.num_chars",
        "20",
        "--data.temperature",
        "0.8",
        "--data.sample_seed",
        "3",
    )
    first = run_cli(*generate, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = [line for line in first.stdout.splitlines() if line.startswith("time traveller")]
    assert len(lines) == 1 and len(lines[0]) >= len("time traveller") + 20
    written = sorted(tmp_path.glob("runs/gru/version_*/generated.txt"))
    assert [p.read_text() for p in written] == [lines[0] + "\n"]
    again = run_cli(*generate, cwd=tmp_path)
    assert lines[0] in again.stdout
    words = run_cli(*generate, "--data.token", "word", cwd=tmp_path)
    assert words.returncode == 2
    assert "vocab_size=" in words.stderr and "config.yaml" in words.stderr


def test_a_checkpoint_from_another_vocabulary_is_refused() -> None:
    data = TimeMachineData(**SMALL_DATA)
    state = data.state_dict()
    assert state["vocab"] == data.vocab.tokens
    data.load_state_dict(state)  # the same vocabulary loads
    state["vocab"][1], state["vocab"][2] = state["vocab"][2], state["vocab"][1]
    with pytest.raises(DataError, match="--data settings the model was trained with"):
        data.load_state_dict(state)
