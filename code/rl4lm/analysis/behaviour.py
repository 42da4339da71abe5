"""Behavioural comparisons of a model before and after tuning, on the same items (session 6).

Four questions, each answered per item so that two models can be compared item by item:

- how sure are we of a score? A percentile bootstrap over the items (Efron and Tibshirani, 1993), and for two models
  on the same items a *paired* bootstrap of their difference (Koehn, 2004), which is much tighter than two separate
  intervals because it resamples the items, not the models;
- how confident is the model? The softmax over a multiple-choice item's option scores (log-probabilities), whose
  largest entry is the confidence of the answer (Kadavath et al., 2022; the calibration plots of OpenAI, 2023);
- how varied are its outputs? The mean pairwise n-gram Jaccard similarity among the samples of one prompt, a
  self-similarity in the spirit of Self-BLEU (Zhu et al., 2018), next to distinct-n (:func:`rl4lm.lm.decoding.distinct_n`);
- does it collapse onto one answer? The distribution of the answers sampled for one question: the share of the most
  frequent answer and the entropy in bits (Shannon, 1948).
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .arrays import float64_array

if TYPE_CHECKING:
    import torch


def _as_items(values, name: str, unit: str = "item") -> np.ndarray:
    """A float64 copy of a list, numpy array or torch tensor with one entry (or row) per ``unit``, or a one-sentence ValueError."""
    array = float64_array(values, name, f"a list or array of numbers, one per {unit}")
    if array.ndim == 0:
        raise ValueError(f"{name} is a single number; give one value per {unit} (a 1-D array).")
    if len(array) == 0:
        raise ValueError(f"{name} is empty; give at least one {unit}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or inf; give finite values.")
    return array


def _check_bootstrap_settings(n_resamples: int, confidence: float) -> None:
    """One sentence naming ``n_resamples`` or ``confidence`` if a bootstrap cannot use it."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples is {n_resamples!r}; it must be a positive whole number (1,000 to 10,000 is usual).")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is {confidence!r}; it must lie strictly between 0 and 1, e.g. 0.95.")


