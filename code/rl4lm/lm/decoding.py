"""Reference implementations of decoding schemes and of the statistics used to compare them (Session 2).

Logits are (batch, vocab). Filters return logits with removed tokens set to -inf, as
transformers' logits processors do, so they compose: top_p_filter(top_k_filter(l / t, k), p).
"""
from __future__ import annotations

from collections import Counter

import torch


def temperature_softmax(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Softmax with temperature, p_i = exp(z_i / t) / sum_j exp(z_j / t) (Ackley et al., 1985)."""
    if t <= 0:
        raise ValueError("temperature must be positive; use greedy decoding for t -> 0")
    return torch.softmax(logits / t, dim=-1)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row, set the rest to -inf (Fan et al., 2018)."""
    k = min(max(int(k), 1), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (batch, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches p (Holtzman et al., 2020)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # A token is kept while the mass ranked above it is below p, i.e. while the mass of itself and everything
    # below it exceeds 1 - p. Summing from the tail (as transformers' TopPLogitsWarper does) avoids float32
    # cumulative sums that reach 1.0 early and would drop tokens at p = 1.
    mass_from_here = probs.flip(-1).cumsum(dim=-1).flip(-1)  # (batch, vocab)
    remove_sorted = mass_from_here <= 1 - p
    remove_sorted[..., 0] = False  # always keep the most likely token
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


@torch.no_grad()
def next_token_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of the next token after each sequence, (batch, vocab)."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -1, :].float()


@torch.no_grad()
def greedy_decode(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding, w_{t+1} = argmax_w P(w | w_{1:t}); returns prompt + new tokens (batch, seq + new)."""
    ids = input_ids
    for _ in range(max_new_tokens):
        next_id = next_token_logits(model, ids).argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=-1)
    return ids


def sample(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestral sampling w_{t+1} ~ softmax(filter(z / t)), with optional top-k and top-p filters."""

    def filtered_probs(logits: torch.Tensor) -> torch.Tensor:
        logits = logits / temperature
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        return logits.softmax(dim=-1)

    return sample_with(model, input_ids, max_new_tokens, filtered_probs, generator)


@torch.no_grad()
def sample_with(model, input_ids: torch.Tensor, max_new_tokens: int, probs_fn,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestral sampling w_{t+1} ~ probs_fn(z_t), where probs_fn maps next-token logits (batch, vocab) to probabilities."""
    ids = input_ids
    for _ in range(max_new_tokens):
        probs = probs_fn(next_token_logits(model, ids))  # (batch, vocab)
        next_id = torch.multinomial(probs, 1, generator=generator)
        ids = torch.cat([ids, next_id], dim=-1)
    return ids


@torch.no_grad()
def beam_search(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int) -> torch.Tensor:
    """Beam search: keep the num_beams prefixes of highest log-probability sum_t log P(w_t | w_<t) at each step.

    Matches ``model.generate(num_beams=..., do_sample=False, length_penalty=0, early_stopping=True)``
    when no end-of-sequence token is produced. Returns the best sequence per prompt (batch, seq + new).
    """
    batch, seq = input_ids.shape
    beams = input_ids.repeat_interleave(num_beams, dim=0)  # (batch * beams, seq)
    scores = torch.full((batch, num_beams), float("-inf"), device=input_ids.device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first one at step 1
    for _ in range(max_new_tokens):
        logprobs = torch.log_softmax(next_token_logits(model, beams), dim=-1)  # (batch * beams, vocab)
        vocab = logprobs.shape[-1]
        total = (scores.view(-1, 1) + logprobs).view(batch, num_beams * vocab)
        scores, flat = torch.topk(total, num_beams, dim=-1)  # (batch, beams)
        parent, token = flat // vocab, flat % vocab
        rows = (torch.arange(batch, device=beams.device)[:, None] * num_beams + parent).view(-1)
        beams = torch.cat([beams[rows], token.view(-1, 1)], dim=-1)
    best = scores.argmax(dim=-1)
    return beams.view(batch, num_beams, -1)[torch.arange(batch, device=beams.device), best]


def cut_at_eos(token_lists: list[list[int]], eos_token_id: int | None) -> list[list[int]]:
    """Each generation up to and including its first end-of-sequence token (all of it if there is none)."""
    if eos_token_id is None:
        return [list(toks) for toks in token_lists]
    return [list(toks[: toks.index(eos_token_id) + 1]) if eos_token_id in toks else list(toks) for toks in token_lists]


def distinct_n(token_lists: list[list[int]], n: int) -> float:
    """Distinct-n: unique n-grams / all n-grams over a set of generations (Li et al., 2016)."""
    grams = [tuple(toks[i:i + n]) for toks in token_lists for i in range(len(toks) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


def repetition_rate(token_lists: list[list[int]], n: int = 2) -> float:
    """Share of n-grams inside a generation that already occurred earlier in the same generation."""
    repeated = total = 0
    for toks in token_lists:
        counts = Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
        repeated += sum(c - 1 for c in counts.values())
        total += sum(counts.values())
    return repeated / max(total, 1)
