"""Reward over-optimisation (session 11): PPO against a proxy reward while a gold reward is only watched (Gao et al., 2023).

Gao et al. (2023) optimise a policy against a *proxy* reward model and score the same samples with a *gold* reward
that stands in for people; plotted against d = sqrt(KL(pi || pi_ref)), the proxy keeps rising while the gold rises,
peaks and falls. For RL they fit the gold by

    R_RL(d) = d (alpha - beta log d)        (Gao et al., 2023, sec. 1)

:func:`train_ppo_with_gold` runs :func:`rl4lm.rlhf.ppo_lm.train_ppo_lm` on the proxy and records the gold of every
batch; :func:`fit_gao_rl` fits the curve above to the gold's gain; :func:`ngram_coverage` and :func:`corpus_ngrams`
measure how much of a text is made of phrases that occur in a corpus of human text, one ingredient of the session's
gold; :func:`concordance` is the share of pairs that two rewards order the same way.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence

import torch

__all__ = ["text_words", "corpus_ngrams", "ngram_coverage", "concordance", "train_ppo_with_gold", "gao_rl_gold", "fit_gao_rl"]

_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")  # a lower-cased word, or one punctuation mark


def text_words(text: str) -> list[str]:
    """Word tokens for n-gram statistics (Jurafsky and Martin, ch. 3): lower-cased words and punctuation, 'Great film!' -> ['great', 'film', '!']."""
    if not isinstance(text, str):
        raise ValueError(f"text should be a string, got {type(text).__name__}.")
    return _WORD.findall(text.lower())


def _check_n(n: int) -> None:
    """One sentence when n is not a whole number of at least 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n should be a whole number of at least 1, got {n!r}.")


def _check_texts(texts, name: str) -> list[str]:
    """The texts as a list, or one sentence when they are a single string or hold something that is not a string."""
    if isinstance(texts, str):
        raise ValueError(f"{name} should be a list of strings, not one string.")
    texts = list(texts)
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise ValueError(f"{name}[{bad}] is a {type(texts[bad]).__name__}; {name} should hold strings.")
    return texts


def _word_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """The word n-grams of one text in order, repeats kept; empty when it has fewer than n words."""
    words = text_words(text)
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def corpus_ngrams(texts: Iterable[str], n: int = 3) -> frozenset[tuple[str, ...]]:
    """Every word n-gram of a corpus (Jurafsky and Martin, ch. 3): the phrases people wrote, for :func:`ngram_coverage`."""
    _check_n(n)
    texts = _check_texts(texts, "texts")
    if not texts:
        raise ValueError("texts is empty; the corpus needs at least one text.")
    grams = frozenset(gram for text in texts for gram in _word_ngrams(text, n))
    if not grams:
        raise ValueError(f"no text in texts has {n} words, so the corpus has no {n}-gram.")
    return grams


def ngram_coverage(texts: Sequence[str], corpus: frozenset[tuple[str, ...]] | set, n: int = 3) -> torch.Tensor:
    """Share of each text's word n-grams found in a corpus, BLEU's n-gram precision, unclipped, against all of it (Papineni et al., 2002).

    ``corpus``: the n-grams of human text, :func:`corpus_ngrams` with the same ``n``. A text made of phrases that
    people write scores near 1, a word salad near 0; a text with fewer than ``n`` words has no n-gram and scores 0.
    Returns (len(texts),) float32.
    """
    _check_n(n)
    texts = _check_texts(texts, "texts")
    if not corpus:
        raise ValueError("corpus is empty; build it with corpus_ngrams(human_texts, n).")
    width = len(next(iter(corpus)))
    if width != n:
        raise ValueError(f"corpus holds {width}-grams but n = {n}; build it with corpus_ngrams(texts, n={n}).")
    shares = []
    for text in texts:
        grams = _word_ngrams(text, n)
        shares.append(sum(gram in corpus for gram in grams) / len(grams) if grams else 0.0)
    return torch.tensor(shares, dtype=torch.float32)


