"""d2l chapters 10.6 to 11.7: encoder-decoder translation. One base holds what the three
models share (the output layer, teacher forcing, the loss with padding ignored, greedy and beam
decoding, BLEU); each model supplies an encoder and a decoder.

- `seq2seq_gru` (d2l 10.7): a GRU encoder whose final state starts a GRU decoder and, as a
  fixed context, is fed to it at every step.
- `seq2seq_bahdanau` (d2l 11.4): the decoder attends over all encoder outputs at every step
  (additive attention).
- `transformer` (d2l 11.7): multi-head attention, positional encoding, encoder and decoder
  stacks of torch's `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from sacrebleu.metrics import BLEU
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torchmetrics import Metric

from callbacks import AttentionMaps, TranslationWriter
from lit_modules.base import (
    ConfigurationError,
    ZooModule,
    check_positive,
    check_probability,
    mean_metric,
)
from lit_modules.decoding import BOS, PAD, DecoderState, beam_search, greedy_search
from lit_modules.optimization import OptimizerFactory
from registry import register_model

REGISTRATION = {"family": "seq2seq", "data": "fra_eng", "monitor": "val/bleu", "mode": "max"}


class CorpusBLEU(Metric):
    """sacreBLEU's corpus BLEU of detokenized translations against reference sentences.

    Each update adds sacreBLEU's sufficient statistics (n-gram matches and totals, lengths),
    so the score over many batches, and over DDP ranks, is exactly the corpus BLEU of all of
    them. Case-insensitive by default: the models write lowercase, the references do not."""

    full_state_update = False

    def __init__(self, lowercase: bool = True) -> None:
        super().__init__()
        self.bleu = BLEU(lowercase=lowercase)
        orders = self.bleu.max_ngram_order
        self.add_state("counts", torch.zeros(orders, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("totals", torch.zeros(orders, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("lengths", torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        """`references[i]`: one or more reference translations of hypothesis i."""
        most = max(len(refs) for refs in references)
        streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
        score = self.bleu.corpus_score(hypotheses, streams)
        self.counts += torch.tensor(score.counts, dtype=torch.float64, device=self.device)
        self.totals += torch.tensor(score.totals, dtype=torch.float64, device=self.device)
        self.lengths += torch.tensor(
            [score.sys_len, score.ref_len], dtype=torch.float64, device=self.device
        )

    def compute(self) -> torch.Tensor:
        score = BLEU.compute_bleu(
            correct=self.counts.long().tolist(),
            total=self.totals.long().tolist(),
            sys_len=int(self.lengths[0]),
            ref_len=int(self.lengths[1]),
            smooth_method=self.bleu.smooth_method,
            smooth_value=self.bleu.smooth_value,
            effective_order=self.bleu.effective_order,
            max_ngram_order=self.bleu.max_ngram_order,
        )
        return torch.tensor(score.score)


def init_seq2seq(module: nn.Module) -> None:
    """d2l's `init_seq2seq`: Xavier-uniform weights for linear layers and GRUs."""
    if type(module) is nn.Linear:
        nn.init.xavier_uniform_(module.weight)
    if type(module) is nn.GRU:
        for name in module._flat_weights_names:
            if "weight" in name:
                nn.init.xavier_uniform_(getattr(module, name))


def adaptive_softmax(
    num_hiddens: int, vocab_size: int, cutoffs: list[int], div_value: float = 4.0
) -> nn.AdaptiveLogSoftmaxWithLoss:
    """torch's adaptive softmax, after checking that the cutoffs split the vocabulary and that
    every tail cluster keeps at least one dimension (each is `div_value` times narrower)."""
    if (
        not cutoffs
        or list(cutoffs) != sorted(set(cutoffs))
        or cutoffs[0] < 1
        or cutoffs[-1] >= vocab_size
    ):
        raise ConfigurationError(
            "adaptive_softmax_cutoffs must be word ids increasing strictly from 1 to below "
            f"tgt_vocab_size {vocab_size}, got {cutoffs}"
        )
    if num_hiddens // div_value ** len(cutoffs) < 1:
        raise ConfigurationError(
            f"{len(cutoffs)} adaptive_softmax_cutoffs leave the last cluster no width: each is "
            f"{div_value:g}x narrower than the one before, from num_hiddens {num_hiddens}; use "
            "fewer cutoffs or a larger num_hiddens"
        )
    return nn.AdaptiveLogSoftmaxWithLoss(num_hiddens, vocab_size, list(cutoffs), div_value)


