"""Greedy and beam search for encoder-decoder models, written once for all of them.

A model takes part by two methods: ``encode(src, src_len)`` returns its decoder state as a dict
of tensors whose first dimension is the batch, and ``next_token_logits(tokens, state)`` returns
the logits of the next token after `tokens` (one per row) and the updated state. Beam search
reorders the state with `index_select` on that first dimension, so no model writes its own.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

DecoderState = dict[str, torch.Tensor]
# The fra_eng vocabularies' special ids (datamodules/translation.py puts them first).
PAD, BOS, EOS = 0, 1, 2


class IncrementalDecoder(Protocol):
    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState: ...

    def next_token_logits(
        self, tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]: ...


def reorder(state: DecoderState, index: torch.Tensor) -> DecoderState:
    """The state of rows `index` (repeats allowed), e.g. each sentence's state once per beam."""
    return {key: value.index_select(0, index) for key, value in state.items()}


def greedy_search(
    model: IncrementalDecoder, src: torch.Tensor, src_len: torch.Tensor, max_len: int
) -> torch.Tensor:
    """The most likely next token at every step, until <eos> or `max_len` tokens.

    Returns ids (batch, steps): each row ends at its <eos> (included) and is padded after it."""
    state = model.encode(src, src_len)
    tokens = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    output = []
    for _ in range(max_len):
        logits, state = model.next_token_logits(tokens, state)
        tokens = logits.argmax(dim=-1).masked_fill(finished, PAD)
        output.append(tokens)
        finished |= tokens == EOS
        if finished.all():
            break
    return torch.stack(output, dim=1)


def length_normalizer(length: torch.Tensor | int, alpha: float) -> torch.Tensor | float:
    """GNMT's length penalty ((5 + length) / 6) ** alpha: beam scores (sums of log-probabilities,
    which only fall as a sentence grows) are divided by it, so long translations can compete."""
    return ((5 + length) / 6) ** alpha


def beam_search(
    model: IncrementalDecoder,
    src: torch.Tensor,
    src_len: torch.Tensor,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
) -> torch.Tensor:
    """Keep the `beam_size` most likely partial translations of each sentence at every step.

    A beam that emits <eos> becomes a finished hypothesis scored by its log-probability divided
    by `length_normalizer`; a sentence is done once it has `beam_size` finished hypotheses (or at
    `max_len`), and its best-scoring one is returned. With beam_size 1 this is greedy search.
    Returns ids (batch, steps) like `greedy_search`."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    batch, device = len(src), src.device
    k = beam_size
    state = reorder(
        model.encode(src, src_len), torch.arange(batch, device=device).repeat_interleave(k)
    )
    tokens = torch.full((batch * k,), BOS, dtype=torch.long, device=device)
    history = torch.empty(batch, k, 0, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: keep one, or the first step fills k copies
    best_score = torch.full((batch,), float("-inf"), device=device)
    best = torch.full((batch, max_len), PAD, dtype=torch.long, device=device)
    finished_count = torch.zeros(batch, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)
    for step in range(max_len):
        logits, state = model.next_token_logits(tokens, state)
        vocab = logits.shape[-1]
        candidates = scores.unsqueeze(-1) + F.log_softmax(logits.float(), -1).view(batch, k, vocab)
        top_scores, top = candidates.view(batch, -1).topk(min(2 * k, k * vocab), dim=-1)
        beam, token = top // vocab, top % vocab
        done = finished_count >= k

        # <eos> among the k best candidates finishes a hypothesis
        is_eos = token == EOS
        finishing = is_eos & (torch.arange(top.shape[1], device=device) < k) & ~done.unsqueeze(1)
        normalized = (top_scores / length_normalizer(step + 1, length_penalty)).masked_fill(
            ~finishing, float("-inf")
        )
        candidate_best, column = normalized.max(dim=1)
        improves = candidate_best > best_score
        if improves.any():
            parents = beam[rows, column]
            sequences = torch.cat(
                (history[rows, parents], torch.full((batch, 1), EOS, device=device)), dim=1
            )
            best[improves, : step + 1] = sequences[improves]
            best[improves, step + 1 :] = PAD
            best_score = torch.where(improves, candidate_best, best_score)
        finished_count += finishing.sum(dim=1)

        # the k best candidates that do not end go on
        alive_rank = (~is_eos).long().cumsum(dim=1)
        keep = (~is_eos) & (alive_rank <= k)
        chosen = keep.nonzero()[:, 1].view(batch, k)  # every row has at least k alive candidates
        parents = beam.gather(1, chosen)
        tokens = token.gather(1, chosen)
        scores = top_scores.gather(1, chosen)
        history = torch.cat((history.gather(1, parents.unsqueeze(-1).expand(-1, -1, step)),
                             tokens.unsqueeze(-1)), dim=2)  # fmt: skip
        flat_parents = (rows.unsqueeze(1) * k + parents).flatten()
        state = reorder(state, flat_parents)
        tokens = tokens.flatten()
        if (finished_count >= k).all():
            break
    # sentences with no finished hypothesis by max_len: their best unfinished beam
    unfinished = best_score == float("-inf")
    if unfinished.any():
        length = history.shape[2]
        top_beam = (scores / length_normalizer(length, length_penalty)).argmax(dim=1)
        best[unfinished, :length] = history[rows, top_beam][unfinished]
    return trim_padding(best)


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Drop the columns that are padding in every row."""
    used = (ids != PAD).any(dim=0).nonzero()
    return ids[:, : int(used.max()) + 1] if len(used) else ids[:, :1]
