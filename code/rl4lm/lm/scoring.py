"""Zero-shot multiple choice by log-probability (Homework 2): score each option as a continuation of the context.

An item is a context and a list of options; a causal LM "answers" by giving each option the log-probability
log P(option | context) = sum_t log P(w_t | context, w_<t) and picking the largest (Radford et al., 2019;
Brown et al., 2020). Long options collect more negative terms, so the raw sum favours short options; dividing by
the number of tokens or characters (``normalize``) removes part of that bias (the ``acc_norm`` of the
lm-evaluation-harness, Gao et al., 2024).

Tokenization at the boundary: the context is tokenized on its own and each option is tokenized on its own as
``" " + option`` (one separating space, added here), and the two id lists are concatenated. For byte-level BPE
(GPT-2 and the tiny LM) this gives the same ids as tokenizing the joined text, because the pre-tokenizer splits
before a space, so no merge crosses the boundary; and the option's ids never depend on the context.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .logprobs import token_log_probs

NORMALIZATIONS = ("none", "per_token", "per_char")
SEPARATOR = " "  # put between the context and every option
Z_95 = 1.959963984540054  # the 97.5% quantile of the standard normal: a two-sided 95% interval


def _check_options(options) -> list[str]:
    """The options as a list of non-empty strings, or a one-sentence ValueError naming ``options``."""
    if isinstance(options, str) or not isinstance(options, (list, tuple)):
        raise ValueError(f"options should be a list of strings, not {type(options).__name__}.")
    if not options:
        raise ValueError("options is empty; give at least one option to score.")
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise ValueError(f"options[{i}] is {option!r}; every option must be a non-empty string.")
    return list(options)


def _check_normalize(normalize: str) -> str:
    """``normalize`` itself, or a one-sentence ValueError listing the known normalizations."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize should be one of {', '.join(map(repr, NORMALIZATIONS))}, not {normalize!r}.")
    return normalize


def _context_ids(tokenizer, context: str) -> list[int]:
    """The context's token ids; an empty context becomes the beginning-of-text token (GPT-2's end-of-text)."""
    if not isinstance(context, str):
        raise ValueError(f"context should be a string, not {type(context).__name__}.")
    if context[-1:].isspace() and context[-1:] != "\n":
        raise ValueError("context ends with a space; write it without one, the scorer puts one space before each option.")
    ids = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("context is empty and the tokenizer has no beginning- or end-of-text token to condition on.")
        ids = [start]
    return ids


def _position_limit(model) -> int | None:
    """The longest sequence the model has positions for, if its config says."""
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def left_truncated(model, context_ids: list[int], reserved: int, too_long: str) -> list[int]:
    """The last context ids that fit the model's positions next to ``reserved`` more tokens (left truncation, see the module).

    ``too_long``: the one-sentence ValueError raised when the ``reserved`` tokens alone fill every position; ``{limit}``
    in it becomes the model's number of positions. A model whose config names no limit keeps every id.
    """
    limit = _position_limit(model)
    if limit is None:
        return context_ids
    if reserved >= limit:
        raise ValueError(too_long.replace("{limit}", str(limit)))
    return context_ids[-(limit - reserved):]