def teacher_input(target: torch.Tensor) -> torch.Tensor:
    """The decoder's input for target ids: <bos>, then the targets but the last."""
    return torch.cat((torch.full_like(target[:, :1], BOS), target[:, :-1]), dim=1)


def padding_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """True at the padded positions of rows of the given lengths (batch, steps)."""
    return torch.arange(steps, device=lengths.device) >= lengths.unsqueeze(1)


class Seq2SeqModule(ZooModule):
    """Encoder-decoder translation model. Subclasses implement `encode` (the decoder state for a
    batch of source sentences, a dict of batch-first tensors) and `decode` (decoder features for
    a whole target prefix at once, or one step at a time); this base projects features onto the
    target vocabulary and does the rest.

    Batches are the `fra_eng` datamodule's `TranslationBatch`. BLEU is logged twice: `bleu`
    against every reference translation of a sentence, `bleu_1ref` against the pair's own. It
    needs that datamodule's `decode_target` and `references`, and reads the beam settings for
    `test` and `predict` from
    it (`--data.beam_size`, `--data.length_penalty`), because a checkpoint's hyperparameters
    would override `--model.*` settings there."""

    def __init__(
        self,
        src_vocab_size: int = 200,
        tgt_vocab_size: int = 200,
        num_hiddens: int = 256,
        label_smoothing: float = 0.0,
        adaptive_softmax_cutoffs: list[int] | None = None,
        lr: float = 0.005,
        optimizer: OptimizerFactory = torch.optim.Adam,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            src_vocab_size: English vocabulary size (the CLI takes it from the data).
            tgt_vocab_size: French vocabulary size (the CLI takes it from the data).
            num_hiddens: width of the decoder features projected onto the target vocabulary.
            label_smoothing: share of the target probability spread over the vocabulary.
            adaptive_softmax_cutoffs: word ids at which torch's adaptive softmax starts a new,
                narrower cluster (e.g. [2000, 6000]): the frequent words before the first
                cutoff cost full width, rarer ones a fraction. The output layer is most of a
                step's work on a CPU, and this cuts it several-fold. None: one full softmax
                (d2l). Needs frequency-ordered target ids (fra_eng's are); no label smoothing.
            lr: learning rate (d2l: Adam, 0.005 for the GRU models, 0.001 for the Transformer).
            optimizer: a torch optimizer called with the parameters and lr (d2l: Adam).
        """
        super().__init__(lr=lr, optimizer=optimizer, **kwargs)
        check_positive(
            src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, num_hiddens=num_hiddens
        )
        if not 0 <= label_smoothing < 1:
            raise ConfigurationError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if adaptive_softmax_cutoffs is None:
            self.output: nn.Module = nn.Linear(num_hiddens, tgt_vocab_size)
        else:
            if label_smoothing:
                raise ConfigurationError(
                    "label_smoothing needs the full softmax: set adaptive_softmax_cutoffs to null"
                )
            self.output = adaptive_softmax(num_hiddens, tgt_vocab_size, adaptive_softmax_cutoffs)
        self.set_evaluation_metrics(loss=mean_metric(), bleu=CorpusBLEU(), bleu_1ref=CorpusBLEU())
        # (src, src_len, tgt_in) of two short sentences, for Lightning's summary and tests
        words = torch.arange(4, 14).view(2, 5)
        self.example_input_array = (
            words % src_vocab_size,
            torch.tensor([5, 3]),
            words % tgt_vocab_size,
        )

    # -- what each model supplies --------------------------------------------------------------

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        raise NotImplementedError

    def decode(
        self, tgt_in: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]:
        """Decoder features (batch, steps, num_hiddens) for the target ids `tgt_in`, each step
        seeing only the ids up to it, and the state after the last step."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------

    def forward(
        self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        """Logits (batch, target steps, target vocabulary) under teacher forcing."""
        return self.logits(self.decode(tgt_in, self.encode(src, src_len))[0])

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Scores over the target vocabulary for decoder features (log-probabilities when the
        output is an adaptive softmax, which gives no unnormalized logits)."""
        if isinstance(self.output, nn.AdaptiveLogSoftmaxWithLoss):
            return self.output.log_prob(features.flatten(0, -2)).view(*features.shape[:-1], -1)
        return self.output(features)

    def next_token_logits(
        self, tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]:
        """For greedy and beam search: logits of the token after `tokens` (one per row)."""
        features, state = self.decode(tokens.unsqueeze(1), state)
        return self.logits(features[:, -1]), state

    def loss(self, batch: Any) -> torch.Tensor:
        """Cross-entropy of the next target token, over real tokens only: features at padded
        positions are dropped before the output layer, which is the costliest layer."""
        features, _ = self.decode(batch.tgt[:, :-1], self.encode(batch.src, batch.src_len))
        target = batch.tgt[:, 1:]
        real = target != PAD
        if isinstance(self.output, nn.AdaptiveLogSoftmaxWithLoss):
            return self.output(features[real], target[real]).loss
        return F.cross_entropy(
            self.output(features[real]), target[real], label_smoothing=self.hparams.label_smoothing
        )

    def translate(
        self,
        src: torch.Tensor,
        src_len: torch.Tensor,
        beam_size: int = 1,
        length_penalty: float = 1.0,
    ) -> torch.Tensor:
        """Target ids (batch, steps) ending in <eos>: greedy for beam_size 1, else beam search.
        At most twice the longest source plus ten tokens are generated."""
        max_len = 2 * int(src_len.max()) + 10
        if beam_size == 1:
            return greedy_search(self, src, src_len, max_len)
        return beam_search(self, src, src_len, beam_size, max_len, length_penalty)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log_train_loss(loss)
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        metrics = self.evaluation_metrics[stage]
        metrics["loss"].update(self.loss(batch), int((batch.tgt[:, 1:] != PAD).sum()))
        if not batch.decode.any():
            return
        data = self._text_data()
        rows = batch.decode.nonzero().squeeze(1)
        beam = (1, 1.0) if stage == "val" else (data.beam_size, data.length_penalty)
        ids = self.translate(batch.src[rows], batch.src_len[rows], *beam)
        translations = [data.decode_target(row) for row in ids]
        references = data.references(stage, batch.index[rows])
        metrics["bleu"].update(translations, references)
        metrics["bleu_1ref"].update(translations, [r[:1] for r in references])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """Translations (target ids) of the batch's sentences, with their input rows."""
        data = self._text_data()
        ids = self.translate(batch.src, batch.src_len, data.beam_size, data.length_penalty)
        return {"ids": ids, "index": batch.index}

    def _text_data(self) -> Any:
        data = getattr(self.trainer, "datamodule", None)
        if not all(hasattr(data, a) for a in ("decode_target", "references", "beam_size")):
            raise TypeError(
                f"{type(self).__name__} turns ids into text through its datamodule, and "
                f"{type(data).__name__} has no decode_target/references/beam_size: use fra_eng"
            )
        return data

    def configure_callbacks(self) -> list[Callback]:
        """Translations of `predict` are printed and saved; models with attention also draw
        their attention over a few validation sentences after each validation."""
        callbacks: list[Callback] = [TranslationWriter()]
        if hasattr(self, "cross_attention"):
            callbacks.append(AttentionMaps())
        return callbacks


class GRUEncoder(nn.Module):
    """Embedding and a (optionally bidirectional) GRU over each sentence up to its length.

    d2l runs its encoder over the padding too, so its final state depends on how much padding
    a batch has; packed sequences end each sentence at its own last token instead."""

    def __init__(
        self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float,
        bidirectional: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(
            embed_size, num_hiddens, num_layers, dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional,
            batch_first=True,
        )  # fmt: skip
        # a bidirectional encoder's two final states, per layer, become one decoder state
        self.bridge = nn.Linear(2 * num_hiddens, num_hiddens) if bidirectional else None

    def forward(
        self, src: torch.Tensor, src_len: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (batch, steps, directions x hiddens) and final states (layers, batch, hiddens)."""
        packed = pack_padded_sequence(
            self.embedding(src), src_len.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        if self.bridge is not None:
            layers = state.shape[0] // 2
            state = state.view(layers, 2, *state.shape[1:]).transpose(1, 2).flatten(2)
            state = torch.tanh(self.bridge(state))
        return outputs, state


class RecurrentSeq2Seq(Seq2SeqModule):
    """Shared by the two GRU models: the encoder, the target embedding, d2l's initialization."""

    def __init__(
        self,
        embed_size: int = 256,
        num_hiddens: int = 256,
        num_layers: int = 2,
        dropout: float = 0.2,
        bidirectional: bool = False,
        lr: float = 0.005,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            embed_size: width of the word embeddings (d2l: 256).
            num_hiddens: width of the GRU states (d2l: 256).
            num_layers: stacked GRU layers in the encoder and the decoder (d2l: 2).
            dropout: dropout between stacked GRU layers (d2l: 0.2).
            bidirectional: the encoder reads each sentence both ways; the two final states of
                each layer are merged by a linear layer and tanh into the decoder's state.
            lr: learning rate (d2l: Adam, 0.005).
        """
        super().__init__(num_hiddens=num_hiddens, lr=lr, **kwargs)
        check_positive(embed_size=embed_size, num_layers=num_layers)
        check_probability(dropout=dropout)
        hp = self.hparams
        self.encoder = GRUEncoder(
            hp.src_vocab_size, embed_size, num_hiddens, num_layers, dropout, bidirectional
        )
        self.embedding = nn.Embedding(hp.tgt_vocab_size, embed_size)

    def initialize(self) -> None:
        """Call at the end of a subclass's __init__, once every layer exists."""
        self.apply(init_seq2seq)

    @staticmethod
    def batch_first(state: torch.Tensor) -> torch.Tensor:
        """A GRU state (layers, batch, hiddens) as (batch, layers, hiddens), for the decoders'
        batch-first state dicts."""
        return state.transpose(0, 1)

    @staticmethod
    def layers_first(state: torch.Tensor) -> torch.Tensor:
        return state.transpose(0, 1).contiguous()


@register_model("seq2seq_gru", **REGISTRATION, test_kwargs={
    "embed_size": 8, "num_hiddens": 8, "num_layers": 2, "bidirectional": True,
})  # fmt: skip
class Seq2SeqGRU(RecurrentSeq2Seq):
    """GRU encoder-decoder (d2l 10.7): the encoder's final state starts the decoder and is
    fed to it, as context, at every step."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        hp = self.hparams
        self.rnn = nn.GRU(
            hp.embed_size + hp.num_hiddens, hp.num_hiddens, hp.num_layers,
            dropout=hp.dropout if hp.num_layers > 1 else 0.0, batch_first=True,
        )  # fmt: skip
        self.initialize()

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        _, state = self.encoder(src, src_len)
        return {"context": state[-1], "hidden": self.batch_first(state)}

    def decode(
        self, tgt_in: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]:
        embedded = self.embedding(tgt_in)
        context = state["context"].unsqueeze(1).expand(-1, tgt_in.shape[1], -1)
        outputs, hidden = self.rnn(
            torch.cat((embedded, context), dim=-1), self.layers_first(state["hidden"])
        )
        return outputs, {"context": state["context"], "hidden": self.batch_first(hidden)}


class AdditiveAttention(nn.Module):
    """Bahdanau's additive attention (d2l 11.3): score(q, k) = w_v . tanh(W_q q + W_k k), a
    softmax over the unpadded keys, dropout on the weights. The projected keys depend only on
    the source, so `project_keys` runs once per sentence, not once per decoding step."""

    def __init__(self, key_size: int, query_size: int, num_hiddens: int, dropout: float) -> None:
        super().__init__()
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return self.W_k(keys)

    def forward(
        self, query: torch.Tensor, projected_keys: torch.Tensor, values: torch.Tensor,
        key_padding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Context (batch, values' width) and weights (batch, keys) for one query per row."""
        features = torch.tanh(self.W_q(query).unsqueeze(1) + projected_keys)
        scores = self.w_v(features).squeeze(-1).masked_fill(key_padding, float("-inf"))
        weights = scores.softmax(dim=-1)
        return torch.bmm(self.dropout(weights).unsqueeze(1), values).squeeze(1), weights


@register_model("seq2seq_bahdanau", **REGISTRATION, test_kwargs={
    "embed_size": 8, "num_hiddens": 8, "num_layers": 1,
})  # fmt: skip
class Seq2SeqBahdanau(RecurrentSeq2Seq):
    """GRU encoder-decoder with Bahdanau (additive) attention (d2l 11.4): at every step the
    decoder's top state queries all encoder outputs, and the weighted sum joins its input."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        hp = self.hparams
        encoder_width = hp.num_hiddens * (2 if hp.bidirectional else 1)
        self.attention = AdditiveAttention(
            encoder_width, hp.num_hiddens, hp.num_hiddens, hp.dropout
        )
        self.rnn = nn.GRU(
            hp.embed_size + encoder_width, hp.num_hiddens, hp.num_layers,
            dropout=hp.dropout if hp.num_layers > 1 else 0.0, batch_first=True,
        )  # fmt: skip
        self.initialize()
        self.keep_attention = False  # AttentionMaps sets it to collect the weights
        self.attention_weights: list[torch.Tensor] = []

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        outputs, state = self.encoder(src, src_len)
        return {
            "outputs": outputs,
            "keys": self.attention.project_keys(outputs),
            "padding": padding_mask(src_len, src.shape[1]),
            "hidden": self.batch_first(state),
        }

    def decode(
        self, tgt_in: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]:
        hidden = self.layers_first(state["hidden"])
        features = []
        for embedded in self.embedding(tgt_in).unbind(dim=1):  # attention needs each new state
            context, weights = self.attention(
                hidden[-1], state["keys"], state["outputs"], state["padding"]
            )
            if self.keep_attention:
                self.attention_weights.append(weights)
            output, hidden = self.rnn(torch.cat((embedded, context), dim=-1).unsqueeze(1), hidden)
            features.append(output)
        return torch.cat(features, dim=1), {**state, "hidden": self.batch_first(hidden)}

    def cross_attention(
        self, src: torch.Tensor, src_len: torch.Tensor, translation: torch.Tensor
    ) -> torch.Tensor:
        """Attention weights (batch, 1 head, target steps, source steps) while producing each
        token of `translation`."""
        self.keep_attention, self.attention_weights = True, []
        try:
            self.decode(teacher_input(translation), self.encode(src, src_len))
            return torch.stack(self.attention_weights, dim=1).unsqueeze(1)
        finally:
            self.keep_attention, self.attention_weights = False, []


def sinusoids(max_len: int, num_hiddens: int) -> torch.Tensor:
    """d2l 11.6's position encodings of positions 0 to max_len - 1 (max_len, num_hiddens)."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    frequency = torch.pow(10000, torch.arange(0, num_hiddens, 2) / num_hiddens)
    encoding = torch.zeros(max_len, num_hiddens)
    encoding[:, 0::2] = torch.sin(position / frequency)
    encoding[:, 1::2] = torch.cos(position / frequency[: num_hiddens // 2])
    return encoding


class PositionalEncoding(nn.Module):
    """d2l 11.6's sinusoidal position encoding, added to the embeddings, then dropout. The
    table grows when a longer sentence comes (a user's, to translate), so no length is refused."""

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("encoding", sinusoids(max_len, num_hiddens), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        end = offset + x.shape[1]
        if end > len(self.encoding):
            self.encoding = sinusoids(2 * end, x.shape[2]).to(self.encoding)
        return self.dropout(x + self.encoding[offset:end])


@register_model("transformer", **REGISTRATION, test_kwargs={
    "num_hiddens": 8, "ffn_num_hiddens": 16, "num_heads": 2, "num_blks": 1,
})  # fmt: skip
class Transformer(Seq2SeqModule):
    """Transformer encoder-decoder (d2l 11.7): scaled embeddings plus sinusoidal positions, then
    post-norm blocks of multi-head attention and a position-wise FFN.

    The blocks are torch's `nn.TransformerEncoderLayer`/`nn.TransformerDecoderLayer` with d2l's
    bias-free attention projections, so the parameters are d2l's; unlike d2l, torch also
    applies dropout inside the FFN."""

    def __init__(
        self,
        num_hiddens: int = 256,
        ffn_num_hiddens: int = 64,
        num_heads: int = 4,
        num_blks: int = 2,
        dropout: float = 0.2,
        lr: float = 0.001,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            num_hiddens: model width (d2l: 256); a multiple of num_heads.
            ffn_num_hiddens: hidden width of each block's FFN (d2l: 64).
            num_heads: attention heads (d2l: 4).
            num_blks: encoder blocks, and as many decoder blocks (d2l: 2).
            dropout: dropout on embeddings, attention weights and block outputs (d2l: 0.2).
            lr: learning rate (d2l: Adam, 0.001).
        """
        super().__init__(num_hiddens=num_hiddens, lr=lr, **kwargs)
        check_positive(ffn_num_hiddens=ffn_num_hiddens, num_heads=num_heads, num_blks=num_blks)
        check_probability(dropout=dropout)
        if num_hiddens % num_heads:
            raise ConfigurationError(
                f"num_hiddens {num_hiddens} must be a multiple of num_heads {num_heads}"
            )
        hp = self.hparams
        self.src_embedding = nn.Embedding(hp.src_vocab_size, num_hiddens)
        self.tgt_embedding = nn.Embedding(hp.tgt_vocab_size, num_hiddens)
        self.positions = PositionalEncoding(num_hiddens, dropout)
        block = {"d_model": num_hiddens, "nhead": num_heads, "dim_feedforward": ffn_num_hiddens,
                 "dropout": dropout, "batch_first": True}  # fmt: skip
        self.encoder_blocks = nn.ModuleList(
            without_attention_bias(nn.TransformerEncoderLayer(**block)) for _ in range(num_blks)
        )
        self.decoder_blocks = nn.ModuleList(
            without_attention_bias(nn.TransformerDecoderLayer(**block)) for _ in range(num_blks)
        )
        self._captured: list[torch.Tensor] = []

    def embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        return self.positions(embedding(ids) * math.sqrt(self.hparams.num_hiddens))

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        padding = padding_mask(src_len, src.shape[1])
        memory = self.embed(self.src_embedding, src)
        for block in self.encoder_blocks:
            memory = block(memory, src_key_padding_mask=padding)
        # the decoder re-reads the whole prefix at every step (torch's layers keep no cache)
        prefix = src.new_empty(len(src), 0)
        return {"memory": memory, "padding": padding, "prefix": prefix}

    def decode(
        self, tgt_in: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]:
        prefix = torch.cat((state["prefix"], tgt_in), dim=1)
        steps = prefix.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=prefix.device)
        x = self.embed(self.tgt_embedding, prefix)
        for block in self.decoder_blocks:
            x = block(
                x, state["memory"], tgt_mask=causal, tgt_is_causal=True,
                memory_key_padding_mask=state["padding"],
            )  # fmt: skip
        return x[:, steps - tgt_in.shape[1] :], {**state, "prefix": prefix}

    def cross_attention(
        self, src: torch.Tensor, src_len: torch.Tensor, translation: torch.Tensor
    ) -> torch.Tensor:
        """The last decoder block's attention over the source (batch, heads, target steps,
        source steps) while producing each token of `translation`."""
        attention = self.decoder_blocks[-1].multihead_attn
        handles = (
            attention.register_forward_pre_hook(_ask_for_weights, with_kwargs=True),
            attention.register_forward_hook(lambda _m, _a, out: self._captured.append(out[1])),
        )
        try:
            self.decode(teacher_input(translation), self.encode(src, src_len))
            return self._captured[-1]
        finally:
            for handle in handles:
                handle.remove()
            self._captured = []


def without_attention_bias(block: nn.Module) -> nn.Module:
    """Rebuild a torch Transformer layer's attention modules without biases (d2l's
    MultiHeadAttention has none); everything else keeps torch's layout."""
    for name in ("self_attn", "multihead_attn"):
        old = getattr(block, name, None)
        if old is not None:
            setattr(block, name, nn.MultiheadAttention(
                old.embed_dim, old.num_heads, dropout=old.dropout, bias=False, batch_first=True,
            ))  # fmt: skip
    return block


def _ask_for_weights(
    module: nn.Module, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any]]:
    """Forward pre-hook: make nn.MultiheadAttention return per-head weights, which torch's
    decoder layer does not ask for."""
    return args, {**kwargs, "need_weights": True, "average_attn_weights": False}
