"""Rollouts of a language-model policy: KV-cached sampling from left-padded prompts, with the log-probabilities that sampled.

A rollout is what REINFORCE and PPO on language models learn from (Ziegler et al., 2019; Ouyang et al., 2022): prompts,
the tokens the policy generated after them, masks that say which tokens are the response, and log pi(y_t | x, y_<t)
under the distribution that actually drew each token (after temperature, top-k and top-p), so that importance ratios
start at exactly 1. Each step feeds only the newest token and reuses the keys and values of all earlier ones (the
model's cache), as ``model.generate`` does; :mod:`rl4lm.lm.decoding` keeps the uncached loops that Session 2 reads.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .decoding import top_k_filter, top_p_filter
from .logprobs import positions_from_mask


@dataclass
class Rollout:
    """Prompts and the responses sampled after them; all tensors are on the model's device.

    input_ids, attention_mask, response_mask: (batch, prompt_len + new). Prompts are left-padded, responses follow
    at column prompt_len; after a row's first EOS its tokens are padding. attention_mask is 1 on real prompt tokens
    and on generated tokens up to and including the first EOS; response_mask is 1 on those generated tokens only.
    logprobs: (batch, new), log-probability of each generated token under the distribution that sampled it, 0 where
    response_mask[:, prompt_len:] is 0.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    prompt_len: int
    eos_token_id: int | None = None

    @property
    def response_ids(self) -> torch.Tensor:
        """The generated columns of input_ids, (batch, new)."""
        return self.input_ids[:, self.prompt_len:]

    def response_lengths(self) -> torch.Tensor:
        """Number of response tokens of each row, EOS included; (batch,)."""
        return self.response_mask.sum(dim=-1)

    def texts(self, tokenizer) -> list[str]:
        """The decoded responses, without prompt, padding or EOS."""
        rows = zip(self.response_ids.tolist(), self.response_mask[:, self.prompt_len:].tolist())
        return [tokenizer.decode(_kept(ids, mask, self.eos_token_id), skip_special_tokens=True) for ids, mask in rows]

    def full_texts(self, tokenizer) -> list[str]:
        """Each prompt followed by its response, decoded from the tokens the attention mask keeps, without padding or EOS."""
        rows = zip(self.input_ids.tolist(), self.attention_mask.tolist())
        return [tokenizer.decode(_kept(ids, mask, self.eos_token_id), skip_special_tokens=True) for ids, mask in rows]


def _kept(ids: list[int], mask: list[int], eos_token_id: int | None) -> list[int]:
    """The ids whose mask is 1, less a final end-of-sequence token."""
    kept = [i for i, m in zip(ids, mask) if m]
    return kept[:-1] if kept and eos_token_id is not None and kept[-1] == eos_token_id else kept


def sampling_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits of the distribution that samples, softmax(top_p(top_k(z / t))), in transformers' order (Holtzman et al., 2020).

    logits: (batch, vocab). Removed tokens are -inf, so log_softmax of the result gives the sampling log-probabilities.
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    return logits


