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


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens only, cumsum(mask) - 1 clamped at 0, so that left padding does not shift positions."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (batch, seq)


def _check_ids_and_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """One sentence naming the argument when input_ids is not a (batch, seq) integer tensor or attention_mask does not match it."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ValueError(f"input_ids should be a (batch, seq) tensor of token ids, got {_describe(input_ids)}.")
    if input_ids.shape[1] < 2:
        raise ValueError(f"input_ids has {input_ids.shape[1]} token per row; a log-probability needs at least one earlier token.")
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"attention_mask should have the shape of input_ids {tuple(input_ids.shape)}, got {_describe(attention_mask)}.")
    if not _is_binary(attention_mask):
        raise ValueError("attention_mask should hold only 0 (padding) and 1 (real token).")


def _describe(x) -> str:
    """'a tensor of shape (2, 3) and dtype torch.float32', or the type of a non-tensor."""
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def _is_binary(mask: torch.Tensor) -> bool:
    """True when every entry of the mask is 0 or 1."""
    return bool(((mask == 0) | (mask == 1)).all())


def per_token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log P(w_{t+1} | w_{<=t}) at every position, with position ids from the attention mask; (batch, seq - 1), with gradient.

    Entry [b, t] scores input_ids[b, t + 1]. Works with left or right padding: positions count real tokens only
    (:func:`positions_from_mask`), padding is masked out of attention; entries that score a padding token are
    meaningless and are for the caller to mask. Computed as z_w - logsumexp(z) in float32, without a second
    (batch, seq, vocab) tensor of log-probabilities.
    """
    _check_ids_and_mask(input_ids, attention_mask)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions_from_mask(attention_mask)).logits
    logits = logits[:, :-1].float()  # (batch, seq - 1, vocab)
    chosen = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (batch, seq - 1)
    return chosen - torch.logsumexp(logits, dim=-1)


def check_response_mask(response_mask: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """One sentence naming response_mask when it cannot be scored: wrong shape, not 0/1, empty row, padding, or no earlier token."""
    if not isinstance(response_mask, torch.Tensor) or tuple(response_mask.shape) != tuple(attention_mask.shape):
        raise ValueError(f"response_mask should have the shape of input_ids {tuple(attention_mask.shape)}, got {_describe(response_mask)}.")
    if not _is_binary(response_mask):
        raise ValueError("response_mask should hold only 0 (not scored) and 1 (a response token to score).")
    response, real = response_mask.bool(), attention_mask.bool()
    empty = (~response.any(dim=-1)).nonzero()
    if len(empty):
        raise ValueError(f"response_mask selects no token in row {int(empty[0])}; each row needs at least one response token to score.")
    on_padding = (response & ~real).nonzero()
    if len(on_padding):
        row, col = (int(v) for v in on_padding[0])
        raise ValueError(f"response_mask selects position {col} of row {row}, where attention_mask is 0 (padding); "
                         "only real tokens can be scored.")
    first_real = real.long().argmax(dim=-1)  # (batch,) index of each row's first real token
    no_context = response.gather(-1, first_real[:, None]).squeeze(-1).nonzero()
    if len(no_context):
        row = int(no_context[0])
        col = int(first_real[row])
        where = "position 0" if col == 0 else f"position {col}, the first real token"
        raise ValueError(f"response_mask selects {where} of row {row}, which has no earlier token to condition on; "
                         "a response must follow at least one prompt token.")


def sequence_logprob(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """log pi(y | x) = sum_t log P(y_t | x, y_<t) over the tokens where response_mask is 1, per sequence (batch,), with gradient.

    The sequence-level log-probability of REINFORCE and PPO on language models (Ziegler et al., 2019). All three
    tensors are (batch, seq) and aligned with input_ids; left or right padding both work (position ids from the mask).
    """
    _check_ids_and_mask(input_ids, attention_mask)
    check_response_mask(response_mask, attention_mask)
    token_lp = per_token_logprobs(model, input_ids, attention_mask)  # (batch, seq - 1); [:, t] scores token t + 1
    return torch.where(response_mask[:, 1:].bool(), token_lp, 0.0).sum(dim=-1)