def bootstrap_indices(n: int, n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Indices of n_resamples bootstrap samples of n items, drawn with replacement (Efron and Tibshirani, 1993); (n_resamples, n)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n is {n!r}; a bootstrap needs at least one item.")
    _check_bootstrap_settings(n_resamples, 0.5)
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _resampled_statistics(values: np.ndarray, statistic: Callable | None, indices: np.ndarray) -> np.ndarray:
    """statistic(values[rows]) for every row of bootstrap indices (n_resamples, n); the mean over items if statistic is None."""
    if statistic is None:
        return values[indices].mean(axis=1)  # values (n,): (n_resamples, n) -> (n_resamples,)
    return np.array([float(statistic(values[rows])) for rows in indices])


def _statistic(values: np.ndarray, statistic: Callable | None) -> float:
    """statistic(values), or the mean over items."""
    return float(values.mean()) if statistic is None else float(statistic(values))


def bootstrap_interval(values, statistic: Callable | None = None, n_resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap interval of a statistic over items (Efron and Tibshirani, 1993, ch. 13): (estimate, low, high).

    ``values`` has one entry per item, (n,), or one row per item, (n, k), e.g. ``np.column_stack([confidences,
    correct])``; rows are resampled with replacement ``n_resamples`` times. ``statistic`` maps such an array to one
    number (default: the mean over items, e.g. the accuracy of 0/1 values). ``low`` and ``high`` are the
    (1 - confidence)/2 and (1 + confidence)/2 quantiles of the resampled statistics; ``estimate`` is the statistic of
    ``values`` itself. Seeded: the same inputs give the same interval.
    """
    array = _as_items(values, "values")
    _check_bootstrap_settings(n_resamples, confidence)
    if statistic is None and array.ndim != 1:
        raise ValueError(f"values has shape {tuple(array.shape)}; the default statistic (the mean) needs one number per item, "
                         "so pass a statistic for rows.")
    resampled = _resampled_statistics(array, statistic, bootstrap_indices(len(array), n_resamples, seed))
    low, high = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2])
    return _statistic(array, statistic), float(low), float(high)


def paired_bootstrap_difference(values_a, values_b, statistic: Callable | None = None, n_resamples: int = 2000,
                                confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap of statistic(a) - statistic(b) over the same items (Koehn, 2004; Efron and Tibshirani, 1993).

    ``values_a`` and ``values_b`` hold two models' values on the *same* items in the same order, (n,) or (n, k); each
    resample draws one set of item indices and applies it to both, so what the items share (an easy item is easy for
    both models) cancels in the difference. Returns ``{"difference", "low", "high", "share_positive"}``: the observed
    difference, its percentile interval, and the share of resamples in which a's statistic exceeds b's (Koehn's
    criterion: a is better with 95% confidence when this share is at least 0.95).
    """
    a, b = _as_items(values_a, "values_a"), _as_items(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(f"values_a has shape {a.shape} but values_b has {b.shape}; a paired comparison needs the same items "
                         "for both models, in the same order.")
    _check_bootstrap_settings(n_resamples, confidence)
    if statistic is None and a.ndim != 1:
        raise ValueError(f"values_a has shape {a.shape}; the default statistic (the mean) needs one number per item, so pass a "
                         "statistic for rows.")
    indices = bootstrap_indices(len(a), n_resamples, seed)
    differences = _resampled_statistics(a, statistic, indices) - _resampled_statistics(b, statistic, indices)  # (n_resamples,)
    low, high = np.quantile(differences, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"difference": _statistic(a, statistic) - _statistic(b, statistic), "low": float(low), "high": float(high),
            "share_positive": float((differences > 0).mean())}


def option_probabilities(scores) -> np.ndarray:
    """softmax(s)_j = exp(s_j) / sum_k exp(s_k) over one item's option scores (Kadavath et al., 2022); (n_options,).

    ``scores`` are the options' log-probabilities (e.g. :func:`rl4lm.lm.scoring.score_options`), so the result is the
    model's distribution renormalised over the options it was offered.
    """
    array = _as_items(scores, "scores", "option")
    if array.ndim != 1:
        raise ValueError(f"scores has shape {tuple(array.shape)}; give one score per option of one item (a 1-D array).")
    shifted = np.exp(array - array.max())  # subtract the maximum: no overflow
    return shifted / shifted.sum()


def answer_confidences(score_lists: Sequence, labels: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Per item the answer argmax_j s_j and its confidence max_j softmax(s)_j (Guo et al., 2017; Kadavath et al., 2022).

    ``score_lists``: one score vector per item (items may have different numbers of options); ``labels``: the index of
    the right option per item, if known. Returns ``{"confidence", "prediction"}`` (n,) each, plus ``"correct"`` (n,) of
    0/1 when labels are given; ties go to the first option, as in ``argmax``.
    """
    if isinstance(score_lists, (str, bytes)) or not hasattr(score_lists, "__len__") or len(score_lists) == 0:
        raise ValueError("score_lists should be a non-empty list with one score vector per item.")
    probabilities = [option_probabilities(scores) for scores in score_lists]
    result = {"confidence": np.array([p.max() for p in probabilities]),
              "prediction": np.array([int(p.argmax()) for p in probabilities])}
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(probabilities):
            raise ValueError(f"labels has {len(labels)} entries but score_lists has {len(probabilities)} items; give one label "
                             "per item.")
        for i, (label, p) in enumerate(zip(labels, probabilities)):
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(p):
                raise ValueError(f"labels[{i}] is {label!r}; it must index one of the item's {len(p)} options.")
        result["correct"] = (result["prediction"] == np.array(labels)).astype(np.float64)
    return result


def fit_temperature(score_lists: Sequence, labels: Sequence[int], temperatures=None) -> float:
    """Temperature scaling: the T minimising the mean of -log softmax(s / T)_label over held-out items (Guo et al., 2017, sec. 4.2).

    ``score_lists``: one score vector (log-probabilities of the options) per item; ``labels``: the right option of each.
    T is chosen from ``temperatures`` (default: 400 values spaced evenly in log T between 0.05 and 50); a T at either end
    of the grid means the minimum lies beyond it (T at the top: the confidences carry almost no information about which
    answers are right, and the best fix is to flatten them all). Dividing all of an item's scores by one T > 0 never
    changes its answer, only its confidence; fit T on other items than those you report (Guo et al. use a validation set).
    """
    if isinstance(score_lists, (str, bytes)) or not hasattr(score_lists, "__len__") or len(score_lists) == 0:
        raise ValueError("score_lists should be a non-empty list with one score vector per item.")
    labels = list(labels)
    if len(labels) != len(score_lists):
        raise ValueError(f"labels has {len(labels)} entries but score_lists has {len(score_lists)} items; give one label per item.")
    grid = np.geomspace(0.05, 50, 400) if temperatures is None else _as_items(temperatures, "temperatures", "temperature")
    if (grid <= 0).any():
        raise ValueError("temperatures must all be positive; T = 0 would divide by zero.")
    scores = [_as_items(s, f"score_lists[{i}]", "option") for i, s in enumerate(score_lists)]
    for i, s in enumerate(scores):
        if s.ndim != 1:
            raise ValueError(f"score_lists[{i}] has shape {tuple(s.shape)}; give one score per option of the item (a 1-D array).")
    for i, (label, s) in enumerate(zip(labels, scores)):
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(s):
            raise ValueError(f"labels[{i}] is {label!r}; it must index one of the item's {len(s)} options.")

    width = max(len(s) for s in scores)
    padded = np.full((len(scores), width), -np.inf)  # (n, K_max): missing options have probability 0
    for i, s in enumerate(scores):
        padded[i, :len(s)] = s - s.max()  # shift each item: the softmax is unchanged and nothing overflows
    right = padded[np.arange(len(scores)), labels]  # (n,)
    scaled = padded[None] / grid[:, None, None]  # (temperatures, n, K_max)
    top = scaled.max(axis=-1, keepdims=True)
    log_normaliser = (top + np.log(np.exp(scaled - top).sum(axis=-1, keepdims=True)))[..., 0]  # (temperatures, n)
    mean_nll = (log_normaliser - right[None] / grid[:, None]).mean(axis=1)  # (temperatures,)
    return float(grid[int(np.argmin(mean_nll))])


def item_scores(model, tokenizer, items, normalize: str = "none") -> list[torch.Tensor]:
    """log P(option | context) of every option of every item (Radford et al., 2019), via :func:`rl4lm.lm.scoring.score_options`.

    ``items``: mappings with ``context`` and ``options`` (e.g. rows of ``load_dataset("multiple_choice", split="test")``).
    Returns one float32 tensor (n_options,) per item, on the CPU, ready for :func:`answer_confidences`.
    """
    from ..lm.scoring import score_options

    scores = [score_options(model, tokenizer, item["context"], item["options"], normalize).cpu() for item in items]
    if not scores:
        raise ValueError("items is empty; give at least one item to score.")
    return scores


def sample_groups(model, tokenizer, prompts: Sequence[str], n_samples: int, max_new_tokens: int, batch_size: int = 256,
                  seed: int = 0, temperature: float = 1.0) -> dict[str, list[list]]:
    """n_samples responses y ~ pi(. | x) per prompt by ancestral sampling with a KV cache (Holtzman et al., 2020), grouped by prompt.

    Rows (each prompt repeated ``n_samples`` times) go through :func:`rl4lm.lm.rollout.sample_rollout` in chunks of at
    most ``batch_size`` rows, with one generator seeded by ``seed``. Returns ``{"token_ids", "texts"}``: for each prompt a
    list of its samples' response token ids (without padding or the end-of-text token) and their decoded texts.
    """
    import torch

    from ..lm.rollout import _kept, sample_rollout

    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts should be a non-empty list of strings, each sampled n_samples times.")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples is {n_samples!r}; give a whole number of samples per prompt, at least 1.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size is {batch_size!r}; give a whole number of rows per rollout, at least 1.")
    rows = [prompt for prompt in prompts for _ in range(n_samples)]
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    token_ids, texts = [], []
    for start in range(0, len(rows), batch_size):
        rollout = sample_rollout(model, tokenizer, rows[start:start + batch_size], max_new_tokens, temperature=temperature,
                                 generator=generator)
        texts += rollout.texts(tokenizer)
        responses = zip(rollout.response_ids.tolist(), rollout.response_mask[:, rollout.prompt_len:].tolist())  # (rows, new) each
        token_ids += [_kept(ids, mask, rollout.eos_token_id) for ids, mask in responses]  # the tokens Rollout.texts decodes
    groups = range(0, len(rows), n_samples)
    return {"token_ids": [token_ids[i:i + n_samples] for i in groups], "texts": [texts[i:i + n_samples] for i in groups]}


def answer_word(text: str) -> str:
    """The first word of a sampled answer, lower-cased and without punctuation (SQuAD-style normalisation); "" if none."""
    from ..lm.sft import normalise_answer

    words = normalise_answer(text).split()
    return words[0] if words else ""


def ngram_set(tokens: Sequence, n: int = 2) -> set[tuple]:
    """The set of n-grams (tuples of n consecutive tokens) of one sequence; empty if it is shorter than n."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n is {n!r}; an n-gram needs n of at least 1.")
    if isinstance(tokens, (str, bytes)):
        raise ValueError(f"tokens is the string {tokens[:30]!r}; give a list of tokens (token ids, or text.split() for words), "
                         "not a text, whose n-grams would be characters.")
    tokens = list(tokens)
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def ngram_jaccard(tokens_a: Sequence, tokens_b: Sequence, n: int = 2) -> float:
    """Jaccard similarity |A ∩ B| / |A ∪ B| of two sequences' n-gram sets (Jaccard, 1912); 1 if both have none."""
    a, b = ngram_set(tokens_a, n), ngram_set(tokens_b, n)
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def self_similarity(token_lists: Sequence[Sequence], n: int = 2) -> float:
    """Mean pairwise n-gram Jaccard similarity among the samples of one prompt, a Self-BLEU-like overlap (Zhu et al., 2018).

    ``token_lists``: at least two samples (token ids or words) for the same prompt. 1 means every sample has the same
    n-grams as every other; 0 means no two samples share one. Lower is more diverse.
    """
    if isinstance(token_lists, (str, bytes)) or not hasattr(token_lists, "__len__") or len(token_lists) < 2:
        raise ValueError("token_lists should hold at least two samples of one prompt; self-similarity compares pairs.")
    texts = [i for i, tokens in enumerate(token_lists) if isinstance(tokens, (str, bytes))]
    if texts:
        raise ValueError(f"token_lists[{texts[0]}] is a string; give each sample as a list of tokens (token ids, or "
                         "text.split() for words), not as text, whose n-grams would be characters.")
    sets = [ngram_set(tokens, n) for tokens in token_lists]
    pairs = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(pairs))


def answer_distribution(answers: Sequence[str]) -> dict:
    """The empirical distribution of the answers sampled for one question: mode, its share, entropy H = -sum p log2 p (Shannon, 1948).

    Returns ``{"counts", "mode", "mode_share", "entropy_bits", "n_distinct", "n"}``; ``counts`` is a
    :class:`collections.Counter`. A model that always gives the same answer has mode share 1 and entropy 0 bits; one
    spread evenly over k answers has mode share 1/k and entropy log2 k. Ties for the mode go to the answer seen first.
    """
    if isinstance(answers, (str, bytes)) or not hasattr(answers, "__len__") or len(answers) == 0:
        raise ValueError("answers should be a non-empty list of the answers sampled for one question.")
    counts = Counter(answers)
    n = len(answers)
    mode, top = counts.most_common(1)[0]
    entropy = -sum(c / n * math.log2(c / n) for c in counts.values())
    return {"counts": counts, "mode": mode, "mode_share": top / n, "entropy_bits": max(entropy, 0.0), "n_distinct": len(counts),
            "n": n}
