"""d2l chapters 9 and 10: recurrent language models (RNN from scratch, RNN, GRU, LSTM, deep
GRU) that predict the next token, sharing one base for inputs, output layer, loss, perplexity
and text generation; the torch-layer models differ only in their cell, depth and learning rate."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torchmetrics.text import Perplexity

from callbacks import GeneratedTextWriter
from lit_modules.base import (
    ConfigurationError,
    ZooModule,
    check_positive,
    check_probability,
    mean_metric,
)
from registry import register_model

Batch = tuple[torch.Tensor, torch.Tensor]
REGISTRATION = {"family": "rnn", "data": "time_machine", "monitor": "val/ppl", "mode": "min"}
TEST_KWARGS = {"hidden_size": 8}


class RNNLanguageModel(ZooModule):
    """Next-token language model: tokens -> one-hot or embedding -> ``self.body`` (a recurrent
    module with ``nn.RNN``'s batch-first interface, built by the subclass) -> dropout -> linear
    projection to the vocabulary. Trained on cross-entropy; perplexity from torchmetrics."""

    body: nn.Module

    def __init__(
        self,
        vocab_size: int = 28,
        hidden_size: int = 32,
        embedding_size: int | None = None,
        dropout: float = 0.0,
        bidirectional: bool = False,
        lr: float = 1.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            vocab_size: number of tokens (the CLI takes it from the data).
            hidden_size: width of the recurrent state.
            embedding_size: learned token embedding width; None feeds one-hot vectors (d2l).
            dropout: dropout on the recurrent outputs (and between stacked layers).
            bidirectional: not supported; bidirectional recurrence belongs to the seq2seq encoder.
            lr: learning rate.
        """
        super().__init__(lr=lr, **kwargs)
        if bidirectional:
            raise ConfigurationError(
                "bidirectional=True does not fit next-token prediction: the backward direction "
                "reads the very tokens the model must predict. Bidirectional recurrence belongs "
                "to a sequence-to-sequence encoder, which reads a whole source sentence, not to "
                "a language model."
            )
        check_positive(vocab_size=vocab_size, hidden_size=hidden_size)
        if embedding_size is not None:
            check_positive(embedding_size=embedding_size)
        check_probability(dropout=dropout)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.input_size = vocab_size if embedding_size is None else embedding_size
        self.embedding = (
            None if embedding_size is None else nn.Embedding(vocab_size, embedding_size)
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, vocab_size)
        self.set_evaluation_metrics(loss=mean_metric(), ppl=Perplexity())

    def logits_and_state(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Logits (batch, steps, vocab) for token ids (batch, steps), and the final state."""
        if self.embedding is None:
            inputs = F.one_hot(tokens, self.vocab_size).float()
        else:
            inputs = self.embedding(tokens)
        outputs, state = self.body(inputs, state)
        return self.output(self.dropout(outputs)), state

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits_and_state(tokens)[0]

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        tokens, targets = batch
        loss = self._loss(self(tokens), targets)
        self.log_train_loss(loss)
        return loss

    def _evaluate(self, batch: Batch, stage: str) -> None:
        tokens, targets = batch
        logits = self(tokens)
        metrics = self.evaluation_metrics[stage]
        metrics["loss"].update(self._loss(logits, targets), targets.numel())
        metrics["ppl"].update(logits, targets)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    @torch.no_grad()
    def generate(
        self, prompt: torch.Tensor, num_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> torch.Tensor:
        """Continue each row of `prompt` (batch, steps) by `num_tokens` tokens: greedy when
        `temperature` is 0, else sampled from softmax(logits / temperature) with `seed`.
        Returns the prompt followed by the generated ids."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
        generator = torch.Generator(device=prompt.device).manual_seed(seed)
        sequence = [prompt]
        logits, state = self.logits_and_state(prompt)
        for _ in range(num_tokens):
            last = logits[:, -1]
            if temperature == 0:
                token = last.argmax(dim=-1, keepdim=True)
            else:
                probs = F.softmax(last / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator)
            sequence.append(token)
            logits, state = self.logits_and_state(token, state)
        return torch.cat(sequence, dim=1)

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Generated ids for a request (prompt, num_tokens, temperature, seed), as the
        time_machine datamodule builds it from --data.prefix and friends."""
        prompt, num_tokens, temperature, seed = batch
        return self.generate(prompt, int(num_tokens), float(temperature), int(seed))

    def configure_callbacks(self) -> list[Callback]:
        return [GeneratedTextWriter()]


class ScratchRNN(nn.Module):
    """The recurrence written out as in d2l 9.5: H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h).
    Called like a batch-first ``nn.RNN`` (outputs and final state), but with one layer its state
    has no layer axis: (batch, hidden), not nn.RNN's (layers, batch, hidden)."""

    def __init__(self, input_size: int, hidden_size: int, sigma: float = 0.01) -> None:
        super().__init__()
        self.W_xh = nn.Parameter(torch.randn(input_size, hidden_size) * sigma)
        self.W_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) * sigma)
        self.b_h = nn.Parameter(torch.zeros(hidden_size))

    def forward(
        self, inputs: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            state = inputs.new_zeros(inputs.shape[0], self.W_hh.shape[0])
        outputs = []
        for x in inputs.unbind(dim=1):  # one time step at a time
            state = torch.tanh(x @ self.W_xh + state @ self.W_hh + self.b_h)
            outputs.append(state)
        return torch.stack(outputs, dim=1), state


@register_model("rnn_scratch", **REGISTRATION, test_kwargs=TEST_KWARGS)
class RNNScratchLM(RNNLanguageModel):
    """RNN language model with the recurrence written out step by step (d2l 9.5), for reading.

    Trains like `rnn` but slower: the time loop runs in Python."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body = ScratchRNN(self.input_size, self.hidden_size)


@register_model("rnn", **REGISTRATION, test_kwargs=TEST_KWARGS)
class RNNLM(RNNLanguageModel):
    """RNN language model with PyTorch's nn.RNN (tanh) recurrence (d2l 9.6).

    The gated models below are this class with another `cell`, torch's layer of that kind."""

    cell: type[nn.RNNBase] = nn.RNN

    def __init__(self, num_layers: int = 1, **kwargs: Any) -> None:
        """
        Args:
            num_layers: stacked recurrent layers, each reading the one below (d2l 10.3).
        """
        super().__init__(**kwargs)
        check_positive(num_layers=num_layers)
        self.body = self.cell(
            self.input_size,
            self.hidden_size,
            num_layers=num_layers,
            dropout=self.dropout.p if num_layers > 1 else 0.0,
            batch_first=True,
        )


class GatedRNNLM(RNNLM):
    """A language model with a gated cell, whose gates keep gradients alive over long spans,
    so it beats the plain RNN; d2l trains these with a higher learning rate."""

    def __init__(self, lr: float = 4.0, **kwargs: Any) -> None:
        """
        Args:
            lr: learning rate (d2l uses 4 with SGD and gradient clipping at 1).
        """
        super().__init__(lr=lr, **kwargs)


@register_model("gru", **REGISTRATION, test_kwargs=TEST_KWARGS)
class GRULM(GatedRNNLM):
    """Gated recurrent unit (GRU) language model: update and reset gates (d2l 10.2)."""

    cell = nn.GRU


@register_model("lstm", **REGISTRATION, test_kwargs=TEST_KWARGS)
class LSTMLM(GatedRNNLM):
    """Long short-term memory (LSTM) language model: a gated memory cell beside the state (d2l 10.1)."""

    cell = nn.LSTM


@register_model("deep_gru", **REGISTRATION, test_kwargs=TEST_KWARGS)
class DeepGRULM(GRULM):
    """Deep GRU language model: stacked layers, each reading the one below (d2l 10.3)."""

    def __init__(self, num_layers: int = 2, lr: float = 2.0, **kwargs: Any) -> None:
        """
        Args:
            num_layers: number of stacked GRU layers.
            lr: learning rate (d2l uses 2 with SGD and gradient clipping at 1).
        """
        super().__init__(num_layers=num_layers, lr=lr, **kwargs)