def option_logprobs(model, tokenizer, context: str, options: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """log P(option | context) = sum over the option's tokens of log P(w_t | context, w_<t), for each option.

    Returns ``(logprobs, n_tokens)``, both (n_options,): the summed log-probability of each option's tokens
    (float32) and how many tokens it has. The option is scored as ``" " + option`` tokenized on its own and
    appended to the context's ids (see the module). All options go through the model in one batched forward
    pass, right-padded, so that padding comes after every scored token and a causal LM never attends to it.
    A context too long for the model's positions loses its beginning (left truncation).
    """
    options = _check_options(options)
    context_ids = _context_ids(tokenizer, context)
    option_ids = [tokenizer(SEPARATOR + option, add_special_tokens=False)["input_ids"] for option in options]
    longest = max(len(ids) for ids in option_ids)
    context_ids = left_truncated(model, context_ids, longest,
                                 f"options has an option of {longest} tokens; the model sees at most {{limit}} tokens in all.")
    lengths = [len(context_ids) + len(ids) for ids in option_ids]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # any valid id: padding is never scored
    device = next(model.parameters()).device
    ids = torch.full((len(options), max(lengths)), pad, dtype=torch.long)  # (n_options, seq)
    scored = torch.zeros(len(options), max(lengths) - 1, dtype=torch.bool)  # (n_options, seq - 1): predicts token t + 1
    for row, option in enumerate(option_ids):
        ids[row, :lengths[row]] = torch.tensor(context_ids + option)
        scored[row, len(context_ids) - 1:lengths[row] - 1] = True
    token_lp = token_log_probs(model, ids.to(device)).cpu()  # (n_options, seq - 1)
    return (token_lp * scored).sum(-1), scored.sum(-1)


def score_options(model, tokenizer, context: str, options: list[str], normalize: str = "none") -> torch.Tensor:
    """Scores (n_options,) whose argmax is the model's answer: log P(option | context), optionally normalised.

    ``normalize``: ``"none"`` the summed log-probability; ``"per_token"`` divided by the option's number of tokens
    (the mean log-probability per token); ``"per_char"`` divided by the option's number of characters (without the
    separating space; the harness's ``acc_norm``).
    """
    _check_normalize(normalize)
    logprobs, n_tokens = option_logprobs(model, tokenizer, context, options)
    if normalize == "per_token":
        return logprobs / n_tokens
    if normalize == "per_char":
        return logprobs / torch.tensor([len(option) for option in options], dtype=logprobs.dtype)
    return logprobs


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (Wilson, 1927); 95% with the default z.

    (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), with p = k/n. Unlike p -/+ z sqrt(p(1-p)/n)
    it stays inside [0, 1] and does not collapse to a point at 0 or n correct answers.
    """
    if n <= 0:
        raise ValueError(f"n is {n}; an interval needs at least one item.")
    if not 0 <= correct <= n:
        raise ValueError(f"correct is {correct}; it must lie between 0 and n = {n}.")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _check_item(index: int, item) -> tuple[str, str, list[str], int]:
    """(task, context, options, label) of one item, or a one-sentence ValueError naming ``items``."""
    try:
        task, context, options, label = item["task"], item["context"], item["options"], item["label"]
    except (KeyError, TypeError):
        raise ValueError(f"items[{index}] should be a mapping with task, context, options and label.") from None
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(options):
        raise ValueError(f"items[{index}] has label {label!r}; it must index one of its {len(options)} options.")
    return task, context, options, label


def multiple_choice_accuracy(model, tokenizer, items: Iterable[dict], normalize: str = "none") -> dict:
    """Accuracy of argmax-score answers per task, with a 95% Wilson interval (Wilson, 1927).

    ``items``: mappings with ``task``, ``context``, ``options`` and ``label`` (the index of the right option),
    e.g. the rows of ``rl4lm.profiles.load_dataset("multiple_choice", split="test")``. Returns
    ``{task: {"accuracy", "correct", "n", "ci_low", "ci_high", "chance"}}``, tasks in order of first appearance;
    ``chance`` is the expected accuracy of guessing uniformly, the mean of 1 / number of options.
    """
    _check_normalize(normalize)
    tallies: dict[str, list[float]] = {}  # task -> [correct, n, sum of 1 / n_options]
    for index, item in enumerate(items):
        task, context, options, label = _check_item(index, item)
        predicted = int(score_options(model, tokenizer, context, options, normalize).argmax())
        tally = tallies.setdefault(task, [0, 0, 0.0])
        tally[0] += int(predicted == label)
        tally[1] += 1
        tally[2] += 1 / len(options)
    if not tallies:
        raise ValueError("items is empty; give at least one item to score.")
    results = {}
    for task, (correct, n, chance) in tallies.items():
        low, high = wilson_interval(int(correct), int(n))
        results[task] = {"accuracy": correct / n, "correct": int(correct), "n": int(n), "ci_low": low, "ci_high": high,
                         "chance": chance / n}
    return results
