"""Log-probabilities of tokens under a causal LM: the chain rule's factors, summed or averaged (Sessions 1-2).

Every page, script and checker that scores text calls these; surprisal is minus ``token_log_probs``.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def token_log_probs(model, ids: torch.Tensor) -> torch.Tensor:
    """log P(w_t | w_<t) of every token after the first, the chain rule's factors; (batch, seq - 1). Surprisal is minus this."""
    logprobs = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), dim=-1)  # (batch, seq - 1, vocab)
    return logprobs.gather(-1, ids[:, 1:, None]).squeeze(-1)


@torch.no_grad()
def sequence_log_likelihood(model, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Sum of log P(w_t | w_<t) over the generated tokens t >= prompt_len, per sequence (batch,)."""
    return token_log_probs(model, ids)[:, prompt_len - 1:].sum(dim=-1)


@torch.no_grad()
def mean_token_log_likelihood(model, ids: torch.Tensor, prompt_len: int, eos_token_id: int | None = None) -> torch.Tensor:
    """Average log P(w_t | w_<t) over the generated tokens up to the first end-of-sequence token, per sequence (batch,)."""
    token_lp = token_log_probs(model, ids)[:, prompt_len - 1:]  # (batch, new)
    new = ids[:, prompt_len:]
    counted = torch.ones_like(new, dtype=torch.bool)
    if eos_token_id is not None:  # count tokens up to and including the first EOS
        counted = (new == eos_token_id).long().cumsum(-1).sub((new == eos_token_id).long()) == 0
    return (token_lp * counted).sum(-1) / counted.sum(-1)