def concordance(scores_a, scores_b) -> float:
    """Share of pairs (i, j) that two rewards order the same way, among the pairs that b does not tie (Kendall, 1938).

    scores_a, scores_b: (n,) scores of the same n texts. (1 + Kendall's tau) / 2 when nothing ties: 1 for the same
    order, 0.5 for unrelated rewards, 0 for opposite ones. Pairs that ``scores_a`` ties count as half right.
    """
    a = torch.as_tensor(scores_a, dtype=torch.float64).flatten()
    b = torch.as_tensor(scores_b, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"scores_a has {a.numel()} scores but scores_b has {b.numel()}; give both rewards of the same texts.")
    if a.numel() < 2:
        raise ValueError("concordance needs at least two texts, to form one pair.")
    if not bool(torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("scores_a and scores_b must be finite numbers (no NaN or inf).")
    da = torch.sign(a[:, None] - a[None, :])  # (n, n)
    db = torch.sign(b[:, None] - b[None, :])
    upper = torch.triu(torch.ones_like(da, dtype=torch.bool), diagonal=1) & (db != 0)
    if not bool(upper.any()):
        raise ValueError("scores_b ties every pair, so no pair has an order to agree with.")
    agree = torch.where(da == 0, 0.5, (da == db).double())  # (n, n)
    return agree[upper].mean().item()


def train_ppo_with_gold(policy, tokenizer, proxy_fn: Callable[[list[str]], torch.Tensor], gold_fn: Callable[[list[str]], torch.Tensor],
                        prompts: list[str], config, **kwargs) -> dict:
    """PPO on a proxy reward while a gold reward scores the same samples, the experiment of Gao et al. (2023, sec. 2).

    Runs :func:`rl4lm.rlhf.ppo_lm.train_ppo_lm` with ``proxy_fn`` as its reward (``kwargs`` go to it: ``reference``,
    ``eval_prompts``, ``progress`` ...). ``gold_fn(texts) -> (n,)`` is never optimised: it scores every batch that the
    proxy scores. Returns train_ppo_lm's dict with ``history["gold_mean"]`` (one value per step, the gold of the batch
    whose proxy is ``history["reward_mean"]``), ``batch_texts``, ``proxy_scores`` and ``gold_scores`` (per step, the
    batch's texts and their scores) and ``gold_before``, ``gold_after`` (the gold of ``samples_before`` and ``samples_after``).
    """
    from ..rlhf.ppo_lm import train_ppo_lm

    calls: list[tuple[list[str], list[float], list[float]]] = []  # (texts, proxy, gold) of every batch scored, in order

    def _proxy_recording_gold(texts: list[str]) -> torch.Tensor:
        proxy = torch.as_tensor(proxy_fn(texts), dtype=torch.float32).flatten()
        gold = torch.as_tensor(gold_fn(texts), dtype=torch.float32).flatten()
        if gold.numel() != len(texts):
            raise ValueError(f"gold_fn returned {gold.numel()} scores for {len(texts)} texts; it should return one per text.")
        calls.append((list(texts), proxy.tolist(), gold.tolist()))
        return proxy

    run = train_ppo_lm(policy, tokenizer, _proxy_recording_gold, prompts, config, **kwargs)
    if len(calls) != config.steps + 2:  # the samples before, one batch per step, the samples after
        raise RuntimeError(f"train_ppo_lm scored {len(calls)} batches for {config.steps} steps; expected steps + 2.")
    steps = calls[1:-1]
    run["history"]["gold_mean"] = [sum(gold) / len(gold) for _, _, gold in steps]
    run["batch_texts"] = [texts for texts, _, _ in steps]
    run["proxy_scores"] = [proxy for _, proxy, _ in steps]
    run["gold_scores"] = [gold for _, _, gold in steps]
    run["gold_before"], run["gold_after"] = calls[0][2], calls[-1][2]
    return run


def gao_rl_gold(d, alpha: float, beta: float) -> torch.Tensor:
    """R(d) = d (alpha - beta log d), the gold reward's gain under RL at d = sqrt(KL) (Gao et al., 2023, sec. 1); 0 at d = 0."""
    d = torch.as_tensor(d, dtype=torch.float64)
    if bool((d < 0).any()):
        raise ValueError("d = sqrt(KL) cannot be negative.")
    return torch.where(d > 0, d * (alpha - beta * torch.log(d.clamp(min=1e-300))), torch.zeros_like(d))


def fit_gao_rl(d, gain) -> dict[str, float]:
    """Least-squares alpha, beta of R(d) = d (alpha - beta log d) (Gao et al., 2023, sec. 1), and where the fit peaks.

    d: (n,) sqrt(KL) of each point (> 0); gain: (n,) the gold reward minus its value at d = 0. The model is linear in
    (alpha, beta) with regressors d and -d log d. Returns ``alpha``, ``beta``, ``r2`` (the share of the gain's
    variance explained), and ``peak_d`` = exp(alpha / beta - 1), the d of the highest gold (inf when beta <= 0:
    no peak), with ``peak_gain`` = R(peak_d).
    """
    d = torch.as_tensor(d, dtype=torch.float64).flatten()
    gain = torch.as_tensor(gain, dtype=torch.float64).flatten()
    if d.shape != gain.shape:
        raise ValueError(f"d has {d.numel()} points but gain has {gain.numel()}; give one gain per point.")
    if d.numel() < 2:
        raise ValueError("fitting two coefficients needs at least two points.")
    if not bool(torch.isfinite(d).all() and torch.isfinite(gain).all()) or bool((d <= 0).any()):
        raise ValueError("every d = sqrt(KL) must be a finite number above 0 (drop the point at KL = 0: R(0) = 0 by definition).")
    design = torch.stack([d, -d * torch.log(d)], dim=1)  # (n, 2)
    solution = torch.linalg.lstsq(design, gain[:, None]).solution.flatten()
    alpha, beta = solution.tolist()
    residual = gain - design @ solution
    total = ((gain - gain.mean()) ** 2).sum()
    r2 = (1 - (residual ** 2).sum() / total).item() if total > 0 else float("nan")
    peak = math.exp(alpha / beta - 1) if beta > 0 and alpha / beta - 1 < 700 else math.inf
    peak_gain = gao_rl_gold(peak, alpha, beta).item() if math.isfinite(peak) else math.inf
    return {"alpha": alpha, "beta": beta, "r2": r2, "peak_d": peak, "peak_gain": peak_gain}