def _check_arguments(prompts, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> None:
    """One sentence naming the first argument a rollout cannot use."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts should be a list of strings (one rollout per prompt).")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: there is nothing to roll out.")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens should be a whole number of at least 1, got {max_new_tokens!r}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}; use greedy_rollout for t -> 0.")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k should be None or a whole number of at least 1, got {top_k!r}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p should be None or lie in (0, 1], got {top_p}.")


def _model_device(model) -> torch.device:
    """The device of the model's parameters."""
    return getattr(model, "device", None) or next(model.parameters()).device


def left_padded_prompts(tokenizer, prompts: list[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the prompts padded on the left, with their attention mask; both (batch, prompt_len).

    Padding uses the tokenizer's pad token (its EOS if it has none); the tokenizer itself is not changed.
    """
    rows = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    empty = [i for i, ids in enumerate(rows) if not ids]
    if empty:
        raise ValueError(f"prompts[{empty[0]}] is empty; a response must follow at least one prompt token.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(ids) for ids in rows)
    ids = torch.tensor([[0 if pad is None else pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids.to(device), mask.to(device)


def _accepts_logits_to_keep(model) -> bool:
    """Whether the model's forward can compute the logits of the last position only (most transformers LMs can)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


Chooser = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # logits (batch, vocab) -> (token, logprob), each (batch,)


@torch.no_grad()
def rollout_from_ids(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, choose: Chooser,
                     eos_token_id: int | None, pad_token_id: int | None) -> Rollout:
    """The KV-cached decoding loop: one forward over the prompts, then one token per step with the model's cache.

    input_ids, attention_mask: (batch, prompt_len), left-padded. ``choose`` maps next-token logits (batch, vocab, float32)
    to the chosen tokens and their log-probabilities. Rows stop at their first EOS (later tokens are padding); the loop
    ends when every row has stopped or after max_new_tokens. Position ids count real tokens only, as in ``generate``.
    """
    batch, prompt_len = input_ids.shape
    pad = torch.tensor(pad_token_id if pad_token_id is not None else (eos_token_id or 0), device=input_ids.device)
    positions = positions_from_mask(attention_mask)  # (batch, prompt_len)
    # The model sees generate's mask: the prompt's, grown with ones; None when nothing is padded (the fast path).
    model_mask = None if bool(attention_mask.bool().all()) else attention_mask
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    out = model(input_ids=input_ids, attention_mask=model_mask, position_ids=positions, use_cache=True, **extra)
    next_pos = positions[:, -1:] + 1  # (batch, 1)
    alive = torch.ones(batch, dtype=torch.bool, device=input_ids.device)
    tokens, logprobs, live = [], [], []
    for step in range(max_new_tokens):
        token, logp = choose(out.logits[:, -1].float())  # (batch,), (batch,)
        token = torch.where(alive, token, pad)
        tokens.append(token)
        logprobs.append(torch.where(alive, logp, 0.0))
        live.append(alive)
        if eos_token_id is not None:
            alive = alive & (token != eos_token_id)
        if step == max_new_tokens - 1 or not bool(alive.any()):
            break
        if model_mask is not None:
            model_mask = torch.cat([model_mask, model_mask.new_ones(batch, 1)], dim=-1)
        out = model(input_ids=token[:, None], attention_mask=model_mask, position_ids=next_pos, cache=out.cache, use_cache=True)
        next_pos = next_pos + 1
    new_ids = torch.stack(tokens, dim=1)  # (batch, new)
    generated = torch.stack(live, dim=1).to(attention_mask.dtype)  # (batch, new): 1 up to and including the first EOS
    return Rollout(input_ids=torch.cat([input_ids, new_ids], dim=1),
                   attention_mask=torch.cat([attention_mask, generated], dim=1),
                   response_mask=torch.cat([torch.zeros_like(attention_mask), generated], dim=1),
                   logprobs=torch.stack(logprobs, dim=1), prompt_len=prompt_len, eos_token_id=eos_token_id)


def _check_room(model, prompt_len: int, max_new_tokens: int) -> None:
    """One sentence naming max_new_tokens when prompt and response would not fit the model's positions."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and prompt_len + max_new_tokens > limit:
        raise ValueError(f"max_new_tokens = {max_new_tokens} after a prompt of {prompt_len} tokens exceeds the model's "
                         f"{limit} positions; ask for at most {limit - prompt_len} new tokens.")


def _start(model, tokenizer, prompts, max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The left-padded prompts on the model's device, after checking that the rollout fits the model."""
    input_ids, attention_mask = left_padded_prompts(tokenizer, prompts, _model_device(model))
    _check_room(model, input_ids.shape[1], max_new_tokens)
    return input_ids, attention_mask


@torch.no_grad()
def sample_rollout(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, generator: torch.Generator | None = None) -> Rollout:
    """Ancestral sampling y_t ~ softmax(top_p(top_k(z_t / t))) with a KV cache, from left-padded prompts (Ziegler et al., 2019).

    Returns a :class:`Rollout` whose logprobs are those of the filtered distribution that drew each token. With
    ``generator=None`` torch's global generator is used, token for token as ``model.generate(do_sample=True, ...)``
    after the same ``torch.manual_seed``. Stops early once every row has produced the tokenizer's EOS.
    """
    _check_arguments(prompts, max_new_tokens, temperature, top_k, top_p)
    input_ids, attention_mask = _start(model, tokenizer, prompts, max_new_tokens)
    if generator is not None and generator.device.type != input_ids.device.type:
        raise ValueError(f"generator is on {generator.device} but the model is on {input_ids.device}; "
                         f"create it with torch.Generator(device='{input_ids.device}').")

    def choose(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = sampling_logits(logits, temperature, top_k, top_p)  # (batch, vocab)
        token = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)  # (batch, 1)
        return token.squeeze(-1), (scores.gather(-1, token) - torch.logsumexp(scores, dim=-1, keepdim=True)).squeeze(-1)

    return rollout_from_ids(model, input_ids, attention_mask, max_new_tokens, choose, tokenizer.eos_token_id, tokenizer.pad_token_id)


@torch.no_grad()
def greedy_rollout(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, generator: torch.Generator | None = None) -> Rollout:
    """Greedy decoding y_t = argmax_w P(w | x, y_<t) with a KV cache; the same tokens as ``model.generate(do_sample=False)``.

    temperature, top_k, top_p and generator are accepted for symmetry with :func:`sample_rollout` and ignored (none
    changes the argmax). logprobs are log P(y_t | x, y_<t) under the model's unfiltered softmax.
    """
    _check_arguments(prompts, max_new_tokens)

    def choose(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        token = logits.argmax(dim=-1, keepdim=True)  # (batch, 1)
        return token.squeeze(-1), (logits.gather(-1, token) - torch.logsumexp(logits, dim=-1, keepdim=True)).squeeze(-1)

    input_ids, attention_mask = _start(model, tokenizer, prompts, max_new_tokens)
    return rollout_from_ids(model, input_ids, attention_mask, max_new_tokens, choose, tokenizer.eos_token_id, tokenizer.pad_token_id)
